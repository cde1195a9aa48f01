//! Child contexts: scoped operation ids, one journaled result, and replay that returns a
//! completed context's result without running its body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use duraflow_core::{
    workflow_fn, EventKind, FailureKind, WorkflowContext, WorkflowError, WorkflowFn,
};

/// `ctx.run_in_child_context("pay", ..)` whose body counts its runs, calls an activity and a
/// step inside, and fails when the activity says `"fail"`; then an activity outside.
fn paying(runs: Arc<AtomicUsize>) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, _: ()| {
        let runs = runs.clone();
        async move {
            let paid: String = ctx
                .run_in_child_context("pay", move |child: WorkflowContext| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let answer: String = child.activity("charge", &1).await?;
                    if answer == "fail" {
                        return Err(WorkflowError::application_with_code("declined", "card"));
                    }
                    let receipt: String = child
                        .step("receipt", move |_| {
                            let answer = answer.clone();
                            async move { Ok(format!("receipt-{answer}")) }
                        })
                        .await?;
                    Ok(receipt)
                })
                .await?;
            let shipped: String = ctx.activity("ship", &paid).await?;
            Ok::<_, WorkflowError>(shipped)
        }
    })
}

fn string_result(op_id: &str, s: &str) -> EventKind {
    activity_completed(op_id, &s.to_owned())
}

#[test]
fn operations_inside_take_ids_in_the_contexts_scope_and_the_result_is_journaled_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut d = Driver::start("ctx", paying(runs.clone()), &());
    let new = d.take_new();
    assert_eq!(
        types(&new),
        vec!["workflow_started", "context_started", "activity_scheduled"]
    );
    assert_eq!(new[2].kind.op().unwrap().to_string(), "0.0");
    assert!(d.deliver(string_result("0.0", "ok")));
    let new = kinds(&d.take_new());
    assert_eq!(new[1].op().unwrap().to_string(), "0.1", "{new:?}");
    assert!(
        matches!(&new[3], EventKind::ContextCompleted { op, output } if op.to_string() == "0" && common::d::<String>(output) == "receipt-ok"),
        "{new:?}"
    );
    assert!(matches!(&new[4], EventKind::ActivityScheduled { op, .. } if op.to_string() == "1"));
    assert!(d.deliver(string_result("1", "shipped")));
    assert_eq!(d.output::<String>(), "shipped");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_clean_replay(&d.check(), d.outcome().unwrap());
}

#[test]
fn replay_returns_a_completed_contexts_result_without_running_its_body() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut d = Driver::start("ctx", paying(runs.clone()), &());
    assert!(d.deliver(string_result("0.0", "ok")));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A new process replays the journal: the body is not run, and the run goes on.
    let mut again = Driver::resume("ctx", paying(runs.clone()), d.journal.clone());
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the body ran again on replay"
    );
    assert!(again.take_new().is_empty());
    assert!(again.deliver(string_result("1", "shipped")));
    assert_eq!(again.output::<String>(), "shipped");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_clean_replay(&again.check(), again.outcome().unwrap());
}

#[test]
fn a_context_in_progress_replays_its_body() {
    let runs = Arc::new(AtomicUsize::new(0));
    let d = Driver::start("ctx", paying(runs.clone()), &());
    let mut again = Driver::resume("ctx", paying(runs.clone()), d.journal.clone());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(again.deliver(string_result("0.0", "ok")));
    assert!(again.deliver(string_result("1", "shipped")));
    assert_eq!(again.output::<String>(), "shipped");
}

#[test]
fn a_failed_context_fails_with_its_bodys_error_live_and_on_replay() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut d = Driver::start("ctx", paying(runs.clone()), &());
    assert!(d.deliver(string_result("0.0", "fail")));
    let failure = d.failure();
    assert_eq!(failure.kind, FailureKind::Application);
    assert_eq!(failure.message, "declined");
    assert_eq!(failure.code.as_deref(), Some("card"));
    assert!(types(&d.journal).contains(&"context_failed"));
    let again = Driver::resume("ctx", paying(runs.clone()), d.journal.clone());
    assert_eq!(again.failure(), failure);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A context whose body waits for event `e`, then a wait for `e` outside.
fn waits_inside_then_outside() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let inside: String = ctx
            .run_in_child_context("inner", |child: WorkflowContext| async move {
                child.wait_for_event::<String>("e").await
            })
            .await?;
        let outside: String = ctx.wait_for_event("e").await?;
        Ok::<_, WorkflowError>((inside, outside))
    })
}

#[test]
fn an_event_taken_inside_a_skipped_context_is_not_handed_to_a_wait_outside() {
    let mut d = Driver::start("ev", waits_inside_then_outside(), &());
    assert!(d.deliver(event_raised("e", "first")));
    let taken = d.journal.iter().find_map(|e| match &e.kind {
        EventKind::EventRaised { taken_by, .. } => Some(taken_by.clone()),
        _ => None,
    });
    assert_eq!(
        taken.flatten().map(|o| o.to_string()).as_deref(),
        Some("0.0")
    );
    // On replay the context is skipped; the outside wait must still wait for a second event.
    let mut again = Driver::resume("ev", waits_inside_then_outside(), d.journal.clone());
    assert!(again.outcome().is_none());
    assert!(again.deliver(event_raised("e", "second")));
    assert_eq!(
        again.output::<(String, String)>(),
        ("first".to_owned(), "second".to_owned())
    );
    assert_clean_replay(&again.check(), again.outcome().unwrap());
}

#[test]
fn an_event_buffered_before_a_skipped_contexts_wait_is_taken_by_it_on_replay() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        ctx.sleep(std::time::Duration::from_secs(1)).await?;
        let inside: String = ctx
            .run_in_child_context("inner", |child: WorkflowContext| async move {
                child.wait_for_event::<String>("e").await
            })
            .await?;
        let outside: String = ctx.wait_for_event("e").await?;
        Ok::<_, WorkflowError>((inside, outside))
    });
    let mut d = Driver::start("buf", wf.clone(), &());
    assert!(d.deliver(event_raised("e", "early")));
    assert!(d.deliver(timer_fired("0")));
    assert!(d.outcome().is_none());
    let mut again = Driver::resume("buf", wf, d.journal.clone());
    assert!(
        again.outcome().is_none(),
        "the outside wait took the early event"
    );
    assert!(again.deliver(event_raised("e", "late")));
    assert_eq!(
        again.output::<(String, String)>(),
        ("early".to_owned(), "late".to_owned())
    );
}

/// Regression: replay returned a completed context's recorded result as soon as the code
/// reached its start, so the code after the context ran ahead of what concurrent branches had
/// journaled between the context's start and its end: a journal written live (or across a
/// crash) failed to replay with a nondeterminism error.
#[test]
fn a_completed_context_hands_its_result_over_where_its_end_is_journaled() {
    let wf = duraflow_core::workflow_fn(|ctx: duraflow_core::WorkflowContext, _: ()| async move {
        let first = async {
            let a: u32 = ctx
                .run_in_child_context("a", |c| async move { c.activity::<u32>("x", &1).await })
                .await?;
            let after: u32 = ctx.activity("after", &a).await?;
            Ok::<_, duraflow_core::WorkflowError>(after)
        };
        let second = async { ctx.activity::<u32>("b", &2).await };
        let (first, second) = futures::join!(first, second);
        Ok::<_, duraflow_core::WorkflowError>((first?, second?))
    });
    let mut d = Driver::start("ctx-end", wf.clone(), &());
    assert_eq!(
        types(&d.take_new()),
        vec![
            "workflow_started",
            "context_started",
            "activity_scheduled",
            "activity_scheduled"
        ]
    );
    assert!(d.deliver(activity_completed("0.0", &5u32)));
    assert!(d.deliver(activity_completed("1", &7u32)));
    assert!(d.deliver(activity_completed("2", &6u32)));
    assert_eq!(d.output::<(u32, u32)>(), (6, 7));
    assert_clean_replay(&d.check(), d.outcome().unwrap());
    // Every prefix replays without a nondeterminism failure.
    for k in 1..=d.journal.len() {
        let report = duraflow_core::check_replay(wf.clone(), "ctx-end", 1, d.journal[..k].to_vec());
        assert!(
            report.nondeterminism().is_none(),
            "prefix of {k}: {:?}",
            report.outcome
        );
    }
}
