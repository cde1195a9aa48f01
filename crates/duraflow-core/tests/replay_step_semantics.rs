//! Step semantics and retries in the replay machine: when a step asks for a checkpoint, what a
//! crash (a replay of a journal cut short) runs again, and how failed attempts are retried on
//! the step's own durable timer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use duraflow_core::{
    workflow_fn, ActivityError, Clock, EventKind, FailureKind, RetryPolicy, StepSemantics,
    WorkflowContext, WorkflowError, WorkflowFn, WorkflowRun,
};
use futures::executor::block_on;

/// The attempts a step's closure was called with, in order.
type Calls = Arc<Mutex<Vec<u32>>>;

/// A workflow with one step of the given semantics and retry policy whose attempt `n` fails
/// (retryably) while `n <= fail_first`, then an activity fed with the step's output.
fn one_step(
    calls: Calls,
    semantics: StepSemantics,
    retry: RetryPolicy,
    fail_first: u32,
) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, _: ()| {
        let calls = calls.clone();
        let retry = retry.clone();
        async move {
            let v: u32 = ctx
                .step("charge", move |step| {
                    let calls = calls.clone();
                    async move {
                        calls.lock().unwrap().push(step.attempt());
                        if step.attempt() <= fail_first {
                            return Err(ActivityError::retryable(format!(
                                "flaky {}",
                                step.attempt()
                            )));
                        }
                        Ok(step.attempt() * 10)
                    }
                })
                .semantics(semantics)
                .retry(retry)
                .await?;
            let echoed: u32 = ctx.activity("use", &v).await?;
            Ok::<_, WorkflowError>(echoed)
        }
    })
}

fn calls() -> Calls {
    Arc::new(Mutex::new(Vec::new()))
}

/// A live run over `journal`, replayed, with nothing delivered.
fn live(wf: WorkflowFn, journal: Vec<duraflow_core::Event>) -> WorkflowRun {
    let mut run = WorkflowRun::live("sem", 1, journal, wf, TestClock::new(50_000));
    block_on(run.replay());
    run
}

#[test]
fn an_at_most_once_step_runs_only_once_its_start_is_stored() {
    let c = calls();
    let wf = one_step(
        c.clone(),
        StepSemantics::AtMostOncePerRetry,
        RetryPolicy::none(),
        0,
    );
    let mut run = live(wf, Vec::new());
    assert!(block_on(
        run.deliver(duraflow_core::Timestamp(1_000), started(&()))
    ));
    // The start is journaled, and the closure waits for it to be stored.
    assert_eq!(
        types(&run.uncommitted_events()),
        vec!["workflow_started", "step_started"]
    );
    assert!(run.checkpoint_wanted());
    assert!(c.lock().unwrap().is_empty());
    drop(run.mark_committed());
    block_on(run.resume());
    assert_eq!(*c.lock().unwrap(), vec![1]);
    // Its result is stored before the workflow goes on to the activity.
    assert!(run.checkpoint_wanted());
    assert_eq!(types(&run.uncommitted_events()), vec!["step_completed"]);
    drop(run.mark_committed());
    block_on(run.resume());
    assert_eq!(types(&run.uncommitted_events()), vec!["activity_scheduled"]);
    assert!(!run.checkpoint_wanted());
}

#[test]
fn an_interrupted_at_most_once_attempt_is_not_run_again_and_counts_as_failed() {
    // A process stopped after storing the start of attempt 1: its journal ends there.
    let c = calls();
    let wf = one_step(
        c.clone(),
        StepSemantics::AtMostOncePerRetry,
        RetryPolicy::none(),
        0,
    );
    let mut first = Driver::new("sem", wf.clone());
    let journal = {
        let mut run = live(wf.clone(), Vec::new());
        block_on(run.deliver(duraflow_core::Timestamp(1_000), started(&())));
        run.uncommitted_events()
    };
    drop(first.run.mark_committed());
    assert!(c.lock().unwrap().is_empty());
    let mut d = Driver::resume("sem", wf.clone(), journal);
    assert!(
        c.lock().unwrap().is_empty(),
        "the interrupted attempt ran again"
    );
    let failure = d.failure();
    assert_eq!(failure.kind, FailureKind::StepInterrupted);
    assert!(
        failure.message.contains("attempt 1 of step \"charge\""),
        "{}",
        failure.message
    );
    assert_eq!(types(&d.take_new()), vec!["step_failed", "workflow_failed"]);
    assert_clean_replay(&d.check(), d.outcome().unwrap());
}

#[test]
fn an_interrupted_at_most_once_attempt_is_retried_when_the_policy_allows() {
    let c = calls();
    let policy = RetryPolicy::fixed(Duration::from_secs(2));
    let wf = one_step(c.clone(), StepSemantics::AtMostOncePerRetry, policy, 0);
    let journal = {
        let mut run = live(wf.clone(), Vec::new());
        block_on(run.deliver(duraflow_core::Timestamp(1_000), started(&())));
        run.uncommitted_events()
    };
    let mut d = Driver::resume("sem", wf.clone(), journal);
    let new = kinds(&d.take_new());
    let [EventKind::StepRetrying {
        attempt: 1,
        failure,
        retry_at,
        ..
    }] = new.as_slice()
    else {
        panic!("expected a retry, got {new:?}");
    };
    assert_eq!(failure.kind, FailureKind::StepInterrupted);
    assert!(retry_at.0 >= d.clock.now().0 + 2_000 - 1_000);
    assert!(c.lock().unwrap().is_empty());
    assert!(d.deliver(timer_fired("0")));
    // Attempt 2 runs (its start stored first) and the workflow goes on.
    assert_eq!(*c.lock().unwrap(), vec![2]);
    assert_eq!(
        types(&d.take_new()),
        vec![
            "timer_fired",
            "step_started",
            "step_completed",
            "activity_scheduled"
        ]
    );
    assert!(d.deliver(activity_completed("1", &20u32)));
    assert_eq!(d.output::<u32>(), 20);
    assert_clean_replay(&d.check(), d.outcome().unwrap());
}

#[test]
fn an_at_least_once_step_cut_short_runs_again_without_a_second_start() {
    let c = calls();
    let wf = one_step(
        c.clone(),
        StepSemantics::AtLeastOncePerRetry,
        RetryPolicy::none(),
        0,
    );
    let journal = {
        let mut run = live(wf.clone(), Vec::new());
        block_on(run.deliver(duraflow_core::Timestamp(1_000), started(&())));
        // The step ran; the process stopped before its result was stored.
        let mut j = run.uncommitted_events();
        j.truncate(2);
        j
    };
    assert_eq!(*c.lock().unwrap(), vec![1]);
    let mut d = Driver::resume("sem", wf, journal);
    assert_eq!(*c.lock().unwrap(), vec![1, 1], "attempt 1 runs again");
    assert_eq!(
        types(&d.take_new()),
        vec!["step_completed", "activity_scheduled"]
    );
}

#[test]
fn failed_attempts_retry_on_the_steps_own_timer_with_the_policys_backoff() {
    let c = calls();
    let policy = RetryPolicy::exponential(Duration::from_secs(1)).max_attempts(4);
    let wf = one_step(c.clone(), StepSemantics::AtLeastOncePerRetry, policy, 2);
    let mut d = Driver::start("sem", wf.clone(), &());
    let mut retries = Vec::new();
    for _ in 0..2 {
        let new = kinds(&d.take_new());
        let Some(EventKind::StepRetrying {
            attempt,
            retry_at,
            failure,
            ..
        }) = new.last()
        else {
            panic!("expected a retry, got {new:?}");
        };
        assert_eq!(failure.kind, FailureKind::Application);
        retries.push((*attempt, retry_at.0 - d.clock.now().0));
        assert!(d.deliver(timer_fired("0")));
    }
    // Waits of 1 s then 2 s after the attempts that failed (measured from the present).
    assert_eq!(retries, vec![(1, 1_000), (2, 2_000)]);
    assert_eq!(*c.lock().unwrap(), vec![1, 2, 3]);
    let new = kinds(&d.take_new());
    assert!(
        matches!(
            new.as_slice(),
            [
                EventKind::TimerFired { .. },
                EventKind::StepStarted { attempt: 3, .. },
                EventKind::StepCompleted { .. },
                EventKind::ActivityScheduled { .. }
            ]
        ),
        "{new:?}"
    );
    assert!(d.deliver(activity_completed("1", &30u32)));
    assert_eq!(d.output::<u32>(), 30);
    // Replay reads every attempt back and runs nothing.
    assert_clean_replay(&d.check(), d.outcome().unwrap());
    let again = Driver::resume("sem", wf, d.journal.clone());
    assert_eq!(again.output::<u32>(), 30);
    assert_eq!(c.lock().unwrap().len(), 3);
}

#[test]
fn a_step_that_fails_every_attempt_fails_with_retries_exhausted() {
    let c = calls();
    let policy = RetryPolicy::fixed(Duration::from_millis(500)).max_attempts(2);
    let wf = one_step(c.clone(), StepSemantics::AtLeastOncePerRetry, policy, 5);
    let mut d = Driver::start("sem", wf, &());
    assert!(d.deliver(timer_fired("0")));
    let failure = d.failure();
    assert_eq!(failure.kind, FailureKind::RetriesExhausted);
    assert!(
        failure
            .message
            .contains("failed on all 2 attempts; the last: flaky 2"),
        "{}",
        failure.message
    );
    assert_eq!(*c.lock().unwrap(), vec![1, 2]);
}

#[test]
fn terminal_errors_and_non_retryable_codes_are_not_retried() {
    for (error, code) in [
        (ActivityError::terminal("card declined"), None),
        (
            ActivityError::retryable("bad input").with_code("invalid"),
            Some("invalid"),
        ),
    ] {
        let wf = workflow_fn(move |ctx: WorkflowContext, _: ()| {
            let error = error.clone();
            async move {
                ctx.step("s", move |_| {
                    let error = error.clone();
                    async move { Err::<u32, _>(error) }
                })
                .retry(RetryPolicy::default().non_retryable(["invalid"]))
                .await?;
                Ok::<_, WorkflowError>(())
            }
        });
        let d = Driver::start("sem", wf, &());
        let failure = d.failure();
        assert_eq!(failure.kind, FailureKind::Application);
        assert_eq!(failure.code.as_deref(), code);
    }
}

#[test]
fn an_at_least_once_with_turn_step_goes_on_without_a_checkpoint() {
    let c = calls();
    let wf = one_step(
        c.clone(),
        StepSemantics::AtLeastOnceWithTurn,
        RetryPolicy::none(),
        0,
    );
    let mut run = live(wf, Vec::new());
    assert!(block_on(
        run.deliver(duraflow_core::Timestamp(1_000), started(&()))
    ));
    assert!(!run.checkpoint_wanted());
    assert_eq!(
        types(&run.uncommitted_events()),
        vec![
            "workflow_started",
            "step_started",
            "step_completed",
            "activity_scheduled"
        ]
    );
}

#[test]
fn the_step_context_names_the_step_for_idempotency() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let wf = {
        let seen = seen.clone();
        workflow_fn(move |ctx: WorkflowContext, _: ()| {
            let seen = seen.clone();
            async move {
                ctx.step("pay", move |step| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push((
                            step.idempotency_key(),
                            step.name().to_owned(),
                            step.op_id().to_string(),
                        ));
                        Ok(())
                    }
                })
                .await?;
                Ok::<_, WorkflowError>(())
            }
        })
    };
    let _ = Driver::start("order-9", wf, &());
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("order-9/1/0".to_owned(), "pay".to_owned(), "0".to_owned())]
    );
}

/// Regression: a process that stopped while a step waited for its retry left a journal ending
/// with `step_retrying`. The next process's replay read the retry back, but when replay ended
/// and woke what waited, the step ran the failed attempt again (an at-most-once one was found
/// interrupted again instead), and then refused the backoff timer's firing: the instance never
/// went on.
#[test]
fn a_step_waiting_for_its_retry_when_the_process_stopped_waits_on_after_replay() {
    for semantics in [
        StepSemantics::AtLeastOncePerRetry,
        StepSemantics::AtMostOncePerRetry,
    ] {
        let c = calls();
        let policy = RetryPolicy::fixed(Duration::from_secs(2));
        let wf = one_step(c.clone(), semantics, policy, 1);
        let first = Driver::start("sem", wf.clone(), &());
        assert_eq!(*c.lock().unwrap(), vec![1]);
        assert_eq!(
            types(&first.journal),
            vec!["workflow_started", "step_started", "step_retrying"],
            "{semantics:?}"
        );
        let mut d = Driver::resume("sem", wf.clone(), first.journal.clone());
        assert_eq!(
            *c.lock().unwrap(),
            vec![1],
            "{semantics:?}: the failed attempt ran again after replay"
        );
        assert!(d.take_new().is_empty(), "{semantics:?}");
        assert!(
            d.deliver(timer_fired("0")),
            "{semantics:?}: the retry timer was refused"
        );
        assert_eq!(*c.lock().unwrap(), vec![1, 2], "{semantics:?}");
        assert!(d.deliver(activity_completed("1", &20u32)));
        assert_eq!(d.output::<u32>(), 20, "{semantics:?}");
        assert_clean_replay(&d.check(), d.outcome().unwrap());
    }
}
