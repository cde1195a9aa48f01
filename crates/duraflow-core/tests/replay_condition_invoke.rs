//! `wait_for_condition` and `invoke` in the replay machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use duraflow_core::context::{Condition, WaitStrategy};
use duraflow_core::{
    workflow_fn, ActivityError, EventKind, FailureKind, WorkflowContext, WorkflowError, WorkflowFn,
};

/// Polls until the state (a counter the check increments) reaches `target`.
fn counting_to(target: u32, strategy: WaitStrategy, checks: Arc<AtomicUsize>) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, _: ()| {
        let (strategy, checks) = (strategy.clone(), checks.clone());
        async move {
            let n = ctx
                .wait_for_condition(
                    "count",
                    0u32,
                    move |n: u32, _step| {
                        let checks = checks.clone();
                        async move {
                            checks.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, ActivityError>(if n + 1 >= target {
                                Condition::Done(n + 1)
                            } else {
                                Condition::Continue(n + 1)
                            })
                        }
                    },
                    strategy,
                )
                .await?;
            Ok::<_, WorkflowError>(n)
        }
    })
}

/// The fire times of the timers in `events`, relative to the first event.
fn waits(events: &[duraflow_core::Event]) -> Vec<i64> {
    let mut last_check = events[0].at.0;
    let mut out = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::StepCompleted { .. } => last_check = e.at.0,
            EventKind::TimerCreated { fire_at, .. } => out.push(fire_at.0 - last_check),
            _ => {}
        }
    }
    out
}

#[test]
fn the_state_is_carried_between_checks_until_the_condition_holds() {
    let checks = Arc::new(AtomicUsize::new(0));
    let strategy =
        WaitStrategy::exponential(Duration::from_secs(1)).max_interval(Duration::from_secs(3));
    let wf = counting_to(4, strategy, checks.clone());
    let mut d = Driver::start("cond", wf.clone(), &());
    for timer in ["0.1", "0.3", "0.5"] {
        assert!(d.deliver(timer_fired(timer)), "timer {timer}");
    }
    assert_eq!(d.output::<u32>(), 4);
    assert_eq!(checks.load(Ordering::SeqCst), 4);
    // Waits of 1 s, 2 s, then capped at 3 s, each from the check before it.
    assert_eq!(waits(&d.journal), vec![1_000, 2_000, 3_000]);
    assert_clean_replay(&d.check(), d.outcome().unwrap());
    let again = Driver::resume("cond", wf, d.journal.clone());
    assert_eq!(again.output::<u32>(), 4);
    assert_eq!(checks.load(Ordering::SeqCst), 4, "replay ran checks");
}

#[test]
fn a_strategy_that_gives_up_fails_with_condition_exhausted() {
    let checks = Arc::new(AtomicUsize::new(0));
    let strategy = WaitStrategy::fixed(Duration::from_secs(1)).max_attempts(2);
    let mut d = Driver::start("cond", counting_to(10, strategy, checks.clone()), &());
    assert!(d.deliver(timer_fired("0.1")));
    let failure = d.failure();
    assert_eq!(failure.kind, FailureKind::ConditionExhausted);
    assert!(
        failure.message.contains("gave up after 2 checks"),
        "{}",
        failure.message
    );
    assert_eq!(checks.load(Ordering::SeqCst), 2);
}

#[test]
fn a_thousand_checks_work_and_grow_the_journal_by_four_events_each() {
    let checks = Arc::new(AtomicUsize::new(0));
    let strategy = WaitStrategy::fixed(Duration::from_millis(10));
    let mut d = Driver::start("cond", counting_to(1_000, strategy, checks.clone()), &());
    for i in 0..999u32 {
        assert!(d.deliver(timer_fired(&format!("0.{}", 2 * i + 1))));
    }
    assert_eq!(d.output::<u32>(), 1_000);
    // started, context start and end, completion; per check: step start and result, and for
    // all but the last a timer's creation and firing.
    assert_eq!(d.journal.len(), 4 + 2 * 1_000 + 2 * 999);
}

#[test]
fn a_failing_check_fails_the_wait_without_a_retry() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        ctx.wait_for_condition(
            "broken",
            0u32,
            |_, _| async { Err::<Condition<u32>, _>(ActivityError::retryable("probe down")) },
            WaitStrategy::fixed(Duration::from_secs(1)),
        )
        .await
    });
    let d = Driver::start("cond", wf, &());
    let failure = d.failure();
    assert_eq!(failure.message, "probe down");
    assert_eq!(
        types(&d.journal)
            .iter()
            .filter(|t| **t == "step_started")
            .count(),
        1
    );
}

fn invoking(timeout: Option<Duration>) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, _: ()| async move {
        let call = ctx.invoke::<String>("echo", &"hi");
        let call = match timeout {
            Some(t) => call.timeout(t),
            None => call,
        };
        call.await
    })
}

#[test]
fn invoke_returns_the_targets_output() {
    let mut d = Driver::start("inv", invoking(None), &());
    assert!(d.deliver(child_completed("0", &"hi")));
    assert_eq!(d.output::<String>(), "hi");
}

#[test]
fn an_invoke_that_times_out_fails_and_cancels_its_target() {
    let mut d = Driver::start("inv", invoking(Some(Duration::from_secs(30))), &());
    assert!(d.deliver(timer_fired("1")));
    let failure = d.failure();
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert!(
        failure
            .message
            .contains("invoke of workflow \"echo\" (inv:child:0) timed out"),
        "{}",
        failure.message
    );
    let cancelled = d.journal.iter().find_map(|e| match &e.kind {
        EventKind::ChildCancelled { instance_id, .. } => Some(instance_id.clone()),
        _ => None,
    });
    assert_eq!(cancelled.as_deref(), Some("inv:child:0"));
    // The target's late result is refused.
    assert!(!d.run.wants(&child_completed("0", &"late")));
    assert_clean_replay(&d.check(), d.outcome().unwrap());
}
