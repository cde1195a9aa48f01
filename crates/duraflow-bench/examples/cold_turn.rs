//! One cold turn of long workflows on SQLite, in a process of its own, for instruction counts.
//!
//! The `replay` workload times cold turns among everything else a benchmark process does;
//! this splits the two so that a profiler sees only the cold turn's process. First park
//! workflows of K inline steps, each waiting for the event `go`, in a database file:
//!
//! ```text
//! cargo run --release -p duraflow-bench --example cold_turn -- park /tmp/cold.db 10000 6
//! ```
//!
//! then, on a copy of that file (a turn finishes its workflow), raise `go` for some of them in
//! a new process, which opens the store, starts an engine, replays each journal whole and
//! prints each turn's time:
//!
//! ```text
//! cp /tmp/cold.db /tmp/run.db
//! valgrind --tool=callgrind target/release/examples/cold_turn raise /tmp/run.db w0
//! ```
//!
//! BENCHMARKS.md's instruction counts of a cold turn ("Replay: a few operations in flight
//! kept in a vector") were taken so.

use std::time::{Duration, Instant};

use duraflow::prelude::*;

/// `k` inline steps, then a wait for `go`; returns the steps' sum plus the event's data.
async fn steps_then_wait(ctx: WorkflowContext, k: u64) -> Result<u64, WorkflowError> {
    let mut sum = 0;
    for i in 0..k {
        sum += ctx.step("op", move |_| async move { Ok(i) }).await?;
    }
    let go: u64 = ctx.wait_for_event("go").await?;
    Ok(sum + go)
}

const USAGE: &str = "usage: cold_turn park DB STEPS WORKFLOWS | cold_turn raise DB ID...";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, path, rest) = match args.as_slice() {
        [mode, path, rest @ ..] => (mode.as_str(), path, rest),
        _ => return Err(USAGE.into()),
    };
    let engine = Engine::builder()
        .store(SqliteStore::open(path).await?)
        .workflow("steps-then-wait", steps_then_wait)
        .start()
        .await?;
    let client = engine.client();
    let outcome = match (mode, rest) {
        ("park", [steps, workflows]) => {
            let steps: u64 = steps.parse().map_err(|e| format!("STEPS {steps:?}: {e}"))?;
            let workflows: u64 = workflows
                .parse()
                .map_err(|e| format!("WORKFLOWS {workflows:?}: {e}"))?;
            park(&client, steps, workflows).await
        }
        ("raise", ids) if !ids.is_empty() => raise(&client, ids).await,
        _ => Err(USAGE.into()),
    };
    engine.shutdown().await;
    outcome
}

/// Starts `workflows` workflows `w0`, `w1`.. of `steps` steps and waits until each is parked.
async fn park(
    client: &Client,
    steps: u64,
    workflows: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    for i in 0..workflows {
        client
            .start("steps-then-wait", &steps)
            .id(format!("w{i}"))
            .await?;
    }
    // Parked: the start, two events a step, the wait.
    let parked = 2 * steps + 2;
    for i in 0..workflows {
        let id = format!("w{i}");
        loop {
            let info = client.describe(&id).await?;
            if info.journal_len == Some(parked) {
                break;
            }
            // A workflow that ended (an instance of that id already there and finished, or a
            // failure) will never park: say so rather than wait for ever.
            if info.status.is_terminal() {
                return Err(format!(
                    "{id} is {:?} and will not park: park into a new database file",
                    info.status
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("{id} parked after {steps} steps");
    }
    Ok(())
}

/// Raises `go` for each of `ids` in turn and prints how long each took to finish.
async fn raise(client: &Client, ids: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    for id in ids {
        let started = Instant::now();
        client.raise_event(id, "go", &7u64).await?;
        let out: u64 = client.wait(id).await?;
        println!(
            "{id}: {out} after {:.3} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
