//! Fan-out/fan-in: one workflow schedules N activities at once and sums their results.
//!
//! `cargo run --example fan_out -- 10000`

use std::time::Instant;

use duraflow::prelude::*;

async fn square(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n * n)
}

async fn sum_of_squares(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let squares: Vec<u64> = ctx
        .join_all((1..=n).map(|i| ctx.activity("square", &i)))
        .await?;
    Ok(squares.iter().sum())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|e| format!("the argument must be a count of activities, not {arg:?}: {e}"))?,
        None => 10_000,
    };
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .workflow("sum-of-squares", sum_of_squares)
        .activity("square", square)
        .start()
        .await?;
    let client = engine.client();
    let started = Instant::now();
    let run = client.start("sum-of-squares", &n).await?;
    let total: u64 = client.wait(&run).await?;
    let elapsed = started.elapsed();
    let expected = n * (n + 1) * (2 * n + 1) / 6;
    println!(
        "sum of squares 1..={n} = {total} (expected {expected}) using {n} activities in {:.2?}",
        elapsed
    );
    engine.shutdown().await;
    if total != expected {
        return Err("wrong total".into());
    }
    Ok(())
}
