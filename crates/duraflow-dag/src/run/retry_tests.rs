//! The run machine's retries and operator actions without an engine.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use serde_json::{json, Value};

use super::machine::{Launch, Order, RunMachine};
use super::operator::{Action, OperatorAction};
use super::retry::AttemptFailure;
use super::workflow::prepare;
use crate::state::{Actor, RunState, StepState};
use crate::template::{Backoff, OnFailure, RetrySpec, Step, Template};

fn start(template: Template) -> (RunMachine, Vec<Order>) {
    let registered = prepare(&template, &json!({})).unwrap();
    RunMachine::new(&registered, json!({}), 7, 0)
}

fn launch(orders: &[Order]) -> &Launch {
    match orders {
        [Order::Launch(l)] => l,
        other => panic!("expected one launch, got {other:?}"),
    }
}

fn sleep(orders: &[Order]) -> (usize, i64) {
    match orders {
        [Order::Sleep { seq, until }] => (*seq, *until),
        other => panic!("expected one timer, got {other:?}"),
    }
}

fn retryable(message: &str) -> AttemptFailure {
    AttemptFailure {
        message: message.into(),
        retryable: true,
        retry_after_ms: None,
        attempts: None,
    }
}

fn fixed(max_attempts: u32, interval_ms: u64, jitter: f64) -> RetrySpec {
    RetrySpec {
        max_attempts,
        backoff: Backoff::Fixed,
        interval_ms,
        max_interval_ms: interval_ms * 2,
        jitter,
    }
}

fn action(by: &str, action: Action) -> OperatorAction {
    OperatorAction {
        by: by.into(),
        action,
    }
}

fn states(m: &RunMachine, step: &str) -> Vec<(StepState, u32)> {
    m.report().steps[step]
        .transitions
        .iter()
        .map(|t| (t.to, t.attempt))
        .collect()
}

#[test]
fn a_failed_attempt_waits_its_backoff_and_runs_again() {
    let template = Template::builder("t", "r", "1")
        .step(Step::new("a", "a").retry(fixed(3, 1_000, 0.0)))
        .build();
    let (mut m, first) = start(template);
    let a = launch(&first).clone();
    let (timer, until) = sleep(&m.failed(a.seq, &retryable("busy"), 10).unwrap());
    assert_eq!(until, 1_010);
    assert_eq!(m.report().steps["a"].state, StepState::WaitingForRetry);
    let again = m.timer_fired(timer, 1_010).unwrap();
    assert_eq!(launch(&again).handler, "a");
    assert!(m
        .succeeded(launch(&again).seq, json!(1), 1_020)
        .unwrap()
        .is_empty());
    use StepState::*;
    assert_eq!(
        states(&m, "a"),
        [
            (Enqueued, 0),
            (InProgress, 1),
            (Error, 1),
            (WaitingForRetry, 1),
            (Enqueued, 1),
            (InProgress, 2),
            (Complete, 2)
        ]
    );
    assert_eq!(m.report().steps["a"].attempts, 2);
    assert_eq!(m.report().state, RunState::Complete);
}

#[test]
fn jitter_spreads_the_wait_the_same_way_for_the_same_seed() {
    let template = || {
        Template::builder("t", "j", "1")
            .step(Step::new("a", "a").retry(fixed(2, 10_000, 0.5)))
            .build()
    };
    let wait = || {
        let (mut m, first) = start(template());
        sleep(&m.failed(launch(&first).seq, &retryable("x"), 0).unwrap()).1
    };
    let w = wait();
    assert_eq!(w, wait(), "same seed, same wait");
    assert!((5_000..=15_000).contains(&w), "{w}");
}

#[test]
fn a_retry_after_replaces_the_computed_wait_and_a_terminal_error_fails_at_once() {
    let template = Template::builder("t", "ra", "1")
        .step(Step::new("a", "a").retry(fixed(3, 1_000, 0.0)))
        .build();
    let (mut m, first) = start(template.clone());
    let mut f = retryable("429");
    f.retry_after_ms = Some(30_000);
    let (_, until) = sleep(&m.failed(launch(&first).seq, &f, 5).unwrap());
    assert_eq!(until, 30_005);

    let (mut m, first) = start(template);
    let failed = m
        .failed(launch(&first).seq, &AttemptFailure::terminal("bad card"), 5)
        .unwrap_err();
    assert_eq!(failed.code, "dag_step_failed");
    assert!(failed.message.contains("bad card"), "{failed:?}");
    assert_eq!(m.report().steps["a"].attempts, 1);
    assert_eq!(m.report().steps["a"].state, StepState::Error);
}

fn held() -> Template {
    Template::builder("t", "h", "1")
        .on_failure(OnFailure::Hold)
        .step(Step::new("a", "a"))
        .step(
            Step::new("b", "b")
                .depends_on(["a"])
                .retry(RetrySpec::none()),
        )
        .step(
            Step::new("c", "c")
                .depends_on(["b"])
                .input("got", "$.steps.b.result".parse().unwrap()),
        )
        .build()
}

#[test]
fn a_held_run_waits_in_error_and_an_operator_retry_runs_the_step_again() {
    let (mut m, first) = start(held());
    let b = m.succeeded(launch(&first).seq, json!(1), 1).unwrap();
    let none = m.failed(launch(&b).seq, &retryable("down"), 2).unwrap();
    assert!(none.is_empty());
    assert!(m.is_held() && m.is_live());
    assert_eq!(m.report().state, RunState::Error);
    let retry = action("alice", Action::RetryStep { step: "b".into() });
    let again = m.act(&retry, 3).unwrap();
    assert_eq!(launch(&again).handler, "b");
    assert_eq!(m.report().state, RunState::InProgress);
    let c = m.succeeded(launch(&again).seq, json!("ok"), 4).unwrap();
    assert_eq!(launch(&c).input, json!({ "got": "ok" }));
    m.succeeded(launch(&c).seq, json!(null), 5).unwrap();
    let report = m.report();
    assert_eq!(report.state, RunState::Complete);
    let by_alice =
        |t: &&crate::state::Transition<StepState>| t.by == Actor::Operator("alice".into());
    let retried = report.steps["b"].transitions.iter().find(by_alice).unwrap();
    assert_eq!(
        (retried.from, retried.to),
        (StepState::Error, StepState::Enqueued)
    );
    assert!(report
        .run_transitions
        .iter()
        .any(|t| t.to == RunState::InProgress && t.by == Actor::Operator("alice".into())));
}

#[test]
fn resolving_steps_by_hand_feeds_their_result_downstream() {
    let (mut m, first) = start(held());
    // `c` is resolved while still pending; `b` after it failed.
    let resolve_c = action(
        "bob",
        Action::ResolveStep {
            step: "c".into(),
            result: json!("by hand"),
        },
    );
    assert!(m.act(&resolve_c, 1).unwrap().is_empty());
    let b = m.succeeded(launch(&first).seq, json!(1), 2).unwrap();
    m.failed(launch(&b).seq, &retryable("down"), 3).unwrap();
    let resolve_b = action(
        "bob",
        Action::ResolveStep {
            step: "b".into(),
            result: json!({ "fixed": true }),
        },
    );
    assert!(
        m.act(&resolve_b, 4).unwrap().is_empty(),
        "c is already resolved"
    );
    let report = m.report();
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(report.results["b"], json!({ "fixed": true }));
    assert_eq!(report.steps["c"].state, StepState::ResolvedManually);
    assert_eq!(report.steps["b"].state, StepState::ResolvedManually);
}

#[test]
fn illegal_actions_are_rejected_and_recorded_and_cancel_ends_the_run() {
    let (mut m, first) = start(held());
    let bad: [(Action, &str); 3] = [
        (
            Action::RetryStep {
                step: "nope".into(),
            },
            "no step `nope`",
        ),
        (
            Action::RetryStep { step: "a".into() },
            "only a step that failed",
        ),
        (
            Action::ResolveStep {
                step: "a".into(),
                result: Value::Null,
            },
            "illegal step transition in_progress -> resolved_manually",
        ),
    ];
    for (a, why) in &bad {
        assert!(m.act(&action("eve", a.clone()), 1).unwrap().is_empty());
        let last = m.report().rejected_actions.last().cloned().unwrap();
        assert!(last.reason.contains(why), "{why}: {last:?}");
    }
    assert_eq!(m.report().rejected_actions.len(), 3);
    let cancel = action(
        "eve",
        Action::CancelRun {
            reason: "not needed".into(),
        },
    );
    let ended = m.act(&cancel, 2).unwrap_err();
    assert_eq!(ended.code, "dag_cancelled");
    let report = m.report();
    assert_eq!(report.state, RunState::Cancelled);
    assert_eq!(report.steps["a"].state, StepState::Cancelled);
    assert_eq!(report.steps["c"].state, StepState::Cancelled);
    let last = report.steps["a"].transitions.last().unwrap();
    assert_eq!(last.by, Actor::Operator("eve".into()));
    // A result that arrives after the cancellation changes nothing.
    assert!(m
        .succeeded(launch(&first).seq, json!(1), 3)
        .unwrap()
        .is_empty());
    assert!(!m.is_live());
}

#[test]
fn running_a_resolved_step_again_resets_its_descendants_but_not_its_ancestors() {
    let (mut m, first) = start(held());
    let b = m.succeeded(launch(&first).seq, json!("a"), 1).unwrap();
    m.failed(launch(&b).seq, &retryable("down"), 2).unwrap();
    let resolve = action(
        "ann",
        Action::ResolveStep {
            step: "b".into(),
            result: json!("by hand"),
        },
    );
    let c = m.act(&resolve, 3).unwrap();
    assert_eq!(launch(&c).input, json!({ "got": "by hand" }));
    // `c` then fails for good: the run is held again.
    m.failed(launch(&c).seq, &AttemptFailure::terminal("no"), 4)
        .unwrap();
    assert!(m.is_held());
    // A descendant still running blocks nothing here; `a` (an ancestor) is not touched.
    let retry = action("ann", Action::RetryStep { step: "b".into() });
    let b2 = m.act(&retry, 5).unwrap();
    assert_eq!(launch(&b2).handler, "b");
    let report = m.report();
    assert_eq!(report.state, RunState::InProgress);
    assert_eq!(report.steps["a"].state, StepState::Complete);
    assert_eq!(report.steps["c"].state, StepState::Pending);
    assert!(!report.results.contains_key("b") && !report.results.contains_key("c"));
    let c_back = report.steps["c"].transitions.last().unwrap();
    assert_eq!(
        (c_back.from, c_back.to, &c_back.by),
        (
            StepState::Error,
            StepState::Pending,
            &Actor::Operator("ann".into())
        )
    );
    let c2 = m.succeeded(launch(&b2).seq, json!("real"), 6).unwrap();
    assert_eq!(launch(&c2).input, json!({ "got": "real" }));
    m.succeeded(launch(&c2).seq, json!("done"), 7).unwrap();
    let report = m.report();
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(report.steps["b"].attempts, 2);
    assert_eq!(report.steps["c"].attempts, 2);
    assert_eq!(report.steps["a"].attempts, 1);
}

#[test]
fn a_step_is_not_run_again_while_a_descendant_runs() {
    let (mut m, first) = start(held());
    let b = m.succeeded(launch(&first).seq, json!("a"), 1).unwrap();
    let retry = action("ann", Action::RetryStep { step: "a".into() });
    assert!(m.act(&retry, 2).unwrap().is_empty());
    let rejected = &m.report().rejected_actions[0];
    assert!(
        rejected
            .reason
            .contains("`b` downstream of `a` is in_progress"),
        "{rejected:?}"
    );
    assert_eq!(m.report().steps["a"].state, StepState::Complete);
    // Once they have ended (`c` failed for good), `a` and everything after it run again.
    let c = m.succeeded(launch(&b).seq, json!("b"), 3).unwrap();
    m.failed(launch(&c).seq, &AttemptFailure::terminal("no"), 4)
        .unwrap();
    let again = m.act(&retry, 5).unwrap();
    assert_eq!(launch(&again).handler, "a");
    assert_eq!(m.report().steps["b"].state, StepState::Pending);
    assert_eq!(m.report().steps["c"].state, StepState::Pending);
    assert_eq!(m.report().state, RunState::InProgress);
    // An old attempt reporting again is stale and changes nothing.
    assert!(m
        .succeeded(launch(&c).seq, json!("old"), 6)
        .unwrap()
        .is_empty());
    assert!(!m.report().results.contains_key("b"));
}
