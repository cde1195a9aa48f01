//! How executions end from outside the code's normal return: continue-as-new (with the events
//! nobody took), cancellation and termination.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use duraflow_core::{
    workflow_fn, EventKind, Outcome, ParentLink, Payload, Timestamp, WorkflowContext,
    WorkflowError, WorkflowFn, WorkflowRun,
};
use futures::executor::block_on;

/// Takes one "cmd", does some work with it, then continues as new with the counter plus one.
fn looping() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, n: u32| async move {
        let cmd: String = ctx.wait_for_event("cmd").await?;
        let _: () = ctx.activity("work", &(n, cmd)).await?;
        ctx.continue_as_new::<()>(&(n + 1)).await
    })
}

#[test]
fn continue_as_new_carries_the_input_and_the_untaken_events_in_arrival_order() {
    let mut run = Driver::start("can-1", looping(), &0u32);
    assert!(run.deliver(event_raised("cmd", &"a")));
    // While the work runs, more events arrive: two commands and one of another name.
    assert!(run.deliver(event_raised("cmd", &"b")));
    assert!(run.deliver(event_raised("other", &1)));
    assert!(run.deliver(event_raised("cmd", &"c")));
    assert!(run.outcome().is_none());
    assert!(run.deliver(activity_completed("1", &())));
    let expected = Outcome::ContinuedAsNew {
        input: p(&1u32),
        carried_events: vec![
            ("cmd".to_owned(), p(&"b")),
            ("other".to_owned(), p(&1)),
            ("cmd".to_owned(), p(&"c")),
        ],
    };
    assert_eq!(run.outcome(), Some(&expected));
    assert_eq!(
        run.journal.last().map(|e| &e.kind),
        Some(&EventKind::ContinuedAsNew { input: p(&1u32) })
    );
    // Nothing more is accepted by the ended execution.
    assert!(!run.deliver(event_raised("cmd", &"d")));
    assert_clean_replay(&run.check(), &expected);

    // The next execution starts with the input and takes the carried events, in order.
    let Outcome::ContinuedAsNew {
        input,
        carried_events,
    } = expected
    else {
        unreachable!()
    };
    let mut next = WorkflowRun::live("can-1", 2, Vec::new(), looping(), TestClock::new(100_000));
    let start = EventKind::WorkflowStarted {
        name: WF.into(),
        input,
        parent: None,
        headers: Default::default(),
        retry: None,
        version: None,
    };
    assert!(block_on(next.deliver(Timestamp(100_000), start)));
    for (name, data) in carried_events {
        assert!(block_on(next.deliver(
            Timestamp(100_001),
            EventKind::EventRaised {
                name,
                data,
                taken_by: None
            }
        )));
    }
    let new = next.uncommitted_events();
    let work = new
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ActivityScheduled { input, .. } => Some(d::<(u32, String)>(input)),
            _ => None,
        })
        .unwrap();
    assert_eq!(work, (1, "b".to_owned()));
    assert!(block_on(
        next.deliver(Timestamp(100_002), activity_completed("1", &()))
    ));
    match next.outcome() {
        Some(Outcome::ContinuedAsNew {
            input,
            carried_events,
        }) => {
            assert_eq!(*input, p(&2u32));
            assert_eq!(
                *carried_events,
                vec![("other".to_owned(), p(&1)), ("cmd".to_owned(), p(&"c"))]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn continue_as_new_with_nothing_buffered_carries_nothing() {
    let mut run = Driver::start("can-2", looping(), &5u32);
    assert!(run.deliver(event_raised("cmd", &"only")));
    assert!(run.deliver(activity_completed("1", &())));
    assert_eq!(
        run.outcome(),
        Some(&Outcome::ContinuedAsNew {
            input: p(&6u32),
            carried_events: vec![]
        })
    );
}

/// Starts a detached child, then waits for two attached children.
fn parent() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let detached = ctx.start_child("audit", &()).await?;
        let outs: Vec<u32> = ctx
            .join_all(vec![
                ctx.child_workflow("slow", &1),
                ctx.child_workflow("fast", &2),
            ])
            .await?;
        Ok::<_, WorkflowError>((detached, outs))
    })
}

#[test]
fn cancel_ends_the_run_and_lists_the_attached_children_still_open() {
    let mut run = Driver::start("cancel-1", parent(), &());
    let issued = run.take_new_issued();
    assert_eq!(issued.len(), 3, "{issued:?}");
    assert!(
        matches!(&issued[0], EventKind::ChildStarted { detached: true, instance_id, .. } if instance_id == "cancel-1:child:0")
    );
    assert_eq!(
        run.run.open_children(),
        vec!["cancel-1:child:1".to_owned(), "cancel-1:child:2".to_owned()]
    );
    // "fast" reports back; "slow" has not when the cancellation arrives.
    assert!(run.deliver(child_completed("2", &20)));
    assert_eq!(run.run.open_children(), vec!["cancel-1:child:1".to_owned()]);
    assert!(run.deliver(EventKind::CancelRequested {
        reason: "user asked".into()
    }));
    assert_eq!(
        run.outcome(),
        Some(&Outcome::Cancelled("user asked".into()))
    );
    assert_eq!(run.run.open_children(), vec!["cancel-1:child:1".to_owned()]);
    assert_eq!(
        types(&run.take_new()),
        vec!["child_completed", "cancel_requested"]
    );
    // The ended run takes nothing more, not even the open child's result.
    assert!(!run.deliver(child_completed("1", &10)));
    assert!(!run.deliver(EventKind::CancelRequested {
        reason: "again".into()
    }));
    assert!(run.take_new().is_empty());

    // Replay ends the same way and knows the same open children.
    let report = run.check();
    assert_clean_replay(&report, &Outcome::Cancelled("user asked".into()));
    let mut checker = WorkflowRun::checker("cancel-1", 1, run.journal.clone(), parent());
    block_on(checker.replay());
    assert_eq!(checker.open_children(), vec!["cancel-1:child:1".to_owned()]);
}

#[test]
fn terminate_ends_the_run_as_terminated() {
    let mut run = Driver::start("term-1", parent(), &());
    assert!(run.deliver(EventKind::TerminateRequested {
        reason: "operator".into()
    }));
    assert_eq!(run.outcome(), Some(&Outcome::Terminated("operator".into())));
    assert_eq!(run.run.open_children().len(), 2);
    assert_clean_replay(&run.check(), &Outcome::Terminated("operator".into()));
}

#[test]
fn the_start_event_records_the_name_and_the_parent() {
    let link = ParentLink {
        instance_id: "up".into(),
        execution: 3,
        op: op("4.1"),
    };
    let mut run = Driver::new("child-1", parent());
    assert!(run.deliver(EventKind::WorkflowStarted {
        name: "audit".into(),
        input: Payload::null(),
        parent: Some(Box::new(link.clone())),
        headers: Default::default(),
        retry: None,
        version: None,
    }));
    assert_eq!(run.run.parent(), Some(link));
    assert_eq!(run.run.workflow_name(), "audit");
}
