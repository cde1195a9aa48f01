//! DAG lifecycle events through the feed: a subscriber sees a run start, every step's
//! transitions in the order the audit trail records them, and the run complete; a projection
//! (completed steps per run) kept by a subscriber that crashes and restarts is exact. On the
//! memory store (warm runs and cold replays) and SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
mod dag_support;

use std::collections::BTreeMap;

use common::DEADLINE;
use dag_support::{on, order_engine, order_registry, order_start, Calls};
use duraflow::dag::run::{
    dag_events, DagEvents, DagReport, LifecycleEvent, RunEvent, WORKFLOW_NAME,
};
use duraflow::dag::StepState;
use duraflow::prelude::*;

/// The next batch of `events`, within the deadline.
async fn next(events: &mut DagEvents) -> Vec<(u64, LifecycleEvent)> {
    tokio::time::timeout(DEADLINE, events.next_batch())
        .await
        .expect("events within the deadline")
        .unwrap()
}

fn is_run_end(e: &LifecycleEvent) -> bool {
    matches!(
        e,
        LifecycleEvent::RunCompleted(_)
            | LifecycleEvent::RunFailed(_)
            | LifecycleEvent::RunCancelled(_)
    )
}

async fn every_transition_in_order(builder: EngineBuilder) {
    let registry = order_registry();
    let engine = order_engine(builder, registry, &Calls::default(), &[])
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let mut events = dag_events(&client, "auditor").await.unwrap();
    let run = client
        .start(WORKFLOW_NAME, &order_start("o-ev", &["a", "b"]))
        .id("o-ev")
        .await
        .unwrap();
    let report: DagReport = client.wait(&run).timeout(DEADLINE).await.unwrap();
    let mut got = Vec::new();
    while !got.last().is_some_and(|(_, e)| is_run_end(e)) {
        got.extend(next(&mut events).await);
    }
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "positions increase"
    );
    let got: Vec<LifecycleEvent> = got.into_iter().map(|(_, e)| e).collect();
    assert!(got.iter().all(|e| e.run_id() == "o-ev"));
    assert!(
        matches!(&got[0], LifecycleEvent::RunStarted(RunEvent { template, .. })
            if template.namespace == "shop" && template.name == "order"),
        "{:?}",
        got[0]
    );
    assert!(matches!(got.last(), Some(LifecycleEvent::RunCompleted(_))));
    // Every step's events are its audit trail, in order, and nothing else is published.
    let mut trails = 0;
    for (name, step) in &report.steps {
        let published: Vec<StepState> = got
            .iter()
            .filter_map(LifecycleEvent::step_event)
            .filter(|e| &e.step == name)
            .map(|e| e.transition.to)
            .collect();
        let recorded: Vec<StepState> = step.transitions.iter().map(|t| t.to).collect();
        assert_eq!(published, recorded, "step {name}");
        trails += recorded.len();
    }
    assert_eq!(got.len(), trails + report.run_transitions.len());
    // A step's events come after its parents': `ship` starts after `ship_or_refund` completes.
    let pos = |name: &str, what: &str| {
        got.iter()
            .position(|e| e.step() == Some(name) && e.name() == what)
            .unwrap_or_else(|| panic!("{name} {what}"))
    };
    assert!(pos("ship_or_refund", "step_completed") < pos("ship", "step_enqueued"));
    assert!(pos("ship", "step_completed") < pos("notify", "step_started"));
    assert_eq!(got[0].topic(), "duraflow.dag.run.started");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_transition_in_order() {
    every_transition_in_order(on(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_transition_once_when_every_turn_replays() {
    let builder = on(MemoryStore::new()).options(EngineOptions {
        warm_instances: 0,
        ..common::virtual_options()
    });
    every_transition_in_order(builder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_transition_in_order_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    every_transition_in_order(on(store)).await;
}

/// A projection: completed steps per run, with the position it has applied, kept together
/// (as a real projection would store them in one transaction).
#[derive(Clone, Debug, Default, PartialEq)]
struct Projection {
    completed: BTreeMap<String, usize>,
    finished: usize,
    applied: u64,
}

impl Projection {
    /// Applies one event, once: an event at or below the applied position was applied
    /// already (at-least-once delivery hands it out again after a restart).
    fn apply(&mut self, position: u64, event: &LifecycleEvent) {
        if position <= self.applied {
            return;
        }
        self.applied = position;
        match event {
            LifecycleEvent::StepCompleted(e) => {
                *self.completed.entry(e.run_id.clone()).or_default() += 1;
            }
            e if is_run_end(e) => self.finished += 1,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_survives_a_subscriber_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("projection.db"))
        .await
        .unwrap();
    let engine = order_engine(on(store), order_registry(), &Calls::default(), &[])
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let orders: [(&str, &[&str]); 3] = [("p-1", &["a"]), ("p-2", &[]), ("p-3", &["a", "b", "c"])];
    let mut runs = Vec::new();
    for (id, skus) in orders {
        runs.push(
            client
                .start(WORKFLOW_NAME, &order_start(id, skus))
                .id(id)
                .await
                .unwrap(),
        );
    }

    // The first life: applies some events, saves the projection and acknowledges, applies a
    // few more, then crashes: what it applied after the save is lost with it.
    let saved = {
        let mut events = dag_events(&client, "projector").await.unwrap();
        let mut live = Projection::default();
        let mut seen = 0;
        while seen < 10 {
            for (position, event) in next(&mut events).await {
                live.apply(position, &event);
                seen += 1;
            }
        }
        let saved = live.clone();
        events.ack(saved.applied).await.unwrap();
        for (position, event) in next(&mut events).await {
            live.apply(position, &event);
        }
        saved
    };

    // The second life: starts from the saved projection and the acknowledged cursor.
    let mut events = dag_events(&client, "projector").await.unwrap();
    assert_eq!(events.subscription().delivered(), saved.applied);
    let mut projection = saved;
    while projection.finished < runs.len() {
        for (position, event) in next(&mut events).await {
            projection.apply(position, &event);
        }
        events.ack(projection.applied).await.unwrap();
    }

    for run in &runs {
        let report: DagReport = client.wait(run).timeout(DEADLINE).await.unwrap();
        let complete = report
            .steps
            .values()
            .filter(|s| s.state == StepState::Complete)
            .count();
        assert_eq!(
            projection.completed.get(&run.id).copied().unwrap_or(0),
            complete,
            "run {}",
            run.id
        );
    }
    engine.shutdown().await;
}
