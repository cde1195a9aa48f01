//! Reference cases, section `wait_for_condition` (6-x) of `durable-functions-behaviours.md`:
//! each case as a test named after its id, on the memory and SQLite stores under virtual time,
//! comparing the journal record by record (see `df_support` for the record notation).
//!
//! Where duraflow deliberately differs from AWS, the tests follow duraflow:
//!
//! - A `wait_for_condition` is a child context (`context_started`, then `context_completed`
//!   with the final state, or `context_failed`). Each poll is a step named `check` inside it,
//!   with an operation id of its own (`0.0`, `0.2`, `0.4`...), not one id reused by every poll;
//!   the wait between polls is a durable timer inside the context (`0.1`, `0.3`...).
//! - The check decides whether to stop: it returns `Condition::Done(state)` or
//!   `Condition::Continue(state)` (journaled as `{"done":s}` / `{"continue":s}`); the
//!   `WaitStrategy` only says how long to wait and when to give up. AWS's
//!   `strategy(state) -> Stop | Continue(delay)` is written as a check that answers `Done`
//!   at the threshold, with a fixed 1 s strategy.
//! - Delays are timers recorded in milliseconds.
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

use df_support::{assert_recs, finished, on_both_stores, suspended_at, Rig};
use duraflow::crates::core::context::{Condition, WaitStrategy};
use duraflow::prelude::*;

/// Counts up from `initial` until `threshold`, checking every second.
async fn count_up(
    ctx: &WorkflowContext,
    checks: Arc<AtomicUsize>,
    initial: u32,
    threshold: u32,
) -> Result<u32, WorkflowError> {
    ctx.wait_for_condition(
        "count-up",
        initial,
        move |s: u32, _| {
            checks.fetch_add(1, Ordering::SeqCst);
            async move {
                let next = if s >= threshold { s } else { s + 1 };
                Ok(if next >= threshold {
                    Condition::Done(next)
                } else {
                    Condition::Continue(next)
                })
            }
        },
        WaitStrategy::fixed(Duration::from_secs(1)),
    )
    .await
}

/// Moves through `polls` continuing polls (each followed by a one-second wait), checking the
/// journal at each suspension; returns the records so far.
async fn continue_polls(rig: &Rig, id: &str, polls: u32) -> Vec<String> {
    let mut expected = vec![
        "workflow_started".to_owned(),
        "context_started 0 count-up".to_owned(),
    ];
    for n in 1..=polls {
        let check = 2 * (n - 1);
        if n > 1 {
            expected.push(format!("timer_fired 0.{}", check - 1));
        }
        expected.push(format!("step_started 0.{check} check"));
        expected.push(format!("step_completed 0.{check} {{\"continue\":{n}}}"));
        expected.push(format!("timer_created 0.{} 1000ms", check + 1));
        let e: Vec<&str> = expected.iter().map(String::as_str).collect();
        suspended_at(rig, id, &e).await;
        rig.clock.advance(Duration::from_secs(1));
    }
    expected.push(format!("timer_fired 0.{}", 2 * polls - 1));
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_condition_6_1_basic_polling() {
    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    on_both_stores(
        |b| {
            let checks = c.clone();
            b.workflow("poll", move |ctx: WorkflowContext, threshold: u32| {
                let checks = checks.clone();
                async move { count_up(&ctx, checks, 0, threshold).await }
            })
        },
        |rig| {
            let checks = checks.clone();
            async move {
                checks.store(0, Ordering::SeqCst);
                let id = rig.client.start("poll", &3u32).await.unwrap();
                let mut expected = continue_polls(&rig, id.as_ref(), 2).await;
                expected.extend(
                    [
                        "step_started 0.4 check",
                        "step_completed 0.4 {\"done\":3}",
                        "context_completed 0 3",
                        "workflow_completed 3",
                    ]
                    .map(str::to_owned),
                );
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), 3);
                let e: Vec<&str> = expected.iter().map(String::as_str).collect();
                assert_recs(&rig.backend, &journal, &e);
                assert_eq!(checks.load(Ordering::SeqCst), 3, "[{}]", rig.backend);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_condition_6_2_condition_met_on_first_check() {
    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    on_both_stores(
        |b| {
            let checks = c.clone();
            b.workflow("poll", move |ctx: WorkflowContext, initial: u32| {
                let checks = checks.clone();
                async move { count_up(&ctx, checks, initial, 5).await }
            })
        },
        |rig| {
            let checks = checks.clone();
            async move {
                checks.store(0, Ordering::SeqCst);
                let id = rig.client.start("poll", &5u32).await.unwrap();
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), 5);
                // One poll, no wait.
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "context_started 0 count-up",
                        "step_started 0.0 check",
                        "step_completed 0.0 {\"done\":5}",
                        "context_completed 0 5",
                        "workflow_completed 5",
                    ],
                );
                assert_eq!(checks.load(Ordering::SeqCst), 1, "[{}]", rig.backend);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_condition_6_12_wait_for_condition_then_step() {
    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    on_both_stores(
        |b| {
            let checks = c.clone();
            b.workflow(
                "poll-then-step",
                move |ctx: WorkflowContext, threshold: u32| {
                    let checks = checks.clone();
                    async move {
                        let n = count_up(&ctx, checks, 0, threshold).await?;
                        ctx.step("times-ten", move |_| async move { Ok(n * 10) })
                            .await
                    }
                },
            )
        },
        |rig| {
            let checks = checks.clone();
            async move {
                checks.store(0, Ordering::SeqCst);
                let id = rig.client.start("poll-then-step", &2u32).await.unwrap();
                let mut expected = continue_polls(&rig, id.as_ref(), 1).await;
                expected.extend(
                    [
                        "step_started 0.2 check",
                        "step_completed 0.2 {\"done\":2}",
                        "context_completed 0 2",
                        "step_started 1 times-ten",
                        "step_completed 1 20",
                        "workflow_completed 20",
                    ]
                    .map(str::to_owned),
                );
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), 20);
                let e: Vec<&str> = expected.iter().map(String::as_str).collect();
                assert_recs(&rig.backend, &journal, &e);
                // The step ran in the turn of the last poll.
                let n = journal.len();
                assert_eq!(journal[n - 5].at, journal[n - 2].at, "[{}]", rig.backend);
                assert_eq!(checks.load(Ordering::SeqCst), 2, "[{}]", rig.backend);
            }
        },
    )
    .await;
}
