//! A golden DAG journal: the journal of an order run (shipping three items), recorded by an
//! earlier build and checked in, must replay with the interpreter of every later build to the
//! same output with no new operations, and `dag_status` must read the same report from it. A
//! change to the interpreter that would break the runs in flight when it is deployed fails here.
//!
//! Record the fixture (only when it does not exist: never record it again) with
//! `DURAFLOW_GOLDEN_RECORD=dag_order cargo test -p duraflow --all-features --test dag_golden`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
mod dag_support;

use std::path::PathBuf;
use std::sync::Arc;

use dag_support::{on, order_engine, order_registry, order_start, Calls};
use duraflow::dag::run::{interpreter, rebuild, DagReport, WORKFLOW_NAME};
use duraflow::dag::Registry;
use duraflow::prelude::*;
use duraflow::{check_replay, workflow_fn, Event, EventKind, Outcome};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden_journals/fixtures/dag_order.json")
}

#[test]
fn the_recorded_order_journal_replays_to_its_output() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let journal: Vec<Event> = serde_json::from_str(&text).unwrap();
    let Some(EventKind::WorkflowCompleted { output }) = journal.last().map(|e| &e.kind) else {
        panic!("the fixture is a completed run");
    };
    let report = check_replay(
        workflow_fn(interpreter(order_registry())),
        "dag-golden",
        1,
        journal.clone(),
    );
    assert!(report.new_events.is_empty(), "{:?}", report.new_events);
    assert_eq!(report.outcome, Some(Outcome::Completed(output.clone())));
    // The run keeps the template it started with: replay reads it from the journal, and
    // needs no registry that holds it.
    let without_registry = check_replay(
        workflow_fn(interpreter(Arc::new(Registry::default()))),
        "dag-golden",
        1,
        journal.clone(),
    );
    assert_eq!(without_registry.outcome, report.outcome);
    assert!(without_registry.new_events.is_empty());
    let recorded: DagReport = output.decode().unwrap();
    assert_eq!(rebuild("dag-golden", &journal).unwrap(), recorded);
    assert_eq!(
        recorded.steps.len(),
        12,
        "nine steps and three batch workers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_the_fixture_when_asked() {
    if std::env::var("DURAFLOW_GOLDEN_RECORD").as_deref() != Ok("dag_order") {
        return;
    }
    assert!(
        !fixture().exists(),
        "golden fixtures are never recorded again"
    );
    let engine = order_engine(
        on(MemoryStore::new()),
        order_registry(),
        &Calls::default(),
        &[],
    )
    .start()
    .await
    .unwrap();
    let client = engine.client();
    let start = order_start("o-golden", &["a", "b", "c"]);
    let run = client
        .start(WORKFLOW_NAME, &start)
        .id("dag-golden")
        .await
        .unwrap();
    let _: DagReport = client.wait(&run).await.unwrap();
    let journal = client.history(&run, None).await.unwrap();
    std::fs::write(fixture(), serde_json::to_string_pretty(&journal).unwrap()).unwrap();
    engine.shutdown().await;
}
