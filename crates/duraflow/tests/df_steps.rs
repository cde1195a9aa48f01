//! Reference cases, section `step` (1-x) of `durable-functions-behaviours.md`: each case as a
//! test named after its id, on the memory and SQLite stores under virtual time, comparing the
//! journal record by record (see `df_support` for the record notation).
//!
//! Where duraflow deliberately differs from AWS, the tests follow duraflow:
//!
//! - AWS's `step started`/`succeeded`/`failed` are `step_started`/`step_completed`/`step_failed`;
//!   a failed attempt that will be retried is `step_retrying` (attempt, failure, retry time),
//!   not a `failed` record with retry details.
//! - The attempt number is on `step_started` (`attempt=n` from the second attempt on), not on
//!   the success record.
//! - A retry's delay is recorded as a time (`retry_at`), in milliseconds, not in whole
//!   seconds; the wait for the retry is the step's own durable timer, whose firing is journaled
//!   as `timer_fired` on the step's operation id.
//! - A step makes one attempt unless given a retry policy (what AWS spells
//!   `RetryPresets.none()`), and a step whose retries run out fails with kind
//!   `retries_exhausted`, its message naming the last attempt's error.
//! - An error's "type" is the error's code (`ActivityError::with_code`), kept with the kind.
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
use std::sync::{Arc, Mutex};

use df_support::{assert_recs, at_of, between, finished, on_both_stores, suspended_at};
use duraflow::prelude::*;
use duraflow::EventKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_1_1_step_basic() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            let runs = r.clone();
            b.workflow("greet", move |ctx: WorkflowContext, input: String| {
                let runs = runs.clone();
                async move {
                    ctx.step("greet", move |_| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let out = format!("Hello, {input}!");
                        async move { Ok(out) }
                    })
                    .await
                }
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let id = rig.client.start("greet", "World").await.unwrap();
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), "Hello, World!");
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "step_started 0 greet",
                        "step_completed 0 \"Hello, World!\"",
                        "workflow_completed \"Hello, World!\"",
                    ],
                );
                assert_eq!(runs.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_1_3_sequential_steps_second_depends_on_first() {
    on_both_stores(
        |b| {
            b.workflow("seq", |ctx: WorkflowContext, _: ()| async move {
                let r1: String = ctx
                    .step("step_one", |_| async { Ok("first".to_owned()) })
                    .await?;
                let r2: String = ctx
                    .step("step_two", move |_| {
                        let r1 = r1.clone();
                        async move { Ok(format!("{r1}_second")) }
                    })
                    .await?;
                Ok(r2)
            })
        },
        |rig| async move {
            let id = rig.client.start("seq", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), "first_second");
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "step_started 0 step_one",
                    "step_completed 0 \"first\"",
                    "step_started 1 step_two",
                    "step_completed 1 \"first_second\"",
                    "workflow_completed \"first_second\"",
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_1_9_replay_skips_succeeded_step() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            let runs = r.clone();
            b.workflow("cached", move |ctx: WorkflowContext, _: ()| {
                let runs = runs.clone();
                async move {
                    let r: String = ctx
                        .step("body", move |_| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            async { Ok("cached_value".to_owned()) }
                        })
                        .await?;
                    ctx.sleep(Duration::from_secs(1)).await?;
                    Ok(r)
                }
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let id = rig.client.start("cached", &()).await.unwrap();
                suspended_at(
                    &rig,
                    id.as_ref(),
                    &[
                        "workflow_started",
                        "step_started 0 body",
                        "step_completed 0 \"cached_value\"",
                        "timer_created 1 1000ms",
                    ],
                )
                .await;
                rig.clock.advance(Duration::from_secs(1));
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), "cached_value");
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "step_started 0 body",
                        "step_completed 0 \"cached_value\"",
                        "timer_created 1 1000ms",
                        "timer_fired 1",
                        "workflow_completed \"cached_value\"",
                    ],
                );
                // The second turn replayed the step from its record.
                assert_eq!(runs.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_1_10_replay_rethrows_failed_step() {
    let runs = Arc::new(AtomicUsize::new(0));
    let caught: Arc<Mutex<Vec<WorkflowError>>> = Arc::default();
    let (r, c) = (runs.clone(), caught.clone());
    on_both_stores(
        |b| {
            let (runs, caught) = (r.clone(), c.clone());
            b.workflow("rethrow", move |ctx: WorkflowContext, _: ()| {
                let (runs, caught) = (runs.clone(), caught.clone());
                async move {
                    let failed = ctx
                        .step("body", move |_| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            async {
                                Err::<(), _>(
                                    ActivityError::retryable("step executed and failed")
                                        .with_code("E"),
                                )
                            }
                        })
                        .retry(RetryPolicy::none())
                        .await;
                    if let Err(e) = failed {
                        caught.lock().unwrap().push(e);
                    }
                    ctx.sleep(Duration::from_secs(1)).await?;
                    Ok(())
                }
            })
        },
        |rig| {
            let (runs, caught) = (runs.clone(), caught.clone());
            async move {
                runs.store(0, Ordering::SeqCst);
                caught.lock().unwrap().clear();
                let id = rig.client.start("rethrow", &()).await.unwrap();
                suspended_at(
                    &rig,
                    id.as_ref(),
                    &[
                        "workflow_started",
                        "step_started 0 body",
                        "step_failed 0 application/E",
                        "timer_created 1 1000ms",
                    ],
                )
                .await;
                rig.clock.advance(Duration::from_secs(1));
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), serde_json::Value::Null);
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "step_started 0 body",
                        "step_failed 0 application/E",
                        "timer_created 1 1000ms",
                        "timer_fired 1",
                        "workflow_completed null",
                    ],
                );
                assert_eq!(runs.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
                // Caught live in the first turn and, replayed, re-raised from the record, the
                // same, in the second (warm, the second turn goes on past the catch).
                let caught = caught.lock().unwrap().clone();
                let expected = if rig.replayed { 2 } else { 1 };
                assert_eq!(caught.len(), expected, "[{}] {caught:?}", rig.backend);
                assert!(caught.windows(2).all(|w| w[0] == w[1]), "[{}]", rig.backend);
                let WorkflowError::Step(f) = &caught[0] else {
                    panic!("expected a step error, got {:?}", caught[0]);
                };
                assert_eq!(f.kind, FailureKind::Application);
                assert_eq!(f.code.as_deref(), Some("E"));
                assert_eq!(f.message, "step executed and failed");
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_1_11_retry_then_succeed() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            let runs = r.clone();
            b.workflow("flaky", move |ctx: WorkflowContext, _: ()| {
                let runs = runs.clone();
                async move {
                    ctx.step("flaky", move |step| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if step.attempt() == 1 {
                                Err(ActivityError::retryable("first attempt fails"))
                            } else {
                                Ok("Operation succeeded".to_owned())
                            }
                        }
                    })
                    .retry(RetryPolicy::fixed(Duration::from_secs(1)))
                    .await
                }
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let id = rig.client.start("flaky", &()).await.unwrap();
                suspended_at(
                    &rig,
                    id.as_ref(),
                    &[
                        "workflow_started",
                        "step_started 0 flaky",
                        "step_retrying 0 attempt=1 application retry_in=1000ms",
                    ],
                )
                .await;
                rig.clock.advance(Duration::from_secs(1));
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), "Operation succeeded");
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "step_started 0 flaky",
                        "step_retrying 0 attempt=1 application retry_in=1000ms",
                        "timer_fired 0",
                        "step_started 0 flaky attempt=2",
                        "step_completed 0 \"Operation succeeded\"",
                        "workflow_completed \"Operation succeeded\"",
                    ],
                );
                assert_eq!(runs.load(Ordering::SeqCst), 2, "[{}]", rig.backend);
                let failed = at_of(&journal, |k| matches!(k, EventKind::StepRetrying { .. }));
                let second = at_of(&journal, |k| {
                    matches!(k, EventKind::StepStarted { attempt: 2, .. })
                });
                assert!(between(failed, second) >= Duration::from_secs(1));
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_1_12_retry_exhaustion() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            let runs = r.clone();
            b.workflow("hopeless", move |ctx: WorkflowContext, _: ()| {
                let runs = runs.clone();
                async move {
                    ctx.step("hopeless", move |step| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        async move {
                            Err::<(), _>(ActivityError::retryable(format!(
                                "attempt {} failed",
                                step.attempt()
                            )))
                        }
                    })
                    .retry(RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(4))
                    .await
                }
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let id = rig.client.start("hopeless", &()).await.unwrap();
                let mut expected = vec![
                    "workflow_started".to_owned(),
                    "step_started 0 hopeless".to_owned(),
                ];
                for attempt in 1..=3 {
                    expected.push(format!(
                        "step_retrying 0 attempt={attempt} application retry_in=1000ms"
                    ));
                    let e: Vec<&str> = expected.iter().map(String::as_str).collect();
                    suspended_at(&rig, id.as_ref(), &e).await;
                    rig.clock.advance(Duration::from_secs(1));
                    expected.push("timer_fired 0".to_owned());
                    expected.push(format!("step_started 0 hopeless attempt={}", attempt + 1));
                }
                expected.push("step_failed 0 retries_exhausted".to_owned());
                expected.push("workflow_failed retries_exhausted".to_owned());
                let (out, journal) = finished(&rig, id.as_ref()).await;
                let e: Vec<&str> = expected.iter().map(String::as_str).collect();
                assert_recs(&rig.backend, &journal, &e);
                assert_eq!(runs.load(Ordering::SeqCst), 4, "[{}]", rig.backend);
                // The execution fails with the step's error.
                let failure = out.unwrap_err();
                assert_eq!(failure.kind, FailureKind::RetriesExhausted);
                assert!(
                    failure.message.contains("attempt 4 failed"),
                    "{}",
                    failure.message
                );
                assert_eq!(
                    failure.op.as_ref().map(ToString::to_string),
                    Some("0".into())
                );
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_1_19_step_fails_permanently() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            let runs = r.clone();
            b.workflow("fails", move |ctx: WorkflowContext, _: ()| {
                let runs = runs.clone();
                async move {
                    ctx.step("fails", move |_| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        async { Err::<(), _>(ActivityError::retryable("boom").with_code("E")) }
                    })
                    .retry(RetryPolicy::none())
                    .await
                }
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let id = rig.client.start("fails", &()).await.unwrap();
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "step_started 0 fails",
                        "step_failed 0 application/E",
                        "workflow_failed application/E",
                    ],
                );
                assert_eq!(runs.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
                let EventKind::StepFailed { failure, .. } = &journal[2].kind else {
                    unreachable!()
                };
                assert_eq!(failure.message, "boom");
                let failure = out.unwrap_err();
                assert_eq!(
                    (failure.code.as_deref(), failure.message.as_str()),
                    (Some("E"), "boom")
                );
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_1_20_error_caught_and_handled() {
    on_both_stores(
        |b| {
            b.workflow("fallback", |ctx: WorkflowContext, _: ()| async move {
                let failed = ctx
                    .step("risky", |_| async {
                        Err::<String, _>(ActivityError::retryable("Something went wrong"))
                    })
                    .retry(RetryPolicy::none())
                    .await;
                assert!(matches!(&failed, Err(WorkflowError::Step(f)) if f.message == "Something went wrong"));
                ctx.step("fallback", |_| async { Ok("fallback_result".to_owned()) })
                    .await
            })
        },
        |rig| async move {
            let id = rig.client.start("fallback", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), "fallback_result");
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "step_started 0 risky",
                    "step_failed 0 application",
                    "step_started 1 fallback",
                    "step_completed 1 \"fallback_result\"",
                    "workflow_completed \"fallback_result\"",
                ],
            );
        },
    )
    .await;
}
