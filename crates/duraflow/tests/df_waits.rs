//! Reference cases, section `wait` (2-x) of `durable-functions-behaviours.md`: each case as a
//! test named after its id, on the memory and SQLite stores under virtual time, comparing the
//! journal record by record (see `df_support` for the record notation).
//!
//! Where duraflow deliberately differs from AWS, the tests follow duraflow:
//!
//! - A wait (`ctx.sleep`) is a durable timer: `timer_created` records its fire time (the
//!   duration is fire time minus the record's time, in milliseconds, not whole seconds), and
//!   `timer_fired` says it is over; AWS records the duration on both its records.
//! - Waits have no name in duraflow (AWS's `wait(2 s, name="wait-1")`); they are told apart by
//!   their operation ids.
//! - Turn boundaries (`‖`) are not journaled: a suspension is checked by the journal standing
//!   still at that record with the instance running, until the test moves the clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;
mod df_support;

use df_support::{assert_recs, at_of, between, finished, on_both_stores, suspended_at};
use duraflow::prelude::*;
use duraflow::EventKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_2_1_wait_basic() {
    on_both_stores(
        |b| {
            b.workflow("wait", |ctx: WorkflowContext, _: ()| async move {
                ctx.sleep(Duration::from_secs(2)).await
            })
        },
        |rig| async move {
            let id = rig.client.start("wait", &()).await.unwrap();
            // Blocked, not busy: the journal stands at the timer and the instance waits.
            suspended_at(
                &rig,
                id.as_ref(),
                &["workflow_started", "timer_created 0 2000ms"],
            )
            .await;
            rig.clock.advance(Duration::from_secs(2));
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), serde_json::Value::Null);
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "timer_created 0 2000ms",
                    "timer_fired 0",
                    "workflow_completed null",
                ],
            );
            let start = at_of(&journal, |k| matches!(k, EventKind::WorkflowStarted { .. }));
            let done = at_of(&journal, |k| matches!(k, EventKind::TimerFired { .. }));
            assert!(between(start, done) >= Duration::from_secs(2));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_2_3_multiple_sequential_waits() {
    on_both_stores(
        |b| {
            b.workflow("waits", |ctx: WorkflowContext, _: ()| async move {
                ctx.sleep(Duration::from_secs(2)).await?;
                ctx.sleep(Duration::from_secs(2)).await?;
                Ok(serde_json::json!({"completedWaits": 2}))
            })
        },
        |rig| async move {
            let id = rig.client.start("waits", &()).await.unwrap();
            suspended_at(
                &rig,
                id.as_ref(),
                &["workflow_started", "timer_created 0 2000ms"],
            )
            .await;
            rig.clock.advance(Duration::from_secs(2));
            // The second wait starts in the turn that sees the first one over.
            let journal = suspended_at(
                &rig,
                id.as_ref(),
                &[
                    "workflow_started",
                    "timer_created 0 2000ms",
                    "timer_fired 0",
                    "timer_created 1 2000ms",
                ],
            )
            .await;
            assert_eq!(journal[2].at, journal[3].at, "[{}]", rig.backend);
            rig.clock.advance(Duration::from_secs(2));
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), serde_json::json!({"completedWaits": 2}));
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "timer_created 0 2000ms",
                    "timer_fired 0",
                    "timer_created 1 2000ms",
                    "timer_fired 1",
                    "workflow_completed {\"completedWaits\":2}",
                ],
            );
            let start = journal[0].at;
            let done = journal[4].at;
            assert!(between(start, done) >= Duration::from_secs(4));
        },
    )
    .await;
}
