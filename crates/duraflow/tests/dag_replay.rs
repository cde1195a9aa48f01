//! Replay of DAG runs whose steps finish in an order nobody chose: a batch of workers limited
//! to a few at a time, finishing after random delays, with every turn replaying the journal
//! (no warm instances). Each turn's replay must hand the interpreter the completions in the
//! journal's order, or the launches it makes would not match the recorded ones and the run
//! would fail with a nondeterminism error; the finished journal must replay to the output.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
mod dag_support;

use std::sync::Arc;
use std::time::Duration;

use dag_support::{assert_replays, on};
use duraflow::dag::run::{self, DagReport, DagStart, WORKFLOW_NAME};
use duraflow::dag::{Registry, Step, Template};
use duraflow::prelude::*;
use duraflow::{Event, EventKind};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_finishing_in_any_order_replay_on_every_turn() {
    let template = Template::builder("t", "shuffle", "1")
        .step(Step::new("list", "list").batch("work", 7))
        .step(Step::new("side", "work").input("x", "$.input.x".parse().unwrap()))
        .step(Step::new("join", "join").depends_on(["list"]).convergence())
        .build();
    let registry = Arc::new(Registry::default());
    let options = EngineOptions {
        warm_instances: 0,
        activity_concurrency: 16,
        ..EngineOptions::default()
    };
    let engine = run::register(on(MemoryStore::new()).options(options), registry.clone())
        .activity("list", |_ctx: ActivityContext, _: Value| async move {
            Ok::<_, ActivityError>(json!((0..60).collect::<Vec<u32>>()))
        })
        .activity("work", |_ctx: ActivityContext, item: Value| async move {
            // Real delays of 0 to 3 ms, so that workers finish out of order.
            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..3_000))).await;
            Ok::<_, ActivityError>(item)
        })
        .activity("join", |_ctx: ActivityContext, input: Value| async move {
            Ok::<_, ActivityError>(input["results"].clone())
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let mut shuffled = 0;
    for i in 0..3 {
        let start = DagStart::inline(template.clone(), json!({ "x": i }));
        let run = client
            .start(WORKFLOW_NAME, &start)
            .id(format!("shuffle-{i}"))
            .await
            .unwrap();
        let report: DagReport = client.wait(&run).await.unwrap();
        assert_eq!(report.results["join"], json!((0..60).collect::<Vec<u32>>()));

        let journal = assert_replays(&client, &registry, &run.id, &report).await;
        shuffled += usize::from(out_of_launch_order(&journal));
    }
    assert!(
        shuffled > 0,
        "no run had its steps finish out of launch order"
    );
    engine.shutdown().await;
}

/// Whether some activity completed before one scheduled earlier.
fn out_of_launch_order(journal: &[Event]) -> bool {
    let mut scheduled = Vec::new();
    let mut completed = Vec::new();
    for e in journal {
        match &e.kind {
            EventKind::ActivityScheduled { op, .. } => scheduled.push(op.clone()),
            EventKind::ActivityCompleted { op, .. } => {
                completed.push(scheduled.iter().position(|s| s == op).unwrap());
            }
            _ => {}
        }
    }
    completed.windows(2).any(|w| w[0] > w[1])
}
