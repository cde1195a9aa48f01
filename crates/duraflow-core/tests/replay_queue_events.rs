//! Queue-wide events in the replay machine: an emit waits for its journaled outcome, an await
//! for its event or its own timer (the first journaled wins and the other is refused as
//! stale), a bad name fails before anything is journaled, and a renamed await is
//! nondeterminism at its position.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use duraflow_core::{
    workflow_fn, EmitOutcome, EventKind, FailureKind, WorkflowContext, WorkflowError, WorkflowFn,
};

/// Emits `ready`, then awaits `go` for ten seconds; returns the outcome and the data (or
/// `None` for a timeout).
fn herald(await_name: &'static str) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, _: ()| async move {
        let outcome = ctx.emit_event("ready", &1u32).await?;
        let got = match ctx
            .await_event::<String>(await_name)
            .timeout(Duration::from_secs(10))
            .await
        {
            Ok(data) => Some(data),
            Err(WorkflowError::Timeout(_)) => None,
            Err(e) => return Err(e),
        };
        Ok::<_, WorkflowError>((outcome, got))
    })
}

fn emitted(woken: u64) -> EventKind {
    EventKind::QueueEventEmitCompleted {
        op: op("0"),
        outcome: EmitOutcome::Emitted { woken },
    }
}

#[test]
fn an_emit_waits_for_its_outcome_and_an_await_for_its_event() {
    let mut d = Driver::start("h", herald("go"), &());
    let issued = d.take_new_issued();
    assert!(
        matches!(&issued[..], [EventKind::QueueEventEmitStarted { name, .. }] if name == "ready"),
        "{issued:?}"
    );
    assert!(d.outcome().is_none(), "the emit waits for its outcome");
    assert!(d.deliver(emitted(2)));
    let issued = d.take_new_issued();
    let [EventKind::QueueEventAwaitStarted {
        name,
        timeout_at: Some(_),
        ..
    }] = &issued[..]
    else {
        panic!("{issued:?}")
    };
    assert_eq!(name, "go");
    assert!(d.deliver(EventKind::QueueEventReceived {
        op: op("1"),
        data: p(&"hello"),
    }));
    // The await's timer fires later: stale, refused, not journaled.
    assert!(!d.deliver(timer_fired("1")));
    let out: (EmitOutcome, Option<String>) = d.output();
    assert_eq!(
        out,
        (EmitOutcome::Emitted { woken: 2 }, Some("hello".to_owned()))
    );
    let report = d.check();
    assert!(report.new_events.is_empty());
    assert_eq!(report.outcome.as_ref(), d.outcome());
}

#[test]
fn a_timer_journaled_first_times_the_await_out_and_the_late_event_is_refused() {
    let mut d = Driver::start("h", herald("go"), &());
    assert!(d.deliver(EventKind::QueueEventEmitCompleted {
        op: op("0"),
        outcome: EmitOutcome::AlreadyEmitted,
    }));
    assert!(d.run.take_dropped_awaits().is_empty());
    assert!(d.deliver(timer_fired("1")));
    // The timed-out await's waiter goes with the turn's commit.
    assert_eq!(d.run.take_dropped_awaits(), vec![op("1")]);
    assert!(!d.deliver(EventKind::QueueEventReceived {
        op: op("1"),
        data: p(&"too late"),
    }));
    let out: (EmitOutcome, Option<String>) = d.output();
    assert_eq!(out, (EmitOutcome::AlreadyEmitted, None));
    // Replay reads the timer and takes the same branch.
    let again = Driver::resume("h", herald("go"), d.journal.clone());
    assert_eq!(again.output::<(EmitOutcome, Option<String>)>(), out);
}

#[test]
fn a_renamed_await_is_nondeterminism_at_its_position() {
    let mut d = Driver::start("h", herald("go"), &());
    assert!(d.deliver(emitted(0)));
    let report = duraflow_core::check_replay(herald("gone"), "h", 1, d.journal.clone());
    let failure = nondeterminism(&report);
    assert!(
        failure.message.contains("queue_event_await_started"),
        "{failure}"
    );
    assert!(failure.message.contains("gone"), "{failure}");
}

#[test]
fn a_name_no_store_can_keep_fails_before_anything_is_journaled() {
    for bad in ["", "nul\0name"] {
        let emit = workflow_fn(move |ctx: WorkflowContext, _: ()| async move {
            ctx.emit_event(bad, &1u32).await
        });
        let mut d = Driver::start("bad", emit, &());
        let failure = d.failure();
        assert_eq!(failure.code.as_deref(), Some("invalid_queue_event_name"));
        assert_eq!(failure.kind, FailureKind::Application);
        assert!(d
            .take_new_issued()
            .iter()
            .all(|k| !matches!(k, EventKind::QueueEventEmitStarted { .. })));
        let wait = workflow_fn(move |ctx: WorkflowContext, _: ()| async move {
            ctx.await_event::<u32>(bad).await
        });
        let d = Driver::start("bad", wait, &());
        assert_eq!(
            d.failure().code.as_deref(),
            Some("invalid_queue_event_name")
        );
    }
}

#[test]
fn an_await_dropped_while_it_waits_is_handed_to_the_turn_and_an_answered_one_is_not() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let answered: u32 = ctx.await_event("first").await?;
        let lost = ctx.await_event::<u32>("never");
        let started = ctx.start_child("racer", &0);
        match ctx.select(lost, started).await {
            futures::future::Either::Left(_) => Err(WorkflowError::application("lost won")),
            futures::future::Either::Right(id) => Ok((answered, id?)),
        }
    });
    let mut d = Driver::start("drop", wf, &());
    assert!(d.deliver(EventKind::QueueEventReceived {
        op: op("0"),
        data: p(&4u32),
    }));
    assert_eq!(d.run.take_dropped_awaits(), vec![op("1")]);
    let (answered, _child): (u32, String) = d.output();
    assert_eq!(answered, 4);
}
