//! Probes of the normative rules (R1–R14) of `durable-functions-behaviours.md` whose cited
//! cases are not among its selected cases (those are in the other `df_*` files). Each test is
//! named after the rule and the AWS case id it cites, and is written from the rule's text; on
//! the memory and SQLite stores under virtual time, comparing the journal record by record
//! (see `df_support` for the record notation).
//!
//! Where duraflow deliberately differs, the tests follow duraflow (see also the other files):
//!
//! - R4: retry delays are recorded as times, in milliseconds.
//! - R7: a heartbeat is journaled (`callback_heartbeat`).
//! - R8: the submitter of `wait_for_callback` makes one attempt unless given
//!   `.submitter_retry(policy)`; a failing submitter fails the context.
//! - R12: a poll that says "continue" or "done" is a successful `check` step; strategy
//!   exhaustion fails the wait's context (`condition_exhausted`) after the last poll's step
//!   succeeded, rather than failing that poll's record; polls have distinct operation ids.
//! - R9/R11: a misconfigured batch fails the workflow with an application error before the
//!   batch records anything.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;
mod df_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use df_support::{assert_recs, finished, on_both_stores, suspended_at, token_of};
use duraflow::crates::core::context::{Condition, WaitStrategy};
use duraflow::prelude::*;
use duraflow::{Branch, CompletionReason, EventKind};
use serde_json::{json, Value};

fn ok(value: &str) -> Branch<String> {
    let value = value.to_owned();
    branch(move |_: WorkflowContext| async move { Ok(value) })
}

fn fail() -> Branch<String> {
    branch(|_: WorkflowContext| async { Err(WorkflowError::application("branch failed")) })
}

fn reason(r: CompletionReason) -> &'static str {
    match r {
        CompletionReason::AllCompleted => "ALL_COMPLETED",
        CompletionReason::MinSuccessfulReached => "MIN_SUCCESSFUL_REACHED",
        CompletionReason::FailureToleranceExceeded => "FAILURE_TOLERANCE_EXCEEDED",
    }
}

/// Runs `parallel` over `pattern` (`o` a succeeding branch, `f` a failing one), one at a time,
/// under `config`; returns the summary and the journal's branch records.
fn batch_case(
    b: EngineBuilder,
    name: &'static str,
    pattern: &'static str,
    config: CompletionConfig,
) -> EngineBuilder {
    b.workflow(name, move |ctx: WorkflowContext, _: ()| {
        let config = config.clone();
        async move {
            let branches = pattern
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if c == 'o' {
                        ok(&format!("r{i}"))
                    } else {
                        fail()
                    }
                })
                .collect();
            let r = ctx
                .parallel(name, branches)
                .max_concurrency(1)
                .completion(config)
                .await?;
            Ok(json!({
                "completionReason": reason(r.completion_reason),
                "status": format!("{:?}", r.status()),
                "successCount": r.success_count(),
                "failureCount": r.failure_count(),
                "totalCount": r.total_count(),
            }))
        }
    })
}

/// The branch contexts that were started, by index.
fn started_branches(journal: &[duraflow::Event]) -> Vec<String> {
    journal
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ContextStarted { op, .. } if op.path().len() == 2 => Some(op.to_string()),
            _ => None,
        })
        .collect()
}

async fn run_batch(rig: &df_support::Rig, name: &str) -> (Value, Vec<String>) {
    let id = rig.client.start(name, &()).await.unwrap();
    let (out, journal) = finished(rig, id.as_ref()).await;
    // The parent succeeds whatever the branches did.
    assert!(
        matches!(journal[journal.len() - 2].kind, EventKind::ContextCompleted { ref op, .. } if op.to_string() == "0"),
        "[{}] {:?}",
        &rig.backend,
        df_support::recs(&journal)
    );
    (out.unwrap(), started_branches(&journal))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r10_8_13_failure_percentage_exceeded_stops() {
    on_both_stores(
        |b| {
            batch_case(
                b,
                "pct",
                "ffoo",
                CompletionConfig::tolerated_failure_percentage(25.0),
            )
        },
        |rig| async move {
            let (out, started) = run_batch(&rig, "pct").await;
            assert_eq!(
                out,
                json!({"completionReason": "FAILURE_TOLERANCE_EXCEEDED", "status": "Failed",
                       "successCount": 0, "failureCount": 2, "totalCount": 2})
            );
            assert_eq!(started, ["0.0", "0.1"], "[{}]", rig.backend);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r10_8_22_failure_percentage_at_limit_does_not_stop() {
    on_both_stores(
        |b| {
            batch_case(
                b,
                "pct",
                "fooo",
                CompletionConfig::tolerated_failure_percentage(25.0),
            )
        },
        |rig| async move {
            let (out, started) = run_batch(&rig, "pct").await;
            assert_eq!(
                out,
                json!({"completionReason": "ALL_COMPLETED", "status": "Failed",
                       "successCount": 3, "failureCount": 1, "totalCount": 4})
            );
            assert_eq!(started, ["0.0", "0.1", "0.2", "0.3"], "[{}]", rig.backend);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r10_8_10_tolerated_failure_count_one() {
    on_both_stores(
        |b| batch_case(b, "count", "fofo", CompletionConfig::tolerated_failures(1)),
        |rig| async move {
            let (out, started) = run_batch(&rig, "count").await;
            assert_eq!(
                out,
                json!({"completionReason": "FAILURE_TOLERANCE_EXCEEDED", "status": "Failed",
                       "successCount": 1, "failureCount": 2, "totalCount": 3})
            );
            assert_eq!(started, ["0.0", "0.1", "0.2"], "[{}]", rig.backend);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r10_8_17_unreachable_min_successful_does_not_stop_early() {
    on_both_stores(
        |b| batch_case(b, "unreachable", "ffo", CompletionConfig::min_successful(2)),
        |rig| async move {
            let (out, started) = run_batch(&rig, "unreachable").await;
            assert_eq!(
                out,
                json!({"completionReason": "ALL_COMPLETED", "status": "Failed",
                       "successCount": 1, "failureCount": 2, "totalCount": 3})
            );
            assert_eq!(started, ["0.0", "0.1", "0.2"], "[{}]", rig.backend);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r10_8_18_failure_tolerance_wins_over_min_successful() {
    on_both_stores(
        |b| {
            batch_case(
                b,
                "both",
                "offo",
                CompletionConfig::min_successful(3).with_tolerated_failures(1),
            )
        },
        |rig| async move {
            let (out, started) = run_batch(&rig, "both").await;
            assert_eq!(
                out,
                json!({"completionReason": "FAILURE_TOLERANCE_EXCEEDED", "status": "Failed",
                       "successCount": 1, "failureCount": 2, "totalCount": 3})
            );
            assert_eq!(started, ["0.0", "0.1", "0.2"], "[{}]", rig.backend);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r9_8_7_parent_succeeds_when_throw_if_error_fails_the_execution() {
    on_both_stores(
        |b| {
            b.workflow("throw", |ctx: WorkflowContext, _: ()| async move {
                let r = ctx
                    .parallel("throw", vec![ok("a"), fail()])
                    .max_concurrency(1)
                    .await?;
                r.throw_if_error().map_err(WorkflowError::Context)?;
                Ok(())
            })
        },
        |rig| async move {
            let id = rig.client.start("throw", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 throw",
                    "context_started 0.0 throw[0]",
                    "context_completed 0.0 \"a\"",
                    "context_started 0.1 throw[1]",
                    "context_failed 0.1 application",
                    "context_completed 0 *",
                    "workflow_failed application",
                ],
            );
            assert_eq!(out.unwrap_err().message, "branch failed");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r11_8_19_bad_max_concurrency_before_any_record() {
    on_both_stores(
        |b| {
            b.workflow("bad", |ctx: WorkflowContext, _: ()| async move {
                ctx.map("bad", vec![1u32, 2], |_, i: u32, _| async move { Ok(i) })
                    .max_concurrency(0)
                    .await?;
                Ok(())
            })
        },
        |rig| async move {
            let id = rig.client.start("bad", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_recs(
                &rig.backend,
                &journal,
                &["workflow_started", "workflow_failed application"],
            );
            let failure = out.unwrap_err();
            assert!(
                failure.message.contains("max_concurrency"),
                "{}",
                failure.message
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r7_4_9_completion_while_blocked_elsewhere_is_recorded_at_once() {
    on_both_stores(
        |b| {
            b.workflow("early", |ctx: WorkflowContext, _: ()| async move {
                let cb = ctx.callback::<String>("cb");
                let _token = cb.token();
                ctx.sleep(Duration::from_secs(10)).await?;
                cb.await
            })
        },
        |rig| async move {
            let id = rig.client.start("early", &()).await.unwrap();
            // Creating the callback did not block: the wait started after it.
            suspended_at(
                &rig,
                id.as_ref(),
                &[
                    "workflow_started",
                    "callback_created 0 cb",
                    "timer_created 1 10000ms",
                ],
            )
            .await;
            let token = token_of(&rig, id.as_ref(), "cb").await;
            rig.clock.advance(Duration::from_secs(1));
            rig.client.complete_callback(&token, "early").await.unwrap();
            // Recorded at once, while the workflow still waits.
            suspended_at(
                &rig,
                id.as_ref(),
                &[
                    "workflow_started",
                    "callback_created 0 cb",
                    "timer_created 1 10000ms",
                    "callback_completed 0 \"early\"",
                ],
            )
            .await;
            rig.clock.advance(Duration::from_secs(9));
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), "early");
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "callback_created 0 cb",
                    "timer_created 1 10000ms",
                    "callback_completed 0 \"early\"",
                    "timer_fired 1",
                    "workflow_completed \"early\"",
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r7_heartbeat_resets_the_deadline_then_heartbeat_timeout() {
    on_both_stores(
        |b| {
            b.workflow("beats", |ctx: WorkflowContext, _: ()| async move {
                ctx.callback::<String>("cb")
                    .heartbeat_timeout(Duration::from_secs(10))
                    .await
            })
        },
        |rig| async move {
            let id = rig.client.start("beats", &()).await.unwrap();
            let created = "callback_created 0 cb heartbeat=10000ms";
            suspended_at(&rig, id.as_ref(), &["workflow_started", created]).await;
            let token = token_of(&rig, id.as_ref(), "cb").await;
            rig.clock.advance(Duration::from_secs(6));
            rig.client.heartbeat_callback(&token).await.unwrap();
            suspended_at(
                &rig,
                id.as_ref(),
                &["workflow_started", created, "callback_heartbeat 0"],
            )
            .await;
            // 12 s after creation, 6 s after the heartbeat: still open.
            rig.clock.advance(Duration::from_secs(6));
            rig.client.heartbeat_callback(&token).await.unwrap();
            suspended_at(
                &rig,
                id.as_ref(),
                &[
                    "workflow_started",
                    created,
                    "callback_heartbeat 0",
                    "callback_heartbeat 0",
                ],
            )
            .await;
            rig.clock.advance(Duration::from_secs(10));
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    created,
                    "callback_heartbeat 0",
                    "callback_heartbeat 0",
                    "callback_failed 0 timeout/callback_heartbeat_timed_out",
                    "workflow_failed timeout/callback_heartbeat_timed_out",
                ],
            );
            assert_eq!(out.unwrap_err().kind, FailureKind::Timeout);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r8_7_7_failing_submitter_fails_the_context() {
    let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
    let t = tokens.clone();
    on_both_stores(
        |b| {
            let tokens = t.clone();
            b.workflow("submit-fails", move |ctx: WorkflowContext, _: ()| {
                let tokens = tokens.clone();
                async move {
                    ctx.wait_for_callback::<String, _, _>("cb", move |token, _| {
                        tokens.lock().unwrap().push(token);
                        async { Err(ActivityError::retryable("cannot submit")) }
                    })
                    .await
                }
            })
        },
        |rig| {
            let tokens = tokens.clone();
            async move {
                tokens.lock().unwrap().clear();
                let id = rig.client.start("submit-fails", &()).await.unwrap();
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "context_started 0 cb",
                        "callback_created 0.0 cb",
                        "step_started 0.1 submit",
                        "step_failed 0.1 application",
                        "context_failed 0 application",
                        "workflow_failed application",
                    ],
                );
                assert_eq!(out.unwrap_err().message, "cannot submit");
                // The callback never completes: its token is refused.
                let token = tokens.lock().unwrap()[0].clone();
                assert!(rig.client.complete_callback(&token, "late").await.is_err());
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r12_6_7_check_that_throws_fails_without_retry() {
    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    on_both_stores(
        |b| {
            let checks = c.clone();
            b.workflow("throws", move |ctx: WorkflowContext, _: ()| {
                let checks = checks.clone();
                async move {
                    ctx.wait_for_condition(
                        "wfc",
                        0u32,
                        move |_, _| {
                            checks.fetch_add(1, Ordering::SeqCst);
                            async {
                                Err::<Condition<u32>, _>(ActivityError::retryable("check failed"))
                            }
                        },
                        WaitStrategy::fixed(Duration::from_secs(1)),
                    )
                    .await
                }
            })
        },
        |rig| {
            let checks = checks.clone();
            async move {
                checks.store(0, Ordering::SeqCst);
                let id = rig.client.start("throws", &()).await.unwrap();
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "context_started 0 wfc",
                        "step_started 0.0 check",
                        "step_failed 0.0 application",
                        "context_failed 0 application",
                        "workflow_failed application",
                    ],
                );
                assert_eq!(out.unwrap_err().message, "check failed");
                assert_eq!(checks.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r12_6_6_strategy_exhaustion() {
    on_both_stores(
        |b| {
            b.workflow("exhausted", |ctx: WorkflowContext, _: ()| async move {
                ctx.wait_for_condition(
                    "wfc",
                    0u32,
                    |s, _| async move { Ok(Condition::Continue(s + 1)) },
                    WaitStrategy::fixed(Duration::from_secs(1)).max_attempts(2),
                )
                .await
            })
        },
        |rig| async move {
            let id = rig.client.start("exhausted", &()).await.unwrap();
            let first = [
                "workflow_started",
                "context_started 0 wfc",
                "step_started 0.0 check",
                "step_completed 0.0 {\"continue\":1}",
                "timer_created 0.1 1000ms",
            ];
            suspended_at(&rig, id.as_ref(), &first).await;
            rig.clock.advance(Duration::from_secs(1));
            let (out, journal) = finished(&rig, id.as_ref()).await;
            let mut all = first.to_vec();
            all.extend([
                "timer_fired 0.1",
                "step_started 0.2 check",
                "step_completed 0.2 {\"continue\":2}",
                "context_failed 0 condition_exhausted",
                "workflow_failed condition_exhausted",
            ]);
            assert_recs(&rig.backend, &journal, &all);
            assert_eq!(out.unwrap_err().kind, FailureKind::ConditionExhausted);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r1_3_7_context_not_restarted_after_suspension() {
    let bodies = Arc::new(AtomicUsize::new(0));
    let b2 = bodies.clone();
    on_both_stores(
        |b| {
            let bodies = b2.clone();
            b.workflow("resume", move |ctx: WorkflowContext, _: ()| {
                let bodies = bodies.clone();
                async move {
                    ctx.run_in_child_context("child", move |c: WorkflowContext| async move {
                        bodies.fetch_add(1, Ordering::SeqCst);
                        let a: u32 = c.step("a", |_| async { Ok(1) }).await?;
                        c.sleep(Duration::from_secs(1)).await?;
                        let b: u32 = c.step("b", |_| async { Ok(2) }).await?;
                        Ok(a + b)
                    })
                    .await
                }
            })
        },
        |rig| {
            let bodies = bodies.clone();
            async move {
                bodies.store(0, Ordering::SeqCst);
                let id = rig.client.start("resume", &()).await.unwrap();
                let first = [
                    "workflow_started",
                    "context_started 0 child",
                    "step_started 0.0 a",
                    "step_completed 0.0 1",
                    "timer_created 0.1 1000ms",
                ];
                suspended_at(&rig, id.as_ref(), &first).await;
                rig.clock.advance(Duration::from_secs(1));
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), 3);
                let mut all = first.to_vec();
                all.extend([
                    "timer_fired 0.1",
                    "step_started 0.2 b",
                    "step_completed 0.2 2",
                    "context_completed 0 3",
                    "workflow_completed 3",
                ]);
                assert_recs(&rig.backend, &journal, &all);
                // Replayed, the body ran again (it had not completed), and was not re-started;
                // warm, it went on from where it was.
                let expected = if rig.replayed { 2 } else { 1 };
                assert_eq!(bodies.load(Ordering::SeqCst), expected, "[{}]", rig.backend);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r2_9_15_map_items_suspend_and_resume_in_order() {
    on_both_stores(
        |b| {
            b.workflow("items-wait", |ctx: WorkflowContext, _: ()| async move {
                let r = ctx
                    .map(
                        "m",
                        vec![1u32, 2],
                        |c: WorkflowContext, item: u32, _| async move {
                            let v: u32 = c.step("s", move |_| async move { Ok(item * 10) }).await?;
                            c.sleep(Duration::from_secs(1)).await?;
                            Ok(v)
                        },
                    )
                    .max_concurrency(1)
                    .await?;
                Ok(r.results().into_iter().copied().collect::<Vec<u32>>())
            })
        },
        |rig| async move {
            let id = rig.client.start("items-wait", &()).await.unwrap();
            let mut expected = vec![
                "workflow_started",
                "context_started 0 m",
                "context_started 0.0 m[0]",
                "step_started 0.0.0 s",
                "step_completed 0.0.0 10",
                "timer_created 0.0.1 1000ms",
            ];
            suspended_at(&rig, id.as_ref(), &expected).await;
            rig.clock.advance(Duration::from_secs(1));
            expected.extend([
                "timer_fired 0.0.1",
                "context_completed 0.0 10",
                "context_started 0.1 m[1]",
                "step_started 0.1.0 s",
                "step_completed 0.1.0 20",
                "timer_created 0.1.1 1000ms",
            ]);
            suspended_at(&rig, id.as_ref(), &expected).await;
            rig.clock.advance(Duration::from_secs(1));
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), json!([10, 20]));
            expected.extend([
                "timer_fired 0.1.1",
                "context_completed 0.1 20",
                "context_completed 0 *",
                "workflow_completed [10,20]",
            ]);
            assert_recs(&rig.backend, &journal, &expected);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r4_1_14_growing_retry_delays() {
    on_both_stores(
        |b| {
            b.workflow("backoff", |ctx: WorkflowContext, _: ()| async move {
                ctx.step("s", |step| async move {
                    if step.attempt() < 3 {
                        Err(ActivityError::retryable("not yet"))
                    } else {
                        Ok(step.attempt())
                    }
                })
                .retry(
                    RetryPolicy::exponential(Duration::from_secs(2))
                        .backoff_coefficient(3.0)
                        .max_attempts(3),
                )
                .await
            })
        },
        |rig| async move {
            let id = rig.client.start("backoff", &()).await.unwrap();
            let mut expected = vec![
                "workflow_started",
                "step_started 0 s",
                "step_retrying 0 attempt=1 application retry_in=2000ms",
            ];
            suspended_at(&rig, id.as_ref(), &expected).await;
            rig.clock.advance(Duration::from_secs(2));
            expected.extend([
                "timer_fired 0",
                "step_started 0 s attempt=2",
                "step_retrying 0 attempt=2 application retry_in=6000ms",
            ]);
            suspended_at(&rig, id.as_ref(), &expected).await;
            rig.clock.advance(Duration::from_secs(6));
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), 3);
            expected.extend([
                "timer_fired 0",
                "step_started 0 s attempt=3",
                "step_completed 0 3",
                "workflow_completed 3",
            ]);
            assert_recs(&rig.backend, &journal, &expected);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r5_5_10_invoke_failure_cached_on_replay() {
    let runs = Arc::new(AtomicUsize::new(0));
    let caught: Arc<Mutex<Vec<WorkflowError>>> = Arc::default();
    let (r, c) = (runs.clone(), caught.clone());
    on_both_stores(
        |b| {
            let (runs, caught) = (r.clone(), c.clone());
            b.workflow("failing", move |_: WorkflowContext, _: ()| {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(WorkflowError::application("target failed"))
                }
            })
            .workflow("caller", move |ctx: WorkflowContext, _: ()| {
                let caught = caught.clone();
                async move {
                    if let Err(e) = ctx.invoke::<()>("failing", &()).await {
                        caught.lock().unwrap().push(e);
                    }
                    ctx.sleep(Duration::from_secs(1)).await?;
                    Ok("handled")
                }
            })
        },
        |rig| {
            let (runs, caught) = (runs.clone(), caught.clone());
            async move {
                runs.store(0, Ordering::SeqCst);
                caught.lock().unwrap().clear();
                let id = rig.client.start("caller", &()).await.unwrap();
                let first = [
                    "workflow_started",
                    "child_started 0 failing null",
                    "child_failed 0 application",
                    "timer_created 1 1000ms",
                ];
                suspended_at(&rig, id.as_ref(), &first).await;
                rig.clock.advance(Duration::from_secs(1));
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), "handled");
                let mut all = first.to_vec();
                all.extend(["timer_fired 1", "workflow_completed \"handled\""]);
                assert_recs(&rig.backend, &journal, &all);
                assert_eq!(runs.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
                let caught = caught.lock().unwrap().clone();
                // Caught live, and again from the record in the replayed turn.
                let expected = if rig.replayed { 2 } else { 1 };
                assert_eq!(caught.len(), expected, "[{}] {caught:?}", rig.backend);
                assert!(caught.windows(2).all(|w| w[0] == w[1]), "{caught:?}");
            }
        },
    )
    .await;
}

/// The stores a crash test runs on (the same store outlives the crashed engine).
async fn crash_stores() -> (Vec<Arc<dyn duraflow::Store>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = duraflow::SqliteStore::open(dir.path().join("crash.db"))
        .await
        .unwrap();
    (
        vec![Arc::new(duraflow::MemoryStore::new()), Arc::new(sqlite)],
        dir,
    )
}

/// Whether the step closures block forever (the process is about to crash) and whether one
/// has begun to.
#[derive(Default)]
struct CrashGate {
    crashing: std::sync::atomic::AtomicBool,
    blocked: std::sync::atomic::AtomicBool,
}

impl CrashGate {
    /// While crashing, never returns (the engine is dropped under it).
    async fn pass(&self) {
        if self.crashing.load(Ordering::SeqCst) {
            self.blocked.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    }
}

/// Starts `workflow` on an engine over `store`, waits until a step blocks at the gate and the
/// stored journal satisfies `durable`, then drops the engine without shutting it down (a
/// crash: its tasks are aborted, its turn is left leased); then starts a second engine on the
/// same store, moves the clock past the turn lease, and returns the instance id, what the test
/// sees of the second engine, and the engine.
async fn crash_and_recover(
    store: Arc<dyn duraflow::Store>,
    gate: Arc<CrashGate>,
    register: impl Fn(EngineBuilder) -> EngineBuilder,
    durable: impl Fn(&[String]) -> bool,
) -> (String, df_support::Rig, Engine) {
    let clock = common::virtual_clock();
    let options = || EngineOptions {
        warm_instances: 0,
        ..common::virtual_options()
    };
    gate.crashing.store(true, Ordering::SeqCst);
    gate.blocked.store(false, Ordering::SeqCst);
    let first = register(
        Engine::builder()
            .shared_store(store.clone())
            .clock(clock.clone())
            .options(options()),
    )
    .start()
    .await
    .unwrap();
    let client = first.client();
    let id = client.start("crash", &()).await.unwrap().to_string();
    common::eventually("the step blocks with its records stored", || async {
        let journal = store.journal(&id, None).await.ok()?;
        (gate.blocked.load(Ordering::SeqCst) && durable(&df_support::recs(&journal))).then_some(())
    })
    .await;
    drop(first);
    gate.crashing.store(false, Ordering::SeqCst);
    let second = register(
        Engine::builder()
            .shared_store(store.clone())
            .clock(clock.clone())
            .options(options()),
    )
    .start()
    .await
    .unwrap();
    clock.advance(EngineOptions::default().turn_lease + Duration::from_secs(1));
    let rig = df_support::Rig {
        client: second.client(),
        clock,
        backend: format!("{}, after a crash", store.backend()),
        store,
        replayed: true,
    };
    (id, rig, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r6_1_17_at_most_once_step_interrupted_by_a_crash_is_not_rerun() {
    let (stores, _dir) = crash_stores().await;
    for store in stores {
        let gate = Arc::new(CrashGate::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (g, r) = (gate.clone(), runs.clone());
        let register = move |b: EngineBuilder| {
            let (gate, runs) = (g.clone(), r.clone());
            b.workflow("crash", move |ctx: WorkflowContext, _: ()| {
                let (gate, runs) = (gate.clone(), runs.clone());
                async move {
                    ctx.step("charge", move |_| {
                        let gate = gate.clone();
                        runs.fetch_add(1, Ordering::SeqCst);
                        async move {
                            gate.pass().await;
                            Ok(())
                        }
                    })
                    .semantics(StepSemantics::AtMostOncePerRetry)
                    .await
                }
            })
        };
        let (id, rig, engine) = crash_and_recover(store, gate, register, |recs| {
            recs.iter().any(|r| r == "step_started 0 charge")
        })
        .await;
        let (out, journal) = finished(&rig, &id).await;
        assert_recs(
            &rig.backend,
            &journal,
            &[
                "workflow_started",
                "step_started 0 charge",
                "step_failed 0 step_interrupted",
                "workflow_failed step_interrupted",
            ],
        );
        assert_eq!(out.unwrap_err().kind, FailureKind::StepInterrupted);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r6_1_18_at_most_once_interrupted_attempt_then_retry_policy_decides() {
    let (stores, _dir) = crash_stores().await;
    for store in stores {
        let gate = Arc::new(CrashGate::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (g, r) = (gate.clone(), runs.clone());
        let register = move |b: EngineBuilder| {
            let (gate, runs) = (g.clone(), r.clone());
            b.workflow("crash", move |ctx: WorkflowContext, _: ()| {
                let (gate, runs) = (gate.clone(), runs.clone());
                async move {
                    ctx.step("charge", move |step| {
                        let gate = gate.clone();
                        runs.fetch_add(1, Ordering::SeqCst);
                        async move {
                            gate.pass().await;
                            Ok(step.attempt())
                        }
                    })
                    .semantics(StepSemantics::AtMostOncePerRetry)
                    .retry(RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(2))
                    .await
                }
            })
        };
        let (id, rig, engine) = crash_and_recover(store, gate, register, |recs| {
            recs.iter().any(|r| r == "step_started 0 charge")
        })
        .await;
        let first = [
            "workflow_started",
            "step_started 0 charge",
            "step_retrying 0 attempt=1 step_interrupted retry_in=1000ms",
        ];
        suspended_at(&rig, &id, &first).await;
        rig.clock.advance(Duration::from_secs(1));
        let (out, journal) = finished(&rig, &id).await;
        assert_eq!(out.unwrap(), 2);
        let mut all = first.to_vec();
        all.extend([
            "timer_fired 0",
            "step_started 0 charge attempt=2",
            "step_completed 0 2",
            "workflow_completed 2",
        ]);
        assert_recs(&rig.backend, &journal, &all);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "[{}]", rig.backend);
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r6_3_12_at_least_once_step_reruns_after_a_crash_without_a_second_start() {
    let (stores, _dir) = crash_stores().await;
    for store in stores {
        let gate = Arc::new(CrashGate::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (g, r) = (gate.clone(), runs.clone());
        // Two steps at once: the quick one's stored result makes the slow one's start durable
        // while the slow one still runs.
        let register = move |b: EngineBuilder| {
            let (gate, runs) = (g.clone(), r.clone());
            b.workflow("crash", move |ctx: WorkflowContext, _: ()| {
                let (gate, runs) = (gate.clone(), runs.clone());
                async move {
                    let slow = ctx.step("slow", move |_| {
                        let gate = gate.clone();
                        runs.fetch_add(1, Ordering::SeqCst);
                        async move {
                            gate.pass().await;
                            Ok(1u32)
                        }
                    });
                    let quick = ctx.step("quick", |_| async { Ok(2u32) });
                    let (a, b) = futures::future::try_join(slow, quick).await?;
                    Ok(a + b)
                }
            })
        };
        let (id, rig, engine) = crash_and_recover(store, gate, register, |recs| {
            recs.iter().any(|r| r == "step_completed 1 2")
        })
        .await;
        let (out, journal) = finished(&rig, &id).await;
        assert_eq!(out.unwrap(), 3);
        assert_recs(
            &rig.backend,
            &journal,
            &[
                "workflow_started",
                "step_started 0 slow",
                "step_started 1 quick",
                "step_completed 1 2",
                "step_completed 0 1",
                "workflow_completed 3",
            ],
        );
        // The body ran again (at least once); its start was not recorded twice.
        assert_eq!(runs.load(Ordering::SeqCst), 2, "[{}]", rig.backend);
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r10_8_8_concurrent_min_successful_drops_running_items() {
    on_both_stores(
        |b| {
            b.workflow("race", |ctx: WorkflowContext, _: ()| async move {
                let r = ctx
                    .map(
                        "m",
                        vec![4u64, 1, 2],
                        |c: WorkflowContext, secs: u64, i| async move {
                            c.sleep(Duration::from_secs(secs)).await?;
                            Ok(i)
                        },
                    )
                    .max_concurrency(2)
                    .completion(CompletionConfig::min_successful(2))
                    .await?;
                // Long enough for the dropped item's timer to come due meanwhile.
                ctx.sleep(Duration::from_secs(5)).await?;
                Ok(json!({
                    "completionReason": reason(r.completion_reason),
                    "results": r.results(),
                    "successCount": r.success_count(),
                    "cancelledCount": r.cancelled_count(),
                    "totalCount": r.total_count(),
                }))
            })
        },
        |rig| async move {
            let id = rig.client.start("race", &()).await.unwrap();
            let mut expected = vec![
                "workflow_started",
                "context_started 0 m",
                "context_started 0.0 m[0]",
                "timer_created 0.0.0 4000ms",
                "context_started 0.1 m[1]",
                "timer_created 0.1.0 1000ms",
            ];
            suspended_at(&rig, id.as_ref(), &expected).await;
            rig.clock.advance(Duration::from_secs(1));
            expected.extend([
                "timer_fired 0.1.0",
                "context_completed 0.1 1",
                "context_started 0.2 m[2]",
                "timer_created 0.2.0 2000ms",
            ]);
            suspended_at(&rig, id.as_ref(), &expected).await;
            rig.clock.advance(Duration::from_secs(2));
            expected.extend([
                "timer_fired 0.2.0",
                "context_completed 0.2 2",
                "context_completed 0 *",
                "timer_created 1 5000ms",
            ]);
            suspended_at(&rig, id.as_ref(), &expected).await;
            // Item 0's timer comes due while the workflow waits: it is not journaled.
            rig.clock.advance(Duration::from_secs(5));
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(
                out.unwrap(),
                json!({"completionReason": "MIN_SUCCESSFUL_REACHED", "results": [1, 2],
                       "successCount": 2, "cancelledCount": 1, "totalCount": 3})
            );
            expected.extend(["timer_fired 1", "workflow_completed *"]);
            assert_recs(&rig.backend, &journal, &expected);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r7_r8_callbacks_in_concurrent_items_complete_out_of_order() {
    on_both_stores(
        |b| {
            b.workflow("approvals", |ctx: WorkflowContext, _: ()| async move {
                let r = ctx
                    .map(
                        "m",
                        vec!["a", "b"],
                        |c: WorkflowContext, item: &str, _| async move {
                            c.wait_for_callback::<String, _, _>(item, |_, _| async { Ok(()) })
                                .await
                        },
                    )
                    .max_concurrency(2)
                    .await?;
                Ok(r.results().into_iter().cloned().collect::<Vec<String>>())
            })
        },
        |rig| async move {
            let id = rig.client.start("approvals", &()).await.unwrap();
            let mut expected = vec![
                "workflow_started",
                "context_started 0 m",
                "context_started 0.0 m[0]",
                "context_started 0.0.0 a",
                "callback_created 0.0.0.0 a",
                "step_started 0.0.0.1 submit",
                "context_started 0.1 m[1]",
                "context_started 0.1.0 b",
                "callback_created 0.1.0.0 b",
                "step_started 0.1.0.1 submit",
                "step_completed 0.0.0.1 null",
                "step_completed 0.1.0.1 null",
            ];
            suspended_at(&rig, id.as_ref(), &expected).await;
            let (a, b) = (
                token_of(&rig, id.as_ref(), "a").await,
                token_of(&rig, id.as_ref(), "b").await,
            );
            rig.clock.advance(Duration::from_secs(1));
            rig.client.complete_callback(&b, "B").await.unwrap();
            expected.extend([
                "callback_completed 0.1.0.0 \"B\"",
                "context_completed 0.1.0 \"B\"",
                "context_completed 0.1 \"B\"",
            ]);
            suspended_at(&rig, id.as_ref(), &expected).await;
            rig.clock.advance(Duration::from_secs(1));
            rig.client.complete_callback(&a, "A").await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), json!(["A", "B"]));
            expected.extend([
                "callback_completed 0.0.0.0 \"A\"",
                "context_completed 0.0.0 \"A\"",
                "context_completed 0.0 \"A\"",
                "context_completed 0 *",
                "workflow_completed [\"A\",\"B\"]",
            ]);
            assert_recs(&rig.backend, &journal, &expected);
        },
    )
    .await;
}
