//! The replay machine never panics and never hangs on a journal: valid journals of a few
//! workflow shapes, randomly mutated (events reordered, dropped, duplicated, inserted, operation
//! ids and names changed, completions of the wrong kind...), replay to an outcome, to a clear
//! nondeterminism failure naming the journal position, or to a run waiting for more.
//!
//! The case count is proptest's (`PROPTEST_CASES`, 256 by default); run many more with
//! `PROPTEST_CASES=20000 cargo test -p duraflow-core --test replay_props`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::arb;
use common::*;
use duraflow_core::{
    check_replay, workflow_fn, Event, EventKind, Failure, FailureKind, OpId, Outcome, Timestamp,
    WorkflowContext, WorkflowError, WorkflowFn, WorkflowRun,
};
use futures::future::Either;
use futures::FutureExt;
use proptest::prelude::*;

/// Every kind of operation, one after the other.
fn sequence() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, n: u32| async move {
        let a: serde_json::Value = ctx.activity("a", &n).await?;
        ctx.sleep(Duration::from_secs(10)).await?;
        let go: String = ctx.wait_for_event("go").await?;
        let child: serde_json::Value = ctx.child_workflow("child", &n).await?;
        let s: u32 = ctx.step("s", |_| async { Ok(7u32) }).await?;
        Ok::<_, WorkflowError>((a, go, child, s))
    })
}

/// A timer racing an event, then an activity and another wait.
fn race() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: u32| async move {
        let winner = match ctx
            .select(
                ctx.sleep(Duration::from_secs(30)),
                ctx.wait_for_event::<String>("go"),
            )
            .await
        {
            Either::Left(fired) => fired.map(|_| "timer".to_owned())?,
            Either::Right(event) => event?,
        };
        let _: serde_json::Value = ctx.activity("b", &winner).await?;
        let next: String = ctx.wait_for_event("go").await?;
        Ok::<_, WorkflowError>((winner, next))
    })
}

/// Three activities at once, then a detached child and a wait with a timeout.
fn fan_out() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: u32| async move {
        let all: Vec<serde_json::Value> = ctx
            .join_all(["a", "b", "c"].map(|name| ctx.activity(name, &name)))
            .await?;
        let id = ctx.start_child("child", &()).await?;
        let late = ctx
            .wait_for_event::<String>("x")
            .timeout(Duration::from_secs(5))
            .await
            .ok();
        Ok::<_, WorkflowError>((all, id, late))
    })
}

/// An activity, then continue-as-new once.
fn continues() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, n: u32| async move {
        let _: serde_json::Value = ctx.activity("a", &n).await?;
        if n == 0 {
            return ctx.continue_as_new(&(n + 1)).await;
        }
        Ok::<_, WorkflowError>(n)
    })
}

fn shape(i: usize) -> WorkflowFn {
    match i % 4 {
        0 => sequence(),
        1 => race(),
        2 => fan_out(),
        _ => continues(),
    }
}

/// What the environment does next while a valid journal is being recorded.
#[derive(Clone, Debug)]
enum Step {
    /// Answers the `n`th pending operation with its normal completion.
    Answer(usize),
    /// Fails the `n`th pending operation.
    Fail(usize),
    /// Raises an external event.
    Raise(&'static str),
    /// Cancels the run.
    Cancel,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => any::<usize>().prop_map(Step::Answer),
        1 => any::<usize>().prop_map(Step::Fail),
        2 => prop::sample::select(vec!["go", "x", "other"]).prop_map(Step::Raise),
        1 => Just(Step::Cancel),
    ]
}

fn failed(kind: &EventKind) -> Option<EventKind> {
    let failure = |op: &OpId| Failure::new(FailureKind::Application, "no").at("it", op);
    match kind {
        EventKind::ActivityScheduled { op, .. } => Some(EventKind::ActivityFailed {
            op: op.clone(),
            failure: Box::new(failure(op)),
        }),
        EventKind::ChildStarted {
            op,
            detached: false,
            ..
        } => Some(EventKind::ChildFailed {
            op: op.clone(),
            failure: Box::new(failure(op)),
        }),
        other => auto_complete(other),
    }
}

/// Records a valid journal: a live run of `workflow` driven by `steps`.
fn record(workflow: WorkflowFn, steps: &[Step]) -> (Vec<Event>, Option<Outcome>) {
    let mut run = Driver::start("prop", workflow, &0u32);
    let mut pending: Vec<EventKind> = Vec::new();
    for step in steps {
        pending.extend(run.take_new_issued());
        if run.outcome().is_some() {
            break;
        }
        let kind = match step {
            Step::Answer(n) | Step::Fail(n) if !pending.is_empty() => {
                let issued = pending.remove(n % pending.len());
                let answer = if matches!(step, Step::Fail(_)) {
                    failed(&issued)
                } else {
                    auto_complete(&issued)
                };
                let Some(answer) = answer else { continue };
                answer
            }
            Step::Answer(_) | Step::Fail(_) => continue,
            Step::Raise(name) => event_raised(name, &format!("{name}-data")),
            Step::Cancel => EventKind::CancelRequested {
                reason: "stop".into(),
            },
        };
        run.deliver(kind);
    }
    (run.journal.clone(), run.outcome().cloned())
}

/// A change to a recorded journal.
#[derive(Clone, Debug)]
enum Mutation {
    Swap(usize, usize),
    Move(usize, usize),
    Drop(usize),
    Duplicate(usize, usize),
    ChangeOp(usize, OpId),
    ChangeName(usize, String),
    OtherKind(usize, usize),
    Insert(usize, EventKind),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<usize>();
    prop_oneof![
        (i, i).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (i, i).prop_map(|(a, b)| Mutation::Move(a, b)),
        i.prop_map(Mutation::Drop),
        (i, i).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        (i, arb::op_id()).prop_map(|(a, op)| Mutation::ChangeOp(a, op)),
        (i, arb::name()).prop_map(|(a, n)| Mutation::ChangeName(a, n)),
        (i, i).prop_map(|(a, k)| Mutation::OtherKind(a, k)),
        (i, arb::event_kind()).prop_map(|(a, k)| Mutation::Insert(a, k)),
        i.prop_map(Mutation::Truncate),
    ]
}

fn op_of(kind: &mut EventKind) -> Option<&mut OpId> {
    match kind {
        EventKind::ActivityScheduled { op, .. }
        | EventKind::ActivityCompleted { op, .. }
        | EventKind::ActivityFailed { op, .. }
        | EventKind::TimerCreated { op, .. }
        | EventKind::TimerFired { op }
        | EventKind::StepStarted { op, .. }
        | EventKind::StepCompleted { op, .. }
        | EventKind::StepFailed { op, .. }
        | EventKind::EventWaitStarted { op, .. }
        | EventKind::ChildStarted { op, .. }
        | EventKind::ChildCompleted { op, .. }
        | EventKind::ChildFailed { op, .. } => Some(op),
        _ => None,
    }
}

fn name_of(kind: &mut EventKind) -> Option<&mut String> {
    match kind {
        EventKind::WorkflowStarted { name, .. }
        | EventKind::ActivityScheduled { name, .. }
        | EventKind::StepStarted { name, .. }
        | EventKind::EventWaitStarted { name, .. }
        | EventKind::EventRaised { name, .. }
        | EventKind::ChildStarted { name, .. } => Some(name),
        _ => None,
    }
}

/// The same operation as another kind of event of the same sort (a completion stays a
/// completion, an issued event stays issued), keeping its operation id and name.
fn other_kind(kind: &EventKind, k: usize) -> Option<EventKind> {
    let mut probe = kind.clone();
    let op = op_of(&mut probe)?.clone();
    let name = name_of(&mut probe).cloned().unwrap_or_else(|| "a".into());
    let output = p(&1);
    let failure = Failure::new(FailureKind::Application, "wrong kind");
    let options = Default::default();
    let mut kinds = if kind.is_issued() {
        vec![
            EventKind::ActivityScheduled {
                op: op.clone(),
                name: name.clone(),
                input: p(&0),
                options,
            },
            EventKind::TimerCreated {
                op: op.clone(),
                fire_at: Timestamp(1),
            },
            EventKind::StepStarted {
                op: op.clone(),
                name: name.clone(),
                attempt: 1,
            },
            EventKind::EventWaitStarted {
                op: op.clone(),
                name: name.clone(),
            },
            EventKind::ChildStarted {
                op: op.clone(),
                name: name.clone(),
                instance_id: "c".into(),
                input: p(&0),
                detached: false,
                queue: None,
            },
        ]
    } else {
        vec![
            EventKind::ActivityCompleted {
                op: op.clone(),
                output: output.clone(),
            },
            EventKind::ActivityFailed {
                op: op.clone(),
                failure: Box::new(failure.clone()),
            },
            EventKind::TimerFired { op: op.clone() },
            EventKind::StepCompleted {
                op: op.clone(),
                output: output.clone(),
            },
            EventKind::StepFailed {
                op: op.clone(),
                failure: Box::new(failure.clone()),
            },
            EventKind::ChildCompleted {
                op: op.clone(),
                output,
            },
            EventKind::ChildFailed {
                op,
                failure: Box::new(failure),
            },
        ]
    };
    kinds.retain(|c| c.type_name() != kind.type_name());
    let n = kinds.len();
    Some(kinds.swap_remove(k % n))
}

fn mutate(journal: &mut Vec<Event>, m: &Mutation) {
    let len = journal.len();
    if len == 0 {
        if let Mutation::Insert(_, kind) = m {
            journal.push(Event {
                at: Timestamp(1),
                kind: kind.clone(),
            });
        }
        return;
    }
    match m {
        Mutation::Swap(a, b) => journal.swap(a % len, b % len),
        Mutation::Move(a, b) => {
            let ev = journal.remove(a % len);
            journal.insert(b % len, ev);
        }
        Mutation::Drop(a) => {
            journal.remove(a % len);
        }
        Mutation::Duplicate(a, b) => {
            let ev = journal[a % len].clone();
            journal.insert(b % (len + 1), ev);
        }
        Mutation::ChangeOp(a, op) => {
            if let Some(o) = op_of(&mut journal[a % len].kind) {
                *o = op.clone();
            }
        }
        Mutation::ChangeName(a, name) => {
            if let Some(n) = name_of(&mut journal[a % len].kind) {
                *n = name.clone();
            }
        }
        Mutation::OtherKind(a, k) => {
            if let Some(kind) = other_kind(&journal[a % len].kind, *k) {
                journal[a % len].kind = kind;
            }
        }
        Mutation::Insert(a, kind) => {
            let at = journal[a % len].at;
            journal.insert(
                a % (len + 1),
                Event {
                    at,
                    kind: kind.clone(),
                },
            );
        }
        Mutation::Truncate(a) => journal.truncate(a % len),
    }
}

/// The terminal event type an outcome needs in the journal it was replayed from.
fn terminal_type(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed(_) => "workflow_completed",
        Outcome::Failed(_) => "workflow_failed",
        Outcome::ContinuedAsNew { .. } => "continued_as_new",
        Outcome::Cancelled(_) => "cancel_requested",
        Outcome::Terminated(_) => "terminate_requested",
    }
}

/// Replays `journal` with a checker and with a live run, and checks that each ends in one of
/// the three ways a replay may end, with nothing hidden.
fn replay_ends_clearly(workflow: &WorkflowFn, journal: &[Event], deliveries: &[EventKind]) {
    // `check_replay` reaches an `unreachable!` if the replay ever waits: a hang is a panic here.
    let report = check_replay(workflow.clone(), "prop", 1, journal.to_vec());
    // The replay's own mismatch, told apart from a recorded failure that merely has the kind
    // `nondeterminism` (a random journal can hand one to the code, which passes it on).
    let mismatch = failed_at(&report);
    match (&report.outcome, mismatch) {
        (_, Some(position)) => {
            // A mismatch names its position, and nothing but the failure is issued.
            assert!(position < journal.len(), "{position} of {}", journal.len());
            assert_eq!(types(&report.new_events), ["workflow_failed"]);
        }
        (Some(outcome), None) if report.new_events.is_empty() => {
            // An outcome read back from the journal is one the journal records.
            let wanted = terminal_type(outcome);
            assert!(
                journal.iter().any(|e| e.kind.type_name() == wanted),
                "{outcome:?} without {wanted} in {:?}",
                types(journal)
            );
        }
        (Some(outcome), None) => {
            // The journal ended before the workflow did: the checker wrote on past it.
            assert!(report.new_events.iter().all(|e| e.kind.is_issued()));
            assert_eq!(
                report.new_events.last().map(|e| e.kind.type_name()),
                Some(terminal_type(outcome))
            );
        }
        (None, None) => {
            // The run waits for a delivery; what it issued past the journal it still waits on.
            assert!(report
                .new_events
                .iter()
                .all(|e| e.kind.is_issued() && !e.kind.is_terminal()));
        }
    }

    // A live run of the same journal, then a few more deliveries, each finishing at once.
    let clock = TestClock::new(1_000_000);
    let mut run = WorkflowRun::live("prop", 1, journal.to_vec(), workflow.clone(), clock);
    assert!(run.replay().now_or_never().is_some(), "live replay waits");
    if mismatch.is_some() {
        // Both replay the recorded part alike; only past it does a live run differ (it runs
        // steps).
        assert_eq!(run.outcome(), report.outcome.as_ref());
    }
    for kind in deliveries {
        if run.checkpoint_wanted() {
            // As a driver must (see `WorkflowRun::checkpoint_wanted`): the journal so far is
            // stored, then the run goes on, and only then is the next delivery offered. Offered
            // before, it is judged by a run that has not gone on yet.
            drop(run.mark_committed());
            assert!(run.resume().now_or_never().is_some(), "a resume waits");
        }
        let ended = run.outcome().is_some();
        let wanted = run.wants(kind);
        let accepted = run
            .deliver(clock_at(&run), kind.clone())
            .now_or_never()
            .expect("a delivery waits");
        assert_eq!(accepted, wanted);
        assert!(!(ended && accepted), "a finished run accepted {kind:?}");
    }
}

fn clock_at(run: &WorkflowRun) -> Timestamp {
    Timestamp(run.now().0.saturating_add(1))
}

proptest! {
    #[test]
    fn recorded_journals_replay_cleanly(which in 0usize..4, steps in prop::collection::vec(step(), 0..24)) {
        let workflow = shape(which);
        let (journal, outcome) = record(workflow.clone(), &steps);
        // Every shape starts and issues work with the input it is given.
        prop_assert!(journal.len() > 2 || outcome.is_none(), "{:?}", outcome);
        let report = check_replay(workflow.clone(), "prop", 1, journal.clone());
        prop_assert!(report.new_events.is_empty(), "{:?}", report.new_events);
        prop_assert_eq!(report.outcome.clone(), outcome);
        replay_ends_clearly(&workflow, &journal, &[]);
    }

    #[test]
    fn mutated_journals_replay_to_an_outcome_or_a_clear_failure(
        which in 0usize..4,
        steps in prop::collection::vec(step(), 0..24),
        mutations in prop::collection::vec(mutation(), 1..5),
        deliveries in prop::collection::vec(arb::event_kind(), 0..4),
    ) {
        let workflow = shape(which);
        let (mut journal, _) = record(workflow.clone(), &steps);
        for m in &mutations {
            mutate(&mut journal, m);
        }
        replay_ends_clearly(&workflow, &journal, &deliveries);
    }

    #[test]
    fn random_journals_replay_to_an_outcome_or_a_clear_failure(
        which in 0usize..4,
        journal in prop::collection::vec(arb::event(), 0..12),
        deliveries in prop::collection::vec(arb::event_kind(), 0..4),
    ) {
        replay_ends_clearly(&shape(which), &journal, &deliveries);
    }
}

/// The positions of the completions (delivered events answering an operation) in a journal.
fn completions(journal: &[Event]) -> Vec<usize> {
    journal
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.kind.is_issued() && e.kind.op().is_some())
        .map(|(i, _)| i)
        .collect()
}

/// A journal recorded by shape `which` after answering its first operation and then `steps`
/// (so that every shape has a completion to work on), with the position of one of its
/// completions, picked by `pick`.
fn with_a_completion(which: usize, steps: &[Step], pick: usize) -> (WorkflowFn, Vec<Event>, usize) {
    let workflow = shape(which);
    let steps = [&[Step::Answer(0)][..], steps].concat();
    let (journal, _) = record(workflow.clone(), &steps);
    let found = completions(&journal);
    assert!(!found.is_empty(), "{:?}", types(&journal));
    let i = found[pick % found.len()];
    (workflow, journal, i)
}

/// The position a nondeterminism failure names.
fn failed_at(report: &duraflow_core::ReplayReport) -> Option<usize> {
    report
        .nondeterminism()?
        .message
        .strip_prefix("at journal position ")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

proptest! {
    #[test]
    fn a_completion_of_the_wrong_kind_fails_replay_at_its_position(
        which in 0usize..4,
        steps in prop::collection::vec(step(), 0..24),
        pick in any::<usize>(),
        k in any::<usize>(),
    ) {
        let (workflow, mut journal, i) = with_a_completion(which, &steps, pick);
        // A completion of another primitive (`activity_failed` for `activity_completed` is
        // still a result the operation takes).
        let mut k = k;
        let other = loop {
            let other = other_kind(&journal[i].kind, k).unwrap();
            if other.completes() != journal[i].kind.completes() {
                break other;
            }
            k += 1;
        };
        journal[i].kind = other;
        let report = check_replay(workflow, "prop", 1, journal.clone());
        prop_assert_eq!(failed_at(&report), Some(i), "{:?}", report.outcome);
    }

    #[test]
    fn a_duplicated_completion_fails_replay_at_the_copy(
        which in 0usize..4,
        steps in prop::collection::vec(step(), 0..24),
        pick in any::<usize>(),
        later in any::<usize>(),
    ) {
        let (workflow, mut journal, i) = with_a_completion(which, &steps, pick);
        // The copy goes anywhere after the original and before the last event (which may end
        // the run, and replay reads nothing after the end).
        let len = journal.len();
        let j = if i + 1 >= len { len } else { i + 1 + later % (len - i - 1) };
        let copy = journal[i].clone();
        journal.insert(j, copy);
        let report = check_replay(workflow, "prop", 1, journal.clone());
        prop_assert_eq!(failed_at(&report), Some(j), "{:?}", report.outcome);
    }
}

/// Found by 20,000 cases of `mutated_journals_replay_to_an_outcome_or_a_clear_failure` (a test
/// error, not a library one): a recorded activity failure whose kind is `nondeterminism` fails
/// the workflow with that failure, which is not a mismatch of the replay and names no position.
#[test]
fn a_recorded_failure_of_kind_nondeterminism_is_passed_on_as_it_is() {
    let mut run = Driver::start("nd-kind", race(), &0u32);
    assert!(run.deliver(timer_fired("0")));
    let mut journal = run.journal.clone();
    journal.push(Event {
        at: Timestamp(9),
        kind: EventKind::ActivityFailed {
            op: op("2"),
            failure: Box::new(Failure::new(FailureKind::Nondeterminism, "")),
        },
    });
    let report = check_replay(race(), "nd-kind", 1, journal.clone());
    assert_eq!(failed_at(&report), None);
    assert_eq!(types(&report.new_events), ["workflow_failed"]);
    replay_ends_clearly(&race(), &journal, &[]);
}

/// Found reading the replay loop while writing these properties (the property
/// `a_completion_of_the_wrong_kind_fails_replay_at_its_position` fails without the fix): a
/// recorded timer firing for an operation the code issued as an activity was handed to the
/// activity, which read `null` as its output and went on. Replay now refuses a recorded delivery the run would not
/// take live, at its position.
#[test]
fn a_recorded_timer_firing_is_not_an_activity_result() {
    let journal = vec![
        Event {
            at: Timestamp(1),
            kind: started(&0u32),
        },
        Event {
            at: Timestamp(1),
            kind: EventKind::ActivityScheduled {
                op: op("0"),
                name: "a".into(),
                input: p(&0u32),
                options: Default::default(),
            },
        },
        Event {
            at: Timestamp(2),
            kind: timer_fired("0"),
        },
    ];
    let report = check_replay(sequence(), "wrong-kind", 1, journal);
    let failure = nondeterminism(&report);
    assert_eq!(
        failure.message,
        "at journal position 2: the journal recorded timer_fired (op 0) but the workflow code \
         issued operation 0 as activity_scheduled, which takes no timer_fired while scheduled; \
         the code changed in a way that is not compatible with running instances"
    );
    assert_eq!(failure.code.as_deref(), Some("DF1004"));
    assert_eq!(failure.op, Some(op("0")));
}

/// A recorded duplicate of a completion among other completions used to be dropped silently
/// on replay (only an issued event right after it showed the mismatch); now it is refused at
/// its position.
#[test]
fn a_recorded_duplicate_between_completions_fails_replay() {
    let mut run = Driver::start("dup", fan_out(), &0u32);
    let issued = run.take_new_issued();
    assert_eq!(issued.len(), 3, "{issued:?}");
    let answers: Vec<EventKind> = issued.iter().filter_map(auto_complete).collect();
    for answer in &answers {
        assert!(run.deliver(answer.clone()));
    }
    let mut journal = run.journal.clone();
    let copy_at = 5;
    assert_eq!(journal[copy_at - 1].kind, answers[0]);
    journal.insert(copy_at, journal[copy_at - 1].clone());
    let report = check_replay(fan_out(), "dup", 1, journal);
    assert_eq!(failed_at(&report), Some(copy_at));
    assert!(nondeterminism(&report)
        .message
        .contains("has no operation 0 waiting for a result"));
}

/// A second `workflow_started` in a journal used to start the workflow again over the same
/// state; now it is refused at its position.
#[test]
fn a_second_recorded_start_fails_replay_at_its_position() {
    let mut run = Driver::start("twice", race(), &0u32);
    run.deliver(event_raised("go", &"g1"));
    let mut journal = run.journal.clone();
    let at = journal.len();
    journal.push(Event {
        at: Timestamp(5),
        kind: started(&0u32),
    });
    let report = check_replay(race(), "twice", 1, journal);
    assert_eq!(failed_at(&report), Some(at));
    assert!(nondeterminism(&report)
        .message
        .contains("had already started (an execution starts once)"));
}

/// An external event sent while the previous execution continued as new can reach the next
/// execution before its start message; the start is still taken (the run used to refuse any
/// start once its journal held an event, leaving the execution unstarted for good), the event
/// waits in the buffer, and replay agrees.
#[test]
fn a_start_delivered_after_an_external_event_still_starts_the_run() {
    let mut run = Driver::new("late-start", race());
    assert!(run.deliver(event_raised("go", &"early")));
    assert!(run.deliver(started(&0u32)));
    assert!(!run.deliver(started(&0u32)), "an execution starts once");
    // The race took the buffered event at once: the activity is scheduled with the winner.
    let issued = run.take_new_issued();
    assert_eq!(
        issued.iter().map(EventKind::type_name).collect::<Vec<_>>(),
        ["timer_created", "event_wait_started", "activity_scheduled"]
    );
    assert_eq!(
        types(&run.journal),
        [
            "event_raised",
            "workflow_started",
            "timer_created",
            "event_wait_started",
            "activity_scheduled"
        ]
    );
    let report = run.check();
    assert!(report.new_events.is_empty(), "{:?}", report.new_events);
    assert!(report.outcome.is_none());
}
