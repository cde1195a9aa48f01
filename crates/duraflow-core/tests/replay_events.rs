//! External events: buffered until a wait takes them, taken in arrival order, kept apart by
//! name, and left buffered by a wait that timed out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use duraflow_core::{workflow_fn, EventKind, WorkflowContext, WorkflowError, WorkflowFn};

fn is_wait(kind: &EventKind, op_id: &str, event: &str) -> bool {
    matches!(kind, EventKind::EventWaitStarted { op: o, name } if *o == op(op_id) && name == event)
}

/// Runs an activity, then waits for event "x".
fn activity_then_wait() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let a: String = ctx.activity("a", &()).await?;
        let x: String = ctx.wait_for_event("x").await?;
        Ok::<_, WorkflowError>((a, x))
    })
}

#[test]
fn an_event_delivered_before_the_wait_is_taken_by_it() {
    let mut run = Driver::start("ev-1", activity_then_wait(), &());
    assert_eq!(
        types(&run.take_new()),
        vec!["workflow_started", "activity_scheduled"]
    );
    // The event arrives while the workflow still waits for the activity: it is buffered.
    assert!(run.deliver(event_raised("x", &"early")));
    assert_eq!(types(&run.take_new()), vec!["event_raised"]);
    assert!(run.outcome().is_none());
    // Once the activity completes, the wait starts and takes the buffered event at once.
    assert!(run.deliver(activity_completed("0", &"a-out")));
    let new = run.take_new();
    assert_eq!(
        types(&new),
        vec![
            "activity_completed",
            "event_wait_started",
            "workflow_completed"
        ]
    );
    assert!(is_wait(&new[1].kind, "1", "x"));
    assert_eq!(
        run.output::<(String, String)>(),
        ("a-out".into(), "early".into())
    );
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn an_event_delivered_after_the_wait_started_completes_it() {
    let mut run = Driver::start("ev-1", activity_then_wait(), &());
    assert!(run.deliver(activity_completed("0", &"a-out")));
    assert!(run.outcome().is_none());
    assert!(run.deliver(event_raised("x", &"on-time")));
    assert_eq!(
        run.output::<(String, String)>(),
        ("a-out".into(), "on-time".into())
    );
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

/// Waits for "x" twice, one after the other, after an activity.
fn two_sequential_waits() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let _: () = ctx.activity("a", &()).await?;
        let first: u32 = ctx.wait_for_event("x").await?;
        let second: u32 = ctx.wait_for_event("x").await?;
        Ok::<_, WorkflowError>(vec![first, second])
    })
}

#[test]
fn two_buffered_events_of_one_name_are_taken_in_arrival_order() {
    let mut run = Driver::start("ev-2", two_sequential_waits(), &());
    assert!(run.deliver(event_raised("x", &1)));
    assert!(run.deliver(event_raised("x", &2)));
    assert!(run.deliver(activity_completed("0", &())));
    assert_eq!(run.output::<Vec<u32>>(), vec![1, 2]);
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn two_events_of_one_name_in_quick_succession_are_taken_in_order_by_two_waits() {
    let mut run = Driver::start("ev-2", two_sequential_waits(), &());
    assert!(run.deliver(activity_completed("0", &())));
    assert!(is_wait(run.take_new_issued().last().unwrap(), "1", "x"));
    assert!(run.deliver(event_raised("x", &1)));
    assert!(run.deliver(event_raised("x", &2)));
    assert_eq!(run.output::<Vec<u32>>(), vec![1, 2]);
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn concurrent_waits_for_one_name_are_served_in_the_order_they_started() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let got: Vec<u32> = ctx
            .join_all((0..3).map(|_| ctx.wait_for_event::<u32>("x")))
            .await?;
        Ok::<_, WorkflowError>(got)
    });
    let mut run = Driver::start("ev-3", wf, &());
    let issued = run.take_new_issued();
    assert_eq!(issued.len(), 3);
    for (i, kind) in issued.iter().enumerate() {
        assert!(is_wait(kind, &i.to_string(), "x"), "{kind:?}");
    }
    for v in [10, 20, 30] {
        assert!(run.deliver(event_raised("x", &v)));
    }
    assert_eq!(run.output::<Vec<u32>>(), vec![10, 20, 30]);
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn events_of_different_names_do_not_mix() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let a: String = ctx.wait_for_event("a").await?;
        let b: String = ctx.wait_for_event("b").await?;
        Ok::<_, WorkflowError>((a, b))
    });
    let mut run = Driver::start("ev-4", wf, &());
    assert!(run.deliver(event_raised("b", &"for-b")));
    assert!(run.deliver(event_raised("c", &"for-nobody")));
    // Neither event is "a": the first wait still waits and nothing new was asked for.
    assert!(run.outcome().is_none());
    assert_eq!(
        types(&run.take_new()),
        vec![
            "workflow_started",
            "event_wait_started",
            "event_raised",
            "event_raised"
        ]
    );
    assert!(run.deliver(event_raised("a", &"for-a")));
    assert_eq!(
        run.output::<(String, String)>(),
        ("for-a".into(), "for-b".into())
    );
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

/// Waits for "x" with a 10 s timeout, runs an activity, then waits for "x" again.
fn wait_with_timeout_then_wait_again() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let first = match ctx
            .wait_for_event::<String>("x")
            .timeout(Duration::from_secs(10))
            .await
        {
            Ok(v) => format!("got {v}"),
            Err(WorkflowError::Timeout(m)) => format!("timeout: {m}"),
            Err(e) => return Err(e),
        };
        let _: () = ctx.activity("between", &first).await?;
        let second: String = ctx.wait_for_event("x").await?;
        Ok((first, second))
    })
}

#[test]
fn a_wait_whose_timer_fires_first_times_out_and_a_later_event_is_buffered_for_the_next_wait() {
    let mut run = Driver::start("ev-5", wait_with_timeout_then_wait_again(), &());
    let started_at = run.journal[0].at;
    let issued = run.take_new_issued();
    assert_eq!(issued.len(), 2);
    assert!(is_wait(&issued[0], "0", "x"));
    assert_eq!(
        issued[1],
        EventKind::TimerCreated {
            op: op("1"),
            fire_at: started_at.plus(Duration::from_secs(10))
        }
    );

    assert!(run.deliver(timer_fired("1")));
    let issued = run.take_new_issued();
    assert!(
        matches!(&issued[..], [EventKind::ActivityScheduled { op: o, input, .. }]
            if *o == op("2") && d::<String>(input) == "timeout: no event \"x\" arrived within 10s"),
        "{issued:?}"
    );
    // The event arrives after the wait gave up: it is not handed to the abandoned wait but
    // buffered.
    assert!(run.deliver(event_raised("x", &"late")));
    assert!(run.take_new_issued().is_empty());
    assert!(run.outcome().is_none());
    assert!(run.deliver(activity_completed("2", &())));
    assert_eq!(
        run.output::<(String, String)>(),
        (
            "timeout: no event \"x\" arrived within 10s".into(),
            "late".into()
        )
    );
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn a_wait_whose_event_arrives_first_returns_it_and_its_timer_is_dropped() {
    let mut run = Driver::start("ev-6", wait_with_timeout_then_wait_again(), &());
    assert!(run.deliver(event_raised("x", &"first")));
    // The timer belongs to a finished wait: its firing is refused.
    assert!(!run.deliver(timer_fired("1")));
    assert!(run.deliver(activity_completed("2", &())));
    assert!(
        run.outcome().is_none(),
        "the second wait has nothing to take"
    );
    assert!(run.deliver(event_raised("x", &"second")));
    assert_eq!(
        run.output::<(String, String)>(),
        ("got first".into(), "second".into())
    );
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn a_wait_with_a_timeout_takes_a_buffered_event_without_starting_its_timer() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let _: () = ctx.activity("a", &()).await?;
        let x: String = ctx
            .wait_for_event("x")
            .timeout(Duration::from_secs(5))
            .await?;
        let _: () = ctx.activity("b", &()).await?;
        Ok::<_, WorkflowError>(x)
    });
    let mut run = Driver::start("ev-7", wf, &());
    assert!(run.deliver(event_raised("x", &"buffered")));
    assert!(run.deliver(activity_completed("0", &())));
    let issued = run.take_new_issued();
    // The wait is op 1 and its timer would be op 2; the next activity is op 3.
    assert_eq!(issued.len(), 3, "{issued:?}");
    assert!(is_wait(&issued[1], "1", "x"));
    assert!(matches!(&issued[2], EventKind::ActivityScheduled { op: o, .. } if *o == op("3")));
    assert!(run.deliver(activity_completed("3", &())));
    assert_eq!(run.output::<String>(), "buffered");
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn an_event_whose_data_does_not_decode_fails_the_wait_with_a_payload_error() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        match ctx.wait_for_event::<u32>("n").await {
            Err(WorkflowError::Payload(m)) => Ok::<_, WorkflowError>(m),
            other => panic!("expected a payload error, got {other:?}"),
        }
    });
    let mut run = Driver::start("ev-8", wf, &());
    assert!(run.deliver(event_raised("n", &"not a number")));
    let message: String = run.output();
    assert!(message.contains("event \"n\" (op 0)"), "{message}");
    assert!(message.contains("u32"), "{message}");
}
