//! Duplicate and stale deliveries are refused without touching the journal; what the run wants
//! is exactly what some waiting operation can use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use duraflow_core::{
    workflow_fn, ActivityOptions, EventKind, Outcome, Payload, WorkflowContext, WorkflowError,
    WorkflowFn,
};
use futures::future::Either;

/// Two activities, one after the other.
fn two_activities() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let a: u32 = ctx.activity("a", &()).await?;
        let b: u32 = ctx.activity("b", &()).await?;
        Ok::<_, WorkflowError>((a, b))
    })
}

#[test]
fn a_duplicate_activity_completion_is_refused_and_appends_nothing() {
    let mut run = Driver::start("dup-1", two_activities(), &());
    assert!(run.deliver(activity_completed("0", &1)));
    assert!(run.outcome().is_none());
    let len = run.run.journal_len();
    run.take_new();
    // The same completion again (and one with another output) is refused.
    assert!(!run.run.wants(&activity_completed("0", &1)));
    assert!(!run.deliver(activity_completed("0", &1)));
    assert!(!run.deliver(activity_completed("0", &99)));
    assert!(!run.deliver(activity_failed("0", "late failure")));
    assert_eq!(run.run.journal_len(), len);
    assert!(run.take_new().is_empty());
    assert!(run.run.uncommitted_events().is_empty());

    assert!(run.deliver(activity_completed("1", &2)));
    assert_eq!(run.output::<(u32, u32)>(), (1, 2));
    assert_eq!(
        types(&run.take_new()),
        vec!["activity_completed", "workflow_completed"]
    );
    // Once the run has ended nothing more is wanted, not even an external event.
    assert!(!run.deliver(activity_completed("1", &2)));
    assert!(!run.deliver(event_raised("x", &1)));
    assert!(run.take_new().is_empty());
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn a_completion_of_the_wrong_kind_for_an_operation_is_refused() {
    let mut run = Driver::start("dup-kind", two_activities(), &());
    run.take_new();
    // Operation 0 is an activity: a timer firing for it is a misrouted message.
    assert!(!run.run.wants(&timer_fired("0")));
    assert!(!run.deliver(timer_fired("0")));
    assert!(run.take_new().is_empty());
    assert!(run.deliver(activity_completed("0", &1)));
    assert!(run.deliver(activity_completed("1", &2)));
    assert_eq!(run.output::<(u32, u32)>(), (1, 2));
}

#[test]
fn completions_for_unknown_or_not_yet_issued_operations_are_refused() {
    let mut run = Driver::start("dup-2", two_activities(), &());
    run.take_new();
    assert!(
        !run.deliver(activity_completed("1", &1)),
        "op 1 is not issued yet"
    );
    assert!(!run.deliver(activity_completed("7", &1)));
    assert!(run.take_new().is_empty());
}

#[test]
fn a_second_start_and_issued_events_are_refused() {
    let mut run = Driver::start("dup-3", two_activities(), &());
    run.take_new();
    assert!(!run.deliver(started(&())));
    assert!(!run.deliver(EventKind::ActivityScheduled {
        op: op("0"),
        name: "a".into(),
        input: Payload::null(),
        options: Box::new(ActivityOptions::default()),
    }));
    assert!(!run.deliver(EventKind::WorkflowCompleted {
        output: Payload::null()
    }));
    assert!(run.take_new().is_empty());
    assert!(run.outcome().is_none());
}

#[test]
fn the_completion_of_the_loser_of_a_select_is_refused() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let won = match ctx
            .select(
                ctx.activity::<u32>("fast", &()),
                ctx.activity::<u32>("slow", &()),
            )
            .await
        {
            Either::Left(r) => ("fast", r?),
            Either::Right(r) => ("slow", r?),
        };
        let after: u32 = ctx.activity("after", &()).await?;
        Ok::<_, WorkflowError>((won.0.to_owned(), won.1, after))
    });
    let mut run = Driver::start("stale-1", wf, &());
    assert_eq!(run.take_new_issued().len(), 2);
    assert!(run.deliver(activity_completed("0", &10)));
    assert_eq!(
        types(&run.take_new()),
        vec!["activity_completed", "activity_scheduled"]
    );
    // "slow" (op 1) was abandoned when "fast" won.
    assert!(!run.run.wants(&activity_completed("1", &20)));
    assert!(!run.deliver(activity_completed("1", &20)));
    assert!(!run.deliver(activity_failed("1", "too late")));
    assert!(run.take_new().is_empty());
    assert!(run.deliver(activity_completed("2", &30)));
    assert_eq!(run.output::<(String, u32, u32)>(), ("fast".into(), 10, 30));
    assert!(matches!(run.outcome(), Some(Outcome::Completed(_))));
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

/// A run that has committed lets go of its history (a warm instance holds only what is in
/// flight) and goes on exactly as before: the journal keeps counting, only new events are
/// uncommitted, and completions of operations that already finished are still refused.
#[test]
fn a_committed_run_holds_none_of_its_history() {
    let many = workflow_fn(|ctx: WorkflowContext, n: u32| async move {
        let mut sum = 0u32;
        for i in 0..n {
            sum += ctx.activity::<u32>("add", &i).await?;
        }
        Ok::<_, WorkflowError>(sum)
    });
    let mut run = Driver::start("forget", many, &50u32);
    for i in 0..49u32 {
        assert!(run.deliver(activity_completed(&i.to_string(), &i)));
        assert_eq!(run.run.held_events(), 0, "nothing held after a commit");
        // A second result for a finished operation is refused, history gone or not.
        assert!(!run.run.wants(&activity_completed(&i.to_string(), &i)));
    }
    // 1 start + 50 scheduled + 49 completed.
    assert_eq!(run.run.journal_len(), 100);
    assert!(run.deliver(activity_completed("49", &49)));
    assert_eq!(run.output::<u32>(), (0..50u32).sum::<u32>());
    // The journal the driver collected replays cleanly against the same code.
    let report = run.check();
    assert!(report.new_events.is_empty(), "{:?}", report.new_events);
}
