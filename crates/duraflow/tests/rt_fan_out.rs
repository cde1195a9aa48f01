//! Fan-out/fan-in at scale.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use duraflow::prelude::*;
use duraflow::EventKind;

async fn square(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n * n)
}

async fn sum_of_squares(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let squares: Vec<u64> = ctx
        .join_all((1..=n).map(|i| ctx.activity("square", &i)))
        .await?;
    Ok(squares.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_of_ten_thousand_activities_completes() {
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .workflow("sum-of-squares", sum_of_squares)
        .activity("square", square)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let n: u64 = 10_000;
    let run = client.start("sum-of-squares", &n).await.unwrap();
    let total: u64 = client.wait(&run).await.unwrap();
    assert_eq!(total, n * (n + 1) * (2 * n + 1) / 6);

    let history = client.history(&run, None).await.unwrap();
    let scheduled = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ActivityScheduled { .. }))
        .count();
    let completed = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ActivityCompleted { .. }))
        .count();
    assert_eq!((scheduled, completed), (10_000, 10_000));
    assert_eq!(
        engine
            .store()
            .management()
            .unwrap()
            .stats()
            .await
            .unwrap()
            .tasks,
        0
    );
    engine.shutdown().await;
}
