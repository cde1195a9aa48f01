//! A step's attempts: retries wait for their backoff, exhausted skippable steps are skipped,
//! and every move lands in the audit trail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use duraflow_dag::state::{Failed, StepAttempts};
use duraflow_dag::{Actor, Backoff, RetrySpec, StepState, TransitionError};

fn exponential(max_attempts: u32) -> RetrySpec {
    RetrySpec {
        max_attempts,
        backoff: Backoff::Exponential,
        interval_ms: 100,
        max_interval_ms: 250,
        jitter: 0.0,
    }
}

fn run_once(step: &mut StepAttempts, at: i64) {
    step.enqueue("due", at).unwrap();
    step.start(at).unwrap();
}

#[test]
fn retries_wait_for_an_exponential_backoff_with_a_cap() {
    let mut step = StepAttempts::new();
    let retry = exponential(4);
    let mut now = 0;
    let mut waits = Vec::new();
    loop {
        run_once(&mut step, now);
        match step.fail("boom", &retry, false, now).unwrap() {
            Failed::RetryAt(due) => {
                waits.push(due - now);
                let e = step.enqueue("too early", due - 1).unwrap_err();
                assert_eq!(e, TransitionError::NotDue { due, at: due - 1 });
                assert!(!step.is_due(due - 1) && step.is_due(due));
                now = due;
            }
            Failed::ForGood => break,
            Failed::Skipped => panic!("not skippable"),
        }
    }
    assert_eq!(waits, [100, 200, 250]);
    assert_eq!(step.attempt(), 4);
    assert_eq!(step.state(), StepState::Error);
    let attempts: Vec<u32> = step.history().trail().iter().map(|t| t.attempt).collect();
    assert_eq!(attempts[..5], [0, 1, 1, 1, 1]);
}

#[test]
fn an_exhausted_skippable_step_is_skipped() {
    let mut step = StepAttempts::new();
    run_once(&mut step, 0);
    assert_eq!(
        step.fail("boom", &RetrySpec::none(), true, 5).unwrap(),
        Failed::Skipped
    );
    assert_eq!(step.state(), StepState::Skipped);
    assert_eq!(
        step.history().trail().last().unwrap().reason,
        "a skippable step failed for good"
    );
}

#[test]
fn an_operator_retries_a_failed_step_and_the_engine_cannot() {
    let mut step = StepAttempts::new();
    run_once(&mut step, 0);
    step.fail("boom", &RetrySpec::none(), false, 1).unwrap();
    assert!(step.enqueue("again", 2).is_err());
    step.apply_by(
        StepState::Enqueued,
        "retry now",
        Actor::Operator("ann".into()),
        3,
    )
    .unwrap();
    step.start(4).unwrap();
    step.complete(5).unwrap();
    assert_eq!(step.attempt(), 2);
    assert_eq!(step.state(), StepState::Complete);
}

#[test]
fn cancelling_a_waiting_step_clears_its_backoff() {
    let mut step = StepAttempts::new();
    run_once(&mut step, 0);
    step.fail("boom", &exponential(3), false, 0).unwrap();
    assert_eq!(step.retry_at(), Some(100));
    step.apply_by(StepState::Cancelled, "run cancelled", Actor::Engine, 10)
        .unwrap();
    assert_eq!(step.retry_at(), None);
    assert!(!step.is_due(1_000));
    assert!(step.start(11).is_err());
}
