//! Reference cases, section `child` (3-x) of `durable-functions-behaviours.md`: each case as a
//! test named after its id, on the memory and SQLite stores under virtual time, comparing the
//! journal record by record (see `df_support` for the record notation).
//!
//! Where duraflow deliberately differs from AWS, the tests follow duraflow:
//!
//! - A child context is `context_started`/`context_completed`/`context_failed`; its parent is
//!   implied by its operation id (`0.1` is in context `0`), not a separate field.
//! - A child context always has a name (`run_in_child_context(name, ..)`).
//! - A failed child context records its body's failure as it is (the step's kind, code and
//!   message), rather than an error of its own kind (AWS's `ChildContextError`).
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

use df_support::{assert_recs, finished, on_both_stores, random_alnum, suspended_at};
use duraflow::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_3_1_child_context_basic() {
    on_both_stores(
        |b| {
            b.workflow("child", |ctx: WorkflowContext, input: String| async move {
                ctx.run_in_child_context("child", move |c: WorkflowContext| async move {
                    c.step("echo", move |_| {
                        let input = input.clone();
                        async move { Ok(input) }
                    })
                    .await
                })
                .await
            })
        },
        |rig| async move {
            let input = random_alnum(8);
            let id = rig.client.start("child", &input).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), input.as_str());
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 child",
                    "step_started 0.0 echo",
                    &format!("step_completed 0.0 \"{input}\""),
                    &format!("context_completed 0 \"{input}\""),
                    &format!("workflow_completed \"{input}\""),
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_3_4_child_context_error() {
    on_both_stores(
        |b| {
            b.workflow("child-fails", |ctx: WorkflowContext, _: ()| async move {
                ctx.run_in_child_context("failing", |c: WorkflowContext| async move {
                    c.step("fails", |_| async {
                        Err::<(), _>(ActivityError::retryable("boom").with_code("E"))
                    })
                    .retry(RetryPolicy::none())
                    .await
                })
                .await
            })
        },
        |rig| async move {
            let id = rig.client.start("child-fails", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 failing",
                    "step_started 0.0 fails",
                    "step_failed 0.0 application/E",
                    "context_failed 0 application/E",
                    "workflow_failed application/E",
                ],
            );
            let duraflow::EventKind::ContextFailed { failure, .. } = &journal[4].kind else {
                unreachable!()
            };
            assert_eq!(failure.message, "boom");
            // The error propagates: the execution fails.
            let failure = out.unwrap_err();
            assert_eq!(
                (failure.code.as_deref(), failure.message.as_str()),
                (Some("E"), "boom")
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_3_6_nested_child_contexts() {
    on_both_stores(
        |b| {
            b.workflow("nested", |ctx: WorkflowContext, input: String| async move {
                ctx.run_in_child_context("outer", move |outer: WorkflowContext| async move {
                    let i = input.clone();
                    outer
                        .step("outer-step", move |_| {
                            let i = i.clone();
                            async move { Ok(i) }
                        })
                        .await?;
                    outer
                        .run_in_child_context("inner", move |inner: WorkflowContext| async move {
                            inner
                                .step("inner-step", move |_| {
                                    let input = input.clone();
                                    async move { Ok(input) }
                                })
                                .await
                        })
                        .await
                })
                .await
            })
        },
        |rig| async move {
            let input = random_alnum(8);
            let id = rig.client.start("nested", &input).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), input.as_str());
            let q = format!("\"{input}\"");
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 outer",
                    "step_started 0.0 outer-step",
                    &format!("step_completed 0.0 {q}"),
                    "context_started 0.1 inner",
                    "step_started 0.1.0 inner-step",
                    &format!("step_completed 0.1.0 {q}"),
                    &format!("context_completed 0.1 {q}"),
                    &format!("context_completed 0 {q}"),
                    &format!("workflow_completed {q}"),
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_3_9_child_context_replay_returns_cached_result() {
    let bodies = Arc::new(AtomicUsize::new(0));
    let b2 = bodies.clone();
    on_both_stores(
        |b| {
            let bodies = b2.clone();
            b.workflow(
                "child-then-wait",
                move |ctx: WorkflowContext, input: String| {
                    let bodies = bodies.clone();
                    async move {
                        let r: String = ctx
                            .run_in_child_context("child", move |c: WorkflowContext| async move {
                                bodies.fetch_add(1, Ordering::SeqCst);
                                c.step("echo", move |_| {
                                    let input = input.clone();
                                    async move { Ok(input) }
                                })
                                .await
                            })
                            .await?;
                        ctx.sleep(Duration::from_secs(5)).await?;
                        Ok(r)
                    }
                },
            )
        },
        |rig| {
            let bodies = bodies.clone();
            async move {
                bodies.store(0, Ordering::SeqCst);
                let input = random_alnum(8);
                let q = format!("\"{input}\"");
                let id = rig.client.start("child-then-wait", &input).await.unwrap();
                let before = [
                    "workflow_started".to_owned(),
                    "context_started 0 child".to_owned(),
                    "step_started 0.0 echo".to_owned(),
                    format!("step_completed 0.0 {q}"),
                    format!("context_completed 0 {q}"),
                    "timer_created 1 5000ms".to_owned(),
                ];
                let e: Vec<&str> = before.iter().map(String::as_str).collect();
                suspended_at(&rig, id.as_ref(), &e).await;
                rig.clock.advance(Duration::from_secs(5));
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), input.as_str());
                let mut all = e.clone();
                let done = format!("workflow_completed {q}");
                all.extend(["timer_fired 1", done.as_str()]);
                assert_recs(&rig.backend, &journal, &all);
                // The replay turn did not run the child's body.
                assert_eq!(bodies.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
            }
        },
    )
    .await;
}
