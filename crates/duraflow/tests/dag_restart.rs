//! A DAG run survives an engine restart mid-run on SQLite: the first engine stops with the
//! decision step scheduled but not run, a new engine on the same file finishes the run, and
//! every handler ran once per step.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
mod dag_support;

use common::history_with;
use dag_support::{on, order_engine, order_handlers, order_registry, order_start, Calls};
use duraflow::dag::run::{dag_status, DagReport, WORKFLOW_NAME};
use duraflow::dag::{RunState, StepState};
use duraflow::prelude::*;
use duraflow::EventKind;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_an_engine_restart_between_steps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dag.db");
    let calls = Calls::default();

    // The first engine has no `decide_shipping`: the run stops there, its task left for an
    // engine that has it.
    let builder = on(SqliteStore::open(&path).await.unwrap());
    let engine = order_engine(builder, order_registry(), &calls, &["decide_shipping"])
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let start = order_start("o-9", &["a", "b"]);
    let run = client.start(WORKFLOW_NAME, &start).id("o-9").await.unwrap();
    history_with(
        &client,
        &run.id,
        "the decision scheduled",
        |k| matches!(k, EventKind::ActivityScheduled { name, .. } if name == "decide_shipping"),
    )
    .await;
    let midway = dag_status(&client, &run.id).await.unwrap();
    assert_eq!(midway.state, RunState::InProgress);
    assert_eq!(midway.steps["charge_payment"].state, StepState::Complete);
    assert_eq!(midway.steps["ship_or_refund"].state, StepState::InProgress);
    assert_eq!(midway.steps["ship"].state, StepState::Pending);
    drop(client);
    engine.shutdown().await;

    let builder = on(SqliteStore::open(&path).await.unwrap());
    let engine = order_engine(builder, order_registry(), &calls, &[])
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let report: DagReport = client.wait(&run).await.unwrap();
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(
        report.results["collect_parcels"],
        json!([{"parcel": "a"}, {"parcel": "b"}])
    );
    for handler in order_handlers() {
        let expected = match handler.as_str() {
            "refund_payment" => 0,
            "pack_item" => 2,
            _ => 1,
        };
        assert_eq!(calls.count(&handler), expected, "{handler}");
    }
    engine.shutdown().await;
}
