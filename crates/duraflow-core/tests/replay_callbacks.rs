//! Callbacks in the replay machine: tokens, completions and failures by an external party,
//! a completion that arrives before the await, timeouts and heartbeat timeouts decided from
//! journaled times, and stale timers dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use duraflow_core::{
    workflow_fn, EventKind, Failure, FailureKind, Timestamp, WorkflowContext, WorkflowError,
    WorkflowFn,
};

/// Opens callback `approve` (timeout 1 h, heartbeat 10 min), hands its token out, waits on a
/// timer of one second, then awaits the callback.
fn approval(tokens: Arc<Mutex<Vec<String>>>) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, _: ()| {
        let tokens = tokens.clone();
        async move {
            let cb = ctx
                .callback::<String>("approve")
                .timeout(Duration::from_secs(3600))
                .heartbeat_timeout(Duration::from_secs(600));
            tokens.lock().unwrap().push(cb.token());
            ctx.sleep(Duration::from_secs(1)).await?;
            let answer = cb.await?;
            Ok::<_, WorkflowError>(answer)
        }
    })
}

fn completed(op_id: &str, value: &str) -> EventKind {
    EventKind::CallbackCompleted {
        op: op(op_id),
        output: p(&value.to_owned()),
    }
}

fn created(d: &Driver) -> (Timestamp, Option<Timestamp>, Option<Duration>, String) {
    d.journal
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CallbackCreated {
                token,
                timeout_at,
                heartbeat_timeout,
                ..
            } => Some((e.at, *timeout_at, *heartbeat_timeout, token.clone())),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_callback_has_an_unguessable_token_that_replay_reads_back() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let d = Driver::start("cb", approval(tokens.clone()), &());
    let (at, timeout_at, heartbeat, token) = created(&d);
    assert!(
        token.starts_with("dfcb_") && token.len() == 5 + 48,
        "{token}"
    );
    assert!(token[5..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(timeout_at, Some(at.plus(Duration::from_secs(3600))));
    assert_eq!(heartbeat, Some(Duration::from_secs(600)));
    // A second instance gets another token; a replay of the first gets its own back.
    let other = Driver::start("cb-2", approval(tokens.clone()), &());
    assert_ne!(created(&other).3, token);
    let _again = Driver::resume("cb", approval(tokens.clone()), d.journal.clone());
    let seen = tokens.lock().unwrap().clone();
    assert_eq!(seen, vec![token.clone(), created(&other).3, token]);
}

#[test]
fn a_completion_that_arrives_before_the_await_is_kept() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let mut d = Driver::start("cb", approval(tokens), &());
    assert!(d.deliver(completed("0", "yes")));
    assert!(d.outcome().is_none());
    assert!(d.deliver(timer_fired("1")));
    assert_eq!(d.output::<String>(), "yes");
    // A second completion is no longer wanted.
    assert!(!d.run.wants(&completed("0", "again")));
    assert_clean_replay(&d.check(), d.outcome().unwrap());
}

#[test]
fn a_failure_from_outside_fails_the_workflow_with_its_code_and_message() {
    let mut d = Driver::start("cb", approval(Arc::default()), &());
    assert!(d.deliver(timer_fired("1")));
    let failure = Failure::new(FailureKind::Application, "not approved")
        .with_code(Some("RejectedError".into()));
    assert!(d.deliver(EventKind::CallbackFailed {
        op: op("0"),
        failure: Box::new(failure.clone())
    }));
    let f = d.failure();
    assert_eq!(
        (f.message.as_str(), f.code.as_deref()),
        ("not approved", Some("RejectedError"))
    );
}

#[test]
fn a_timer_past_the_timeout_fails_the_callback_and_an_early_one_is_dropped() {
    let mut d = Driver::start("cb", approval(Arc::default()), &());
    assert!(d.deliver(timer_fired("1")));
    let (created_at, timeout_at, _, _) = created(&d);
    // A heartbeat at +5 min moves the heartbeat deadline to +15 min; the timer set for the
    // first deadline (+10 min) is then stale and dropped without a trace.
    d.clock.set(created_at.0 + 300_000);
    let run = &mut d.run;
    assert!(futures::executor::block_on(run.deliver(
        Timestamp(created_at.0 + 300_000),
        EventKind::CallbackHeartbeat {
            op: op("0"),
            next_deadline: None
        }
    )));
    let beat = run.uncommitted_events().pop().unwrap();
    assert_eq!(
        beat.kind,
        EventKind::CallbackHeartbeat {
            op: op("0"),
            next_deadline: Some(Timestamp(created_at.0 + 900_000))
        }
    );
    let len = run.journal_len();
    assert!(!futures::executor::block_on(
        run.deliver(Timestamp(created_at.0 + 600_000), timer_fired("0"))
    ));
    assert_eq!(run.journal_len(), len);
    // The next deadline passes with no heartbeat: the callback fails.
    assert!(futures::executor::block_on(
        run.deliver(Timestamp(created_at.0 + 900_000), timer_fired("0"))
    ));
    match run.outcome() {
        Some(duraflow_core::Outcome::Failed(f)) => {
            assert_eq!(f.kind, FailureKind::Timeout);
            assert_eq!(f.code.as_deref(), Some("callback_heartbeat_timed_out"));
            assert!(
                f.message
                    .contains("callback \"approve\" had no heartbeat for 600s"),
                "{}",
                f.message
            );
        }
        other => panic!("{other:?}"),
    }
    let _ = timeout_at;
}

#[test]
fn the_overall_timeout_fails_the_callback_as_timed_out() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        ctx.callback::<u32>("slow")
            .timeout(Duration::from_secs(60))
            .await
    });
    let mut d = Driver::start("cb", wf, &());
    let (_, timeout_at, _, _) = created(&d);
    let at = timeout_at.unwrap();
    assert!(futures::executor::block_on(
        d.run.deliver(at, timer_fired("0"))
    ));
    let new = d.run.uncommitted_events();
    assert!(
        matches!(&new[0].kind, EventKind::CallbackFailed { failure, .. } if failure.code.as_deref() == Some("callback_timed_out")),
        "{new:?}"
    );
}

#[test]
fn wait_for_callback_submits_the_token_in_a_step_then_waits() {
    let submitted = Arc::new(Mutex::new(Vec::new()));
    let wf = {
        let submitted = submitted.clone();
        workflow_fn(move |ctx: WorkflowContext, _: ()| {
            let submitted = submitted.clone();
            async move {
                ctx.wait_for_callback::<String, _, _>("approval", move |token, _step| {
                    let submitted = submitted.clone();
                    async move {
                        submitted.lock().unwrap().push(token);
                        Ok(())
                    }
                })
                .await
            }
        })
    };
    let mut d = Driver::start("wfc", wf, &());
    assert_eq!(
        types(&d.take_new()),
        vec![
            "workflow_started",
            "context_started",
            "callback_created",
            "step_started",
            "step_completed"
        ]
    );
    let token = created(&d).3;
    assert_eq!(*submitted.lock().unwrap(), vec![token]);
    assert!(d.deliver(completed("0.0", "ok")));
    assert_eq!(d.output::<String>(), "ok");
    assert_clean_replay(&d.check(), d.outcome().unwrap());
}

#[test]
fn a_wait_for_callback_submitter_is_retried_under_its_policy() {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let wf = {
        let attempts = attempts.clone();
        workflow_fn(move |ctx: WorkflowContext, _: ()| {
            let attempts = attempts.clone();
            async move {
                ctx.wait_for_callback::<String, _, _>("approval", move |_token, step| {
                    let attempts = attempts.clone();
                    async move {
                        attempts.lock().unwrap().push(step.attempt());
                        if step.attempt() == 1 {
                            return Err(duraflow_core::ActivityError::retryable(
                                "mail server down",
                            ));
                        }
                        Ok(())
                    }
                })
                .submitter_retry(duraflow_core::RetryPolicy::fixed(Duration::from_secs(1)))
                .await
            }
        })
    };
    let mut d = Driver::start("wfc-retry", wf, &());
    assert!(d.deliver(timer_fired("0.1")));
    assert_eq!(*attempts.lock().unwrap(), vec![1, 2]);
    assert!(d.deliver(completed("0.0", "ok")));
    assert_eq!(d.output::<String>(), "ok");
}
