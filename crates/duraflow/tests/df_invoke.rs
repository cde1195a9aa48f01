//! Reference cases, section `invoke` (5-x) of `durable-functions-behaviours.md`: each case as
//! a test named after its id, on the memory and SQLite stores under virtual time, comparing the
//! journal record by record (see `df_support` for the record notation).
//!
//! Where duraflow deliberately differs from AWS, the tests follow duraflow:
//!
//! - `invoke` runs the target as an attached child workflow: AWS's invoke `started` is
//!   `child_started` (with the target's name, its instance id and the input payload),
//!   `succeeded`/`failed` are `child_completed`/`child_failed`.
//! - A failed target's failure is delivered as it is (`child_failed` keeps the target's kind,
//!   code and message); uncaught, the execution fails with kind `child_failed` and the target's
//!   code and message (AWS raises an `InvokeError`).
//! - Turn boundaries (`‖`) are not journaled: a suspension is checked by the journal standing
//!   still at that record with the instance running, until the test moves the clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;
mod df_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use df_support::{assert_recs, finished, on_both_stores, random_alnum, recs, suspended_at};
use duraflow::prelude::*;
use duraflow::{EngineBuilder, EventKind};

/// Registers the targets: `echo` returns its input, `failing` fails; both count their runs.
fn targets(b: EngineBuilder, runs: &Arc<AtomicUsize>) -> EngineBuilder {
    let (r1, r2) = (runs.clone(), runs.clone());
    b.workflow(
        "echo",
        move |_: WorkflowContext, input: serde_json::Value| {
            let runs = r1.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(input)
            }
        },
    )
    .workflow(
        "failing",
        move |_: WorkflowContext, _: serde_json::Value| {
            let runs = r2.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(WorkflowError::application_with_code(
                    "the target failed",
                    "TargetError",
                ))
            }
        },
    )
}

/// The target's instance id, from the caller's `child_started`.
fn target_of(journal: &[duraflow::Event]) -> String {
    journal
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ChildStarted { instance_id, .. } => Some(instance_id.clone()),
            _ => None,
        })
        .expect("no child_started")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_5_1_invoke_basic() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            targets(b, &r).workflow("caller", |ctx: WorkflowContext, input: String| async move {
                ctx.invoke::<String>("echo", &input).await
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let input = random_alnum(8);
                let q = format!("\"{input}\"");
                let id = rig.client.start("caller", &input).await.unwrap();
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), input.as_str());
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        &format!("child_started 0 echo {q}"),
                        &format!("child_completed 0 {q}"),
                        &format!("workflow_completed {q}"),
                    ],
                );
                assert_eq!(runs.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
                let (target, tj) = finished(&rig, &target_of(&journal)).await;
                assert_eq!(target.unwrap(), input.as_str());
                assert_eq!(
                    recs(&tj),
                    [
                        "workflow_started".to_owned(),
                        format!("workflow_completed {q}")
                    ]
                );
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_5_5_invoke_target_fails_uncaught() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            targets(b, &r).workflow("caller", |ctx: WorkflowContext, _: ()| async move {
                ctx.invoke::<()>("failing", &()).await
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let id = rig.client.start("caller", &()).await.unwrap();
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "child_started 0 failing null",
                        "child_failed 0 application/TargetError",
                        "workflow_failed child_failed/TargetError",
                    ],
                );
                let failure = out.unwrap_err();
                assert_eq!(failure.message, "the target failed");
                assert_eq!(runs.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_5_9_invoke_result_cached_on_replay() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            targets(b, &r).workflow("caller", |ctx: WorkflowContext, _: ()| async move {
                let r: String = ctx.invoke("echo", "result").await?;
                ctx.sleep(Duration::from_secs(1)).await?;
                Ok(r)
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let id = rig.client.start("caller", &()).await.unwrap();
                let before = [
                    "workflow_started",
                    "child_started 0 echo \"result\"",
                    "child_completed 0 \"result\"",
                    "timer_created 1 1000ms",
                ];
                suspended_at(&rig, id.as_ref(), &before).await;
                rig.clock.advance(Duration::from_secs(1));
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), "result");
                let mut all = before.to_vec();
                all.extend(["timer_fired 1", "workflow_completed \"result\""]);
                assert_recs(&rig.backend, &journal, &all);
                // The target ran once; the last turn took `r` from the journal.
                assert_eq!(runs.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
            }
        },
    )
    .await;
}
