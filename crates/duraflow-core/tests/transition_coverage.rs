//! Transition coverage: every row of every primitive's transition table is taken by at least
//! one scenario here (in the manner of Temporal sdk-core's `transition_coverage.rs`). A row no
//! scenario reaches is either dead (remove it) or untested (add a scenario); a new primitive
//! adds its scenarios with its table.
//!
//! The rows count their use per process, so the scenarios run in one test, one after the
//! other, and the check comes last.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use duraflow_core::{
    workflow_fn, ActivityError, EmitOutcome, EventKind, Failure, FailureKind, Primitive,
    RetryPolicy, StepSemantics, WorkflowContext, WorkflowError, WorkflowFn,
};
use futures::future::Either;

fn run(workflow: WorkflowFn, answers: Vec<EventKind>) -> Driver {
    let mut d = Driver::start("cover", workflow, &());
    for a in answers {
        assert!(d.deliver(a.clone()), "refused {a:?}");
    }
    d
}

/// Activities complete and fail; timers fire; event waits receive; children complete, fail
/// and start detached.
fn completions() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let _: u32 = ctx.activity("ok", &1).await?;
        let _ = ctx.activity::<u32>("bad", &2).await;
        ctx.sleep(Duration::from_secs(1)).await?;
        let _: u32 = ctx.wait_for_event("e").await?;
        let _: u32 = ctx.child_workflow("kid", &3).await?;
        let _ = ctx.child_workflow::<u32>("kid", &4).await;
        let _ = ctx.start_child("free", &5).await?;
        Ok::<_, WorkflowError>(())
    });
    let d = run(
        wf,
        vec![
            activity_completed("0", &1u32),
            activity_failed("1", "no"),
            timer_fired("2"),
            event_raised("e", &7u32),
            child_completed("4", &3u32),
            EventKind::ChildFailed {
                op: op("5"),
                failure: Box::new(Failure::new(FailureKind::Application, "kid failed")),
            },
        ],
    );
    assert!(d.outcome().is_some(), "{:?}", d.run);
}

/// Every kind of operation dropped while it waits: a race decided by a detached child start,
/// which completes as soon as it is issued.
fn abandonments() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let ops: Vec<futures::future::BoxFuture<'static, ()>> = vec![
            Box::pin({
                let ctx = ctx.clone();
                async move { drop(ctx.activity::<u32>("slow", &1).await) }
            }),
            Box::pin({
                let ctx = ctx.clone();
                async move { drop(ctx.sleep(Duration::from_secs(60)).await) }
            }),
            Box::pin({
                let ctx = ctx.clone();
                async move { drop(ctx.wait_for_event::<u32>("never").await) }
            }),
            Box::pin({
                let ctx = ctx.clone();
                async move { drop(ctx.child_workflow::<u32>("kid", &1).await) }
            }),
            Box::pin({
                let ctx = ctx.clone();
                async move {
                    drop(
                        ctx.step("quick", |_| async { Ok(1u32) })
                            .semantics(StepSemantics::AtLeastOnceWithTurn)
                            .await,
                    )
                }
            }),
            Box::pin({
                let ctx = ctx.clone();
                async move {
                    drop(
                        ctx.run_in_child_context("scope", |c: WorkflowContext| async move {
                            c.activity::<u32>("inner", &1).await
                        })
                        .await,
                    )
                }
            }),
        ];
        for op in ops {
            let started = ctx.start_child("racer", &0);
            match ctx.select(op, started).await {
                Either::Left(()) => return Err(WorkflowError::application("the op won")),
                Either::Right(id) => drop(id?),
            }
        }
        Ok::<_, WorkflowError>(())
    });
    let d = run(wf, Vec::new());
    assert!(
        matches!(d.outcome(), Some(duraflow_core::Outcome::Completed(_))),
        "{:?}",
        d.outcome()
    );
}

/// A step completes, fails, retries after its backoff timer, and is dropped while it backs
/// off.
fn steps() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let _: u32 = ctx.step("fine", |_| async { Ok(1) }).await?;
        let _ = ctx
            .step("broken", |_| async {
                Err::<u32, _>(ActivityError::terminal("no"))
            })
            .await;
        let _: u32 = ctx
            .step("flaky", |s| async move {
                if s.attempt() == 1 {
                    Err(ActivityError::retryable("again"))
                } else {
                    Ok(2)
                }
            })
            .retry(RetryPolicy::fixed(Duration::from_secs(1)))
            .await?;
        let backing_off = ctx
            .step("doomed", |_| async {
                Err::<u32, _>(ActivityError::retryable("again"))
            })
            .retry(RetryPolicy::fixed(Duration::from_secs(60)));
        let quick = ctx.activity::<u32>("quick", &1);
        match ctx.select(backing_off, quick).await {
            Either::Left(_) => Err(WorkflowError::application("the step won")),
            Either::Right(v) => Ok(v?),
        }
    });
    let d = run(wf, vec![timer_fired("2"), activity_completed("4", &9u32)]);
    assert_eq!(d.output::<u32>(), 9);
}

/// A context completes, fails, and is returned from its recorded end on replay.
fn contexts() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let a: u32 = ctx
            .run_in_child_context("good", |c: WorkflowContext| async move {
                c.activity::<u32>("a", &1).await
            })
            .await?;
        let _ = ctx
            .run_in_child_context("bad", |_c: WorkflowContext| async move {
                Err::<u32, _>(WorkflowError::application("no"))
            })
            .await;
        Ok::<_, WorkflowError>(a)
    });
    let d = run(wf.clone(), vec![activity_completed("0.0", &1u32)]);
    assert_eq!(d.output::<u32>(), 1);
    let again = Driver::resume("cover", wf, d.journal.clone());
    assert_eq!(again.output::<u32>(), 1);
}

/// An invoke that times out gives up on its child.
fn cancellations() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        ctx.invoke::<u32>("slow", &1)
            .timeout(Duration::from_secs(5))
            .await
    });
    let d = run(wf, vec![timer_fired("1")]);
    assert_eq!(d.failure().kind, FailureKind::Timeout);
}

/// Callbacks complete, fail, take a heartbeat, and are dropped while open.
fn callbacks() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let a: u32 = ctx
            .callback("a")
            .heartbeat_timeout(Duration::from_secs(60))
            .await?;
        let _ = ctx.callback::<u32>("b").await;
        let open = ctx.callback::<u32>("c");
        let _ = open.token();
        drop(open);
        Ok::<_, WorkflowError>(a)
    });
    let d = run(
        wf,
        vec![
            EventKind::CallbackHeartbeat {
                op: op("0"),
                next_deadline: None,
            },
            EventKind::CallbackCompleted {
                op: op("0"),
                output: p(&5u32),
            },
            EventKind::CallbackFailed {
                op: op("1"),
                failure: Box::new(Failure::new(FailureKind::Application, "no")),
            },
        ],
    );
    assert_eq!(d.output::<u32>(), 5);
}

/// Queue-wide events: an emit completes; an await receives, another times out on its own
/// timer; an emit and an await are dropped while they wait; replay takes the same branches.
fn queue_events() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let outcome = ctx.emit_event("ready", &1u32).await?;
        let got: u32 = ctx.await_event("go").await?;
        let late = ctx
            .await_event::<u32>("late")
            .timeout(Duration::from_secs(5))
            .await;
        if !matches!(late, Err(WorkflowError::Timeout(_))) {
            return Err(WorkflowError::application(format!(
                "not timed out: {late:?}"
            )));
        }
        let emit = {
            let ctx = ctx.clone();
            async move { drop(ctx.emit_event("dropped", &2u32).await) }
        };
        let wait = {
            let ctx = ctx.clone();
            async move { drop(ctx.await_event::<u32>("never").await) }
        };
        for op in [
            Box::pin(emit) as futures::future::BoxFuture<'static, ()>,
            Box::pin(wait),
        ] {
            let started = ctx.start_child("racer", &0);
            match ctx.select(op, started).await {
                Either::Left(()) => return Err(WorkflowError::application("the op won")),
                Either::Right(id) => drop(id?),
            }
        }
        Ok::<_, WorkflowError>((outcome, got))
    });
    let d = run(
        wf.clone(),
        vec![
            EventKind::QueueEventEmitCompleted {
                op: op("0"),
                outcome: EmitOutcome::Emitted { woken: 3 },
            },
            EventKind::QueueEventReceived {
                op: op("1"),
                data: p(&7u32),
            },
            timer_fired("2"),
        ],
    );
    let expected = (EmitOutcome::Emitted { woken: 3 }, 7u32);
    assert_eq!(d.output::<(EmitOutcome, u32)>(), expected);
    let again = Driver::resume("cover", wf, d.journal.clone());
    assert_eq!(again.output::<(EmitOutcome, u32)>(), expected);
}

#[test]
fn every_transition_of_every_primitive_is_taken() {
    completions();
    abandonments();
    steps();
    contexts();
    cancellations();
    callbacks();
    queue_events();
    let untaken: Vec<String> = Primitive::ALL
        .iter()
        .flat_map(|p| p.untaken().map(move |t| format!("{p}: {t}")))
        .collect();
    assert!(
        untaken.is_empty(),
        "rows no scenario takes:\n{}",
        untaken.join("\n")
    );
}
