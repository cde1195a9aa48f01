//! DAG runs on the engine: the order example end to end on both decision branches, warm
//! instances off and on, on memory and SQLite, replay of the finished journals, the report rebuilt from the journal,
//! and a bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
mod dag_support;

use dag_support::{assert_replays, on, order_engine, order_registry, order_start, run_dag, Calls};
use duraflow::dag::run::{DagReport, DagStart, WORKFLOW_NAME};
use duraflow::dag::{RunState, StepState};
use duraflow::prelude::*;
use serde_json::json;

async fn run_order(builder: EngineBuilder) {
    let registry = order_registry();
    let calls = Calls::default();
    let engine = order_engine(builder, registry.clone(), &calls, &[])
        .start()
        .await
        .unwrap();
    let client = engine.client();

    let ship = order_start("o-1", &["a", "b", "c"]);
    let shipped = client.start(WORKFLOW_NAME, &ship).id("o-1").await.unwrap();
    let refund = order_start("o-2", &[]);
    let refunded = client
        .start(WORKFLOW_NAME, &refund)
        .id("o-2")
        .await
        .unwrap();

    let report: DagReport = client.wait(&shipped).await.unwrap();
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(report.steps["refund"].state, StepState::Skipped);
    assert_eq!(report.steps["ship"].state, StepState::Complete);
    assert_eq!(report.results["ship_or_refund"], json!(["ship"]));
    assert_eq!(
        report.results["collect_parcels"],
        json!([{"parcel": "a"}, {"parcel": "b"}, {"parcel": "c"}]),
        "the convergence step gets the workers' results in item order"
    );
    assert_eq!(report.results["notify"], json!("sent"));
    assert_eq!(report.steps["pack_items[2]"].state, StepState::Complete);
    let trail: Vec<_> = report.steps["ship"]
        .transitions
        .iter()
        .map(|t| t.to.to_string())
        .collect();
    assert_eq!(trail, ["enqueued", "in_progress", "complete"]);

    let report2: DagReport = client.wait(&refunded).await.unwrap();
    assert_eq!(report2.results["ship_or_refund"], json!(["refund"]));
    assert_eq!(report2.results["refund"], json!({"refunded": "r-o-2"}));
    for skipped in ["ship", "pack_items", "collect_parcels"] {
        assert_eq!(
            report2.steps[skipped].state,
            StepState::Skipped,
            "{skipped}"
        );
    }
    assert_eq!(report2.steps["notify"].state, StepState::Complete);
    assert_eq!(calls.count("pack_item"), 3);
    assert_eq!(calls.count("refund_payment"), 1);
    assert_eq!(calls.count("book_shipment"), 1);

    // Replay of each finished journal issues nothing new and ends with the same output; the
    // report rebuilt from the journal is the output.
    for (run, expected) in [(&shipped, &report), (&refunded, &report2)] {
        assert_replays(&client, &registry, &run.id, expected).await;
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_example_runs_both_branches_with_warm_instances() {
    run_order(on(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_example_runs_both_branches_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("dag.db")).await.unwrap();
    run_order(on(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_example_runs_both_branches_replaying_every_turn() {
    run_order(on(MemoryStore::new()).options(EngineOptions {
        warm_instances: 0,
        ..EngineOptions::default()
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_input_or_an_unknown_template_fails_the_run_before_any_step() {
    let calls = Calls::default();
    let engine = order_engine(on(MemoryStore::new()), order_registry(), &calls, &[])
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let start = DagStart::named("shop", "order", json!({ "order": 7 }));
    let err = run_dag(&client, &start).await.unwrap_err();
    assert!(err.contains("does not match the input schema"), "{err}");
    assert_eq!(calls.count("validate_order"), 0);

    let missing = DagStart::named("shop", "nope", json!({}));
    let err = run_dag(&client, &missing).await.unwrap_err();
    assert!(err.contains("no template shop/nope"), "{err}");

    let pinned = order_start("o-3", &[]).version("9.9.9");
    let err = run_dag(&client, &pinned).await.unwrap_err();
    assert!(err.contains("no template shop/order@9.9.9"), "{err}");
    let pinned = order_start("o-4", &[]).version("1.0.0");
    let report = run_dag(&client, &pinned).await.unwrap();
    assert_eq!(report.template.version, "1.0.0");
    engine.shutdown().await;
}
