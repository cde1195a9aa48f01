//! Inline steps: a live run executes the closure once and journals its result; replay (by a
//! checker or by a new live run) reads the result back without calling the closure again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use duraflow_core::{
    check_replay, workflow_fn, ActivityError, EventKind, FailureKind, Outcome, WorkflowContext,
    WorkflowError, WorkflowFn,
};
use futures::executor::block_on;

/// A step that counts its calls and returns `input * 10 + calls`, then an activity fed with it.
fn counting_step(calls: Arc<AtomicUsize>) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, input: u64| {
        let calls = calls.clone();
        async move {
            let value: u64 = ctx
                .step("compute", move |_| {
                    let calls = calls.clone();
                    async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst) as u64 + 1;
                        Ok::<_, ActivityError>(input * 10 + n)
                    }
                })
                .await?;
            let echoed: u64 = ctx.activity("use", &value).await?;
            Ok::<_, WorkflowError>((value, echoed))
        }
    })
}

#[test]
fn a_live_run_executes_the_step_once_and_journals_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut run = Driver::start("step-1", counting_step(calls.clone()), &4u64);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let new = kinds(&run.take_new());
    assert_eq!(new.len(), 4, "{new:?}");
    assert_eq!(
        new[1],
        EventKind::StepStarted {
            op: op("0"),
            name: "compute".into(),
            attempt: 1,
        }
    );
    assert_eq!(
        new[2],
        EventKind::StepCompleted {
            op: op("0"),
            output: p(&41u64)
        }
    );
    assert!(
        matches!(&new[3], EventKind::ActivityScheduled { op: o, input, .. } if *o == op("1") && d::<u64>(input) == 41)
    );
    assert!(run.deliver(activity_completed("1", &41u64)));
    assert_eq!(run.output::<(u64, u64)>(), (41, 41));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn replay_reads_the_step_result_back_without_calling_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut run = Driver::start("step-2", counting_step(calls.clone()), &4u64);
    assert!(run.deliver(activity_completed("1", &41u64)));
    let outcome = run.outcome().unwrap().clone();
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A checker, over the whole journal and over the journal cut after the step's result.
    let report = check_replay(
        counting_step(calls.clone()),
        "step-2",
        1,
        run.journal.clone(),
    );
    assert_clean_replay(&report, &outcome);
    let report = check_replay(
        counting_step(calls.clone()),
        "step-2",
        1,
        run.journal[..3].to_vec(),
    );
    assert_eq!(types(&report.new_events), vec!["activity_scheduled"]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A new live run over the same journal.
    let resumed = Driver::resume("step-2", counting_step(calls.clone()), run.journal.clone());
    assert_eq!(resumed.outcome(), Some(&outcome));
    assert!(resumed.run.uncommitted_events().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A new live run over the unfinished journal carries on with the recorded value.
    let mut resumed = Driver::resume(
        "step-2",
        counting_step(calls.clone()),
        run.journal[..4].to_vec(),
    );
    assert!(resumed.take_new().is_empty());
    assert!(resumed.deliver(activity_completed("1", &7u64)));
    assert_eq!(resumed.output::<(u64, u64)>(), (41, 7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_step_whose_result_was_never_journaled_runs_again_live_but_not_in_a_checker() {
    let calls = Arc::new(AtomicUsize::new(0));
    let run = Driver::start("step-3", counting_step(calls.clone()), &4u64);
    // The process stopped after journaling the step's start but before its result.
    let cut = run.journal[..2].to_vec();
    assert_eq!(types(&cut), vec!["workflow_started", "step_started"]);

    let report = check_replay(counting_step(calls.clone()), "step-3", 1, cut.clone());
    assert!(report.new_events.is_empty(), "{:?}", report.new_events);
    assert_eq!(report.outcome, None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let mut resumed = Driver::resume("step-3", counting_step(calls.clone()), cut);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a step runs at least once");
    let new = kinds(&resumed.take_new());
    assert_eq!(
        new[0],
        EventKind::StepCompleted {
            op: op("0"),
            output: p(&42u64)
        }
    );
    assert!(matches!(&new[1], EventKind::ActivityScheduled { op: o, .. } if *o == op("1")));
    assert!(resumed.deliver(activity_completed("1", &42u64)));
    assert_eq!(resumed.output::<(u64, u64)>(), (42, 42));
}

#[test]
fn a_step_interrupted_while_other_work_was_journaled_runs_again_after_replay() {
    // The step runs beside an activity; the journal holds the step's start and the activity's
    // schedule but no step result.
    let calls = Arc::new(AtomicUsize::new(0));
    let wf = {
        let calls = calls.clone();
        workflow_fn(move |ctx: WorkflowContext, _: ()| {
            let calls = calls.clone();
            async move {
                let step = ctx.step("s", move |_| {
                    let calls = calls.clone();
                    async move { Ok::<_, ActivityError>(calls.fetch_add(1, Ordering::SeqCst) + 1) }
                });
                let act = ctx.activity::<u32>("a", &());
                let (s, a) =
                    futures::future::try_join(step, std::future::IntoFuture::into_future(act))
                        .await?;
                Ok::<_, WorkflowError>((s, a))
            }
        })
    };
    let journal = vec![
        duraflow_core::Event {
            at: duraflow_core::Timestamp(1),
            kind: started(&()),
        },
        duraflow_core::Event {
            at: duraflow_core::Timestamp(1),
            kind: EventKind::StepStarted {
                op: op("0"),
                name: "s".into(),
                attempt: 1,
            },
        },
        duraflow_core::Event {
            at: duraflow_core::Timestamp(1),
            kind: EventKind::ActivityScheduled {
                op: op("1"),
                name: "a".into(),
                input: p(&()),
                options: Default::default(),
            },
        },
    ];
    let mut run = Driver::resume("step-4", wf, journal);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        kinds(&run.take_new()),
        vec![EventKind::StepCompleted {
            op: op("0"),
            output: p(&1usize)
        }]
    );
    assert!(run.deliver(activity_completed("1", &5u32)));
    assert_eq!(run.output::<(usize, u32)>(), (1, 5));
}

fn failing_step(calls: Arc<AtomicUsize>, catch: bool) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, _: ()| {
        let calls = calls.clone();
        async move {
            let result: Result<u32, WorkflowError> = ctx
                .step("charge", move |_| {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Err(ActivityError::terminal("card declined").with_code("declined"))
                    }
                })
                .await;
            match result {
                Err(WorkflowError::Step(f)) if catch => Ok(format!("caught: {}", f.message)),
                Err(e) => Err(e),
                Ok(v) => Ok(format!("unexpected success {v}")),
            }
        }
    })
}

#[test]
fn a_failing_step_gives_a_step_error_and_is_journaled() {
    let calls = Arc::new(AtomicUsize::new(0));
    let run = Driver::start("step-5", failing_step(calls.clone(), true), &());
    assert_eq!(run.output::<String>(), "caught: card declined");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    match &run.journal[2].kind {
        EventKind::StepFailed { op: o, failure } => {
            assert_eq!(*o, op("0"));
            assert_eq!(failure.kind, FailureKind::Application);
            assert_eq!(failure.message, "card declined");
            assert_eq!(failure.code.as_deref(), Some("declined"));
            assert_eq!(failure.source.as_deref(), Some("step \"charge\""));
            assert_eq!(failure.op, Some(op("0")));
        }
        other => panic!("expected step_failed, got {other:?}"),
    }
    assert_clean_replay(&run.check(), run.outcome().unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn an_uncaught_step_failure_fails_the_workflow_with_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let run = Driver::start("step-6", failing_step(calls.clone(), false), &());
    let failure = run.failure();
    assert_eq!(failure.message, "card declined");
    assert_eq!(failure.source.as_deref(), Some("step \"charge\""));
    assert_eq!(failure.op, Some(op("0")));
    assert!(
        matches!(run.journal.last().map(|e| &e.kind), Some(EventKind::WorkflowFailed { failure: f }) if *f == Box::new(failure.clone()))
    );
    let report = run.check();
    assert_clean_replay(&report, &Outcome::Failed(failure));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Counts how often the run asked to be polled again.
struct CountingWaker(AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_step_that_waits_on_its_own_io_keeps_the_delivery_pending_until_it_is_done() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
    let wf = {
        let calls = calls.clone();
        workflow_fn(move |ctx: WorkflowContext, _: ()| {
            let calls = calls.clone();
            let rx = rx.clone();
            async move {
                let a: u32 = ctx
                    .step("slow", move |_| {
                        let calls = calls.clone();
                        let rx = rx.clone();
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            let rx = rx.lock().unwrap().take().expect("the step runs once");
                            rx.await.map_err(ActivityError::terminal)
                        }
                    })
                    .await?;
                let b: u32 = ctx.activity("next", &a).await?;
                Ok::<_, WorkflowError>(a + b)
            }
        })
    };
    let mut run = Driver::new("step-7", wf.clone());
    let at = run.clock.advance(1);
    let wakes = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = std::task::Waker::from(wakes.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut delivery = Box::pin(run.run.deliver(at, started(&())));
    // The step waits for its I/O: so does the delivery.
    assert!(std::future::Future::poll(delivery.as_mut(), &mut cx).is_pending());
    assert!(std::future::Future::poll(delivery.as_mut(), &mut cx).is_pending());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    // The I/O finishes: the run is woken and the delivery completes.
    tx.send(3).unwrap();
    assert!(
        wakes.0.load(Ordering::SeqCst) >= 1,
        "the step's wake reached the poller"
    );
    match std::future::Future::poll(delivery.as_mut(), &mut cx) {
        std::task::Poll::Ready(accepted) => assert!(accepted),
        std::task::Poll::Pending => panic!("the delivery is still pending after the step finished"),
    }
    drop(delivery);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The result is journaled, and the workflow waits for it to be stored before it goes on.
    assert!(run.run.checkpoint_wanted());
    assert_eq!(
        types(&run.run.uncommitted_events()),
        vec!["workflow_started", "step_started", "step_completed"]
    );
    block_on(run.run.resume());
    assert!(!run.run.checkpoint_wanted());
    let journal = run.run.uncommitted_events();
    assert_eq!(
        kinds(&journal[1..3]),
        vec![
            EventKind::StepStarted {
                op: op("0"),
                name: "slow".into(),
                attempt: 1,
            },
            EventKind::StepCompleted {
                op: op("0"),
                output: p(&3u32)
            },
        ]
    );
    assert_eq!(types(&journal[3..]), vec!["activity_scheduled"]);
    let mut run = Driver::resume("step-7", wf.clone(), journal);
    assert!(run.deliver(activity_completed("1", &4u32)));
    assert_eq!(run.output::<u32>(), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn a_step_beside_an_activity_replays_cleanly() {
    let calls = Arc::new(AtomicUsize::new(0));
    let wf = {
        let calls = calls.clone();
        workflow_fn(move |ctx: WorkflowContext, _: ()| {
            let calls = calls.clone();
            async move {
                let step = ctx.step("s", move |_| {
                    let calls = calls.clone();
                    async move {
                        Ok::<_, ActivityError>(calls.fetch_add(1, Ordering::SeqCst) as u32 + 1)
                    }
                });
                let act = std::future::IntoFuture::into_future(ctx.activity::<u32>("a", &()));
                let (s, a) = futures::future::try_join(step, act).await?;
                Ok::<_, WorkflowError>((s, a))
            }
        })
    };
    let mut run = Driver::start("step-8", wf.clone(), &());
    // The step's result is journaled once the workflow waits, after what the other branch asked
    // for in the same turn: where replay delivers it.
    assert_eq!(
        types(&run.journal),
        vec![
            "workflow_started",
            "step_started",
            "activity_scheduled",
            "step_completed"
        ]
    );
    assert!(run.deliver(activity_completed("1", &5u32)));
    assert_eq!(run.output::<(u32, u32)>(), (1, 5));
    let report = run.check();
    assert_clean_replay(&report, run.outcome().unwrap());
    let resumed = Driver::resume("step-8", wf.clone(), run.journal.clone());
    assert_eq!(resumed.outcome(), run.outcome());
    // Every prefix replays to what the live run did next.
    for k in 1..=run.journal.len() {
        let report = check_replay(wf.clone(), "step-8", 1, run.journal[..k].to_vec());
        let end = (k..run.journal.len())
            .find(|&i| !run.journal[i].kind.is_issued())
            .unwrap_or(run.journal.len());
        assert_eq!(
            kinds(&report.new_events),
            kinds(&run.journal[k..end]),
            "prefix of {k}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_branch_that_reads_workflow_time_beside_a_step_replays_cleanly() {
    // The second branch starts a timer relative to ctx.now() on its first poll, which comes after
    // the step ran: the step's result must not move workflow time under it.
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let step = ctx.step("s", |_| async { Ok::<_, ActivityError>(1u32) });
        let timer = async {
            ctx.sleep(std::time::Duration::from_secs(60)).await?;
            Ok::<_, WorkflowError>(ctx.now())
        };
        let (s, woke) = futures::future::try_join(step, timer).await?;
        Ok::<_, WorkflowError>((s, woke))
    });
    let mut run = Driver::start("step-9", wf.clone(), &());
    let start = run.journal[0].at;
    run.clock.advance(5_000);
    let issued = run.take_new_issued();
    assert!(issued.contains(&EventKind::TimerCreated {
        op: op("1"),
        fire_at: start.plus(std::time::Duration::from_secs(60)),
    }));
    assert!(run.deliver(timer_fired("1")));
    assert!(matches!(run.outcome(), Some(Outcome::Completed(_))));
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

#[test]
fn two_concurrent_steps_replay_cleanly() {
    let calls = Arc::new(AtomicUsize::new(0));
    let wf = {
        let calls = calls.clone();
        workflow_fn(move |ctx: WorkflowContext, _: ()| {
            let (c1, c2) = (calls.clone(), calls.clone());
            async move {
                let a = ctx.step("a", move |_| {
                    let c1 = c1.clone();
                    async move {
                        c1.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ActivityError>(1u32)
                    }
                });
                let b = ctx.step("b", move |_| {
                    let c2 = c2.clone();
                    async move {
                        c2.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ActivityError>(2u32)
                    }
                });
                let (a, b) = futures::future::try_join(a, b).await?;
                let c: u32 = ctx.activity("sum", &(a + b)).await?;
                Ok::<_, WorkflowError>(c)
            }
        })
    };
    let mut run = Driver::start("step-10", wf.clone(), &());
    assert_eq!(
        types(&run.journal),
        vec![
            "workflow_started",
            "step_started",
            "step_started",
            "step_completed",
            "step_completed",
            "activity_scheduled"
        ]
    );
    assert!(run.deliver(activity_completed("2", &3u32)));
    assert_eq!(run.output::<u32>(), 3);
    assert_clean_replay(&run.check(), run.outcome().unwrap());
    let resumed = Driver::resume("step-10", wf, run.journal.clone());
    assert_eq!(resumed.outcome(), run.outcome());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn the_result_of_a_step_that_lost_a_select_is_not_journaled() {
    let calls = Arc::new(AtomicUsize::new(0));
    let wf = {
        let calls = calls.clone();
        workflow_fn(move |ctx: WorkflowContext, _: ()| {
            let calls = calls.clone();
            async move {
                let _: () = ctx.activity("first", &()).await?;
                let buffered = ctx.wait_for_event::<u32>("x");
                let step = ctx.step("s", move |_| {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ActivityError>(0u32)
                    }
                });
                // The event is already buffered, so the wait (polled second) wins in the same
                // poll in which the step finished.
                let won = match ctx.select(step, buffered).await {
                    futures::future::Either::Left(s) => format!("step {}", s?),
                    futures::future::Either::Right(e) => format!("event {}", e?),
                };
                let _: () = ctx.activity("after", &won).await?;
                Ok::<_, WorkflowError>(won)
            }
        })
    };
    let mut run = Driver::start("step-11", wf.clone(), &());
    assert!(run.deliver(event_raised("x", &9u32)));
    assert!(run.deliver(activity_completed("0", &())));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        types(&run.journal[3..]),
        vec![
            "activity_completed",
            "step_started",
            "event_wait_started",
            "activity_scheduled"
        ]
    );
    // The step (op 1) was abandoned: a result for it is refused too.
    assert!(!run.run.wants(&EventKind::StepCompleted {
        op: op("1"),
        output: p(&0u32)
    }));
    assert!(run.deliver(activity_completed("3", &())));
    assert_eq!(run.output::<String>(), "event 9");
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}

/// A step whose code panics: before returning its future (`early`) or while it runs.
fn panicking_step(calls: Arc<AtomicUsize>, early: bool) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, _: ()| {
        let calls = calls.clone();
        async move {
            let result: Result<u32, WorkflowError> = ctx
                .step("explode", move |_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    if early {
                        panic!("step blew up early");
                    }
                    async move {
                        if !early {
                            panic!("step blew up while running");
                        }
                        Ok::<_, ActivityError>(1)
                    }
                })
                .await;
            let failure = match result {
                Err(WorkflowError::Step(f)) => f,
                other => panic!("expected a step failure, got {other:?}"),
            };
            let _: () = ctx.activity("after", &failure.message).await?;
            Ok::<_, WorkflowError>(failure)
        }
    })
}

#[test]
fn a_panicking_step_fails_as_a_step_and_its_journal_replays() {
    for (early, text) in [
        (true, "step blew up early"),
        (false, "step blew up while running"),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut run = Driver::start("step-12", panicking_step(calls.clone(), early), &());
        assert_eq!(
            types(&run.journal),
            vec![
                "workflow_started",
                "step_started",
                "step_failed",
                "activity_scheduled"
            ]
        );
        assert!(run.deliver(activity_completed("1", &())));
        let failure: duraflow_core::Failure = run.output();
        assert_eq!(failure.kind, FailureKind::Panic);
        assert_eq!(
            failure.message,
            format!("step \"explode\" panicked: {text}")
        );
        assert_eq!(failure.source.as_deref(), Some("step \"explode\""));
        assert_eq!(failure.op, Some(op("0")));
        // The checker and a new live run read the failure back without running the step.
        assert_clean_replay(&run.check(), run.outcome().unwrap());
        let resumed = Driver::resume(
            "step-12",
            panicking_step(calls.clone(), early),
            run.journal.clone(),
        );
        assert_eq!(resumed.outcome(), run.outcome());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
