//! Shared helpers for the replay-machine tests: a settable clock, a driver for live runs and
//! small constructors for journal events. Nothing here does I/O.

#![allow(dead_code)]

pub(crate) mod arb;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use duraflow_core::{
    check_replay, Clock, Event, EventKind, Failure, FailureKind, OpId, Outcome, Payload,
    ReplayReport, Sleep, Timestamp, WorkflowFn, WorkflowRun,
};
use futures::executor::block_on;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The name every test workflow is started under.
pub(crate) const WF: &str = "test-workflow";

/// A clock that only moves when told to.
#[derive(Debug)]
pub(crate) struct TestClock(AtomicI64);

impl TestClock {
    pub(crate) fn new(ms: i64) -> Arc<Self> {
        Arc::new(TestClock(AtomicI64::new(ms)))
    }

    pub(crate) fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub(crate) fn advance(&self, ms: i64) -> Timestamp {
        Timestamp(self.0.fetch_add(ms, Ordering::SeqCst) + ms)
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, _deadline: Timestamp) -> Sleep {
        // The core never sleeps; a future that never resolves makes any use of it obvious.
        Box::pin(futures::future::pending())
    }
}

/// Encodes a value as a payload.
pub(crate) fn p<T: Serialize + ?Sized>(v: &T) -> Payload {
    Payload::encode(v).unwrap()
}

/// Decodes a payload.
pub(crate) fn d<T: DeserializeOwned>(p: &Payload) -> T {
    p.decode().unwrap()
}

/// An operation id from its written form (`"3"`, `"3.1"`).
pub(crate) fn op(s: &str) -> OpId {
    s.parse().unwrap()
}

pub(crate) fn started<T: Serialize + ?Sized>(input: &T) -> EventKind {
    EventKind::WorkflowStarted {
        name: WF.to_owned(),
        input: p(input),
        parent: None,
        headers: Default::default(),
        retry: None,
        version: None,
    }
}

pub(crate) fn activity_completed<T: Serialize + ?Sized>(op_id: &str, output: &T) -> EventKind {
    EventKind::ActivityCompleted {
        op: op(op_id),
        output: p(output),
    }
}

pub(crate) fn activity_failed(op_id: &str, message: &str) -> EventKind {
    EventKind::ActivityFailed {
        op: op(op_id),
        failure: Box::new(
            Failure::new(FailureKind::ActivityTerminal, message).at("activity", &op(op_id)),
        ),
    }
}

pub(crate) fn timer_fired(op_id: &str) -> EventKind {
    EventKind::TimerFired { op: op(op_id) }
}

pub(crate) fn event_raised<T: Serialize + ?Sized>(name: &str, data: &T) -> EventKind {
    EventKind::EventRaised {
        name: name.to_owned(),
        data: p(data),
        taken_by: None,
    }
}

pub(crate) fn child_completed<T: Serialize + ?Sized>(op_id: &str, output: &T) -> EventKind {
    EventKind::ChildCompleted {
        op: op(op_id),
        output: p(output),
    }
}

/// A live run plus its whole journal, driven one delivery at a time.
pub(crate) struct Driver {
    pub(crate) run: WorkflowRun,
    pub(crate) clock: Arc<TestClock>,
    pub(crate) instance_id: String,
    pub(crate) workflow: WorkflowFn,
    /// Every event of the execution: the journal the run started from plus all it appended.
    pub(crate) journal: Vec<Event>,
    /// How many events of `journal` the test has looked at with [`Driver::take_new`].
    seen: usize,
}

impl Driver {
    /// A live run over an empty journal; nothing delivered yet.
    pub(crate) fn new(instance_id: &str, workflow: WorkflowFn) -> Self {
        Self::resume(instance_id, workflow, Vec::new())
    }

    /// A live run over a recorded journal; the journal is replayed at once.
    pub(crate) fn resume(instance_id: &str, workflow: WorkflowFn, journal: Vec<Event>) -> Self {
        let clock = TestClock::new(journal.last().map(|e| e.at.0).unwrap_or(1_000) + 1_000);
        let mut run = WorkflowRun::live(
            instance_id,
            1,
            journal.clone(),
            workflow.clone(),
            clock.clone(),
        );
        block_on(run.replay());
        let seen = journal.len();
        let mut driver = Driver {
            run,
            clock,
            instance_id: instance_id.to_owned(),
            workflow,
            journal,
            seen,
        };
        driver.sync();
        driver
    }

    /// A live run started with `input`.
    pub(crate) fn start<T: Serialize + ?Sized>(
        instance_id: &str,
        workflow: WorkflowFn,
        input: &T,
    ) -> Self {
        let mut driver = Self::new(instance_id, workflow);
        assert!(driver.deliver(started(input)), "WorkflowStarted refused");
        driver
    }

    /// Copies what the run appended into `journal` and marks it committed, taking every
    /// checkpoint the run asks for (as the engine commits them) until the workflow waits.
    fn sync(&mut self) {
        loop {
            self.journal.extend(self.run.uncommitted_events());
            self.run.mark_committed();
            if !self.run.checkpoint_wanted() {
                break;
            }
            block_on(self.run.resume());
        }
    }

    /// Delivers an event one second of engine time after the previous one. Returns whether the
    /// run accepted it.
    pub(crate) fn deliver(&mut self, kind: EventKind) -> bool {
        let at = self.clock.advance(1_000);
        let accepted = block_on(self.run.deliver(at, kind));
        self.sync();
        accepted
    }

    /// The events appended since the last call (or since the run was created).
    pub(crate) fn take_new(&mut self) -> Vec<Event> {
        let new = self.journal[self.seen..].to_vec();
        self.seen = self.journal.len();
        new
    }

    /// The issued events appended since the last call to `take_new`.
    pub(crate) fn take_new_issued(&mut self) -> Vec<EventKind> {
        self.take_new()
            .into_iter()
            .map(|e| e.kind)
            .filter(EventKind::is_issued)
            .collect()
    }

    pub(crate) fn outcome(&self) -> Option<&Outcome> {
        self.run.outcome()
    }

    /// The output of a completed run.
    pub(crate) fn output<T: DeserializeOwned>(&self) -> T {
        match self.outcome() {
            Some(Outcome::Completed(p)) => d(p),
            other => panic!("expected a completed run, got {other:?}"),
        }
    }

    /// The failure of a failed run.
    pub(crate) fn failure(&self) -> Failure {
        match self.outcome() {
            Some(Outcome::Failed(f)) => f.clone(),
            other => panic!("expected a failed run, got {other:?}"),
        }
    }

    /// Replays the journal so far with a checker.
    pub(crate) fn check(&self) -> ReplayReport {
        check_replay(
            self.workflow.clone(),
            &self.instance_id,
            1,
            self.journal.clone(),
        )
    }
}

/// The kinds of a list of events.
pub(crate) fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind.clone()).collect()
}

/// The type names of a list of events (`activity_scheduled`, ...).
pub(crate) fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.type_name()).collect()
}

/// The nondeterminism failure of a replay report, or a panic naming what it found instead.
pub(crate) fn nondeterminism(report: &ReplayReport) -> Failure {
    match report.nondeterminism() {
        Some(f) => f.clone(),
        None => panic!(
            "expected a nondeterminism failure, got {:?}",
            report.outcome
        ),
    }
}

/// Asserts that a replay report is a clean replay ending with `expected`.
pub(crate) fn assert_clean_replay(report: &ReplayReport, expected: &Outcome) {
    assert!(
        report.new_events.is_empty(),
        "replay issued new events: {:?}",
        report.new_events
    );
    assert_eq!(report.outcome.as_ref(), Some(expected));
}

/// The completion a test environment would send back for an issued event: activities and
/// children echo `{"name": .., "input": ..}`, timers fire, event waits get `"<name>-data"`.
pub(crate) fn auto_complete(kind: &EventKind) -> Option<EventKind> {
    match kind {
        EventKind::ActivityScheduled {
            op, name, input, ..
        } => Some(EventKind::ActivityCompleted {
            op: op.clone(),
            output: p(&serde_json::json!({ "name": name, "input": d::<serde_json::Value>(input) })),
        }),
        EventKind::TimerCreated { op, .. } => Some(EventKind::TimerFired { op: op.clone() }),
        EventKind::EventWaitStarted { name, .. } => Some(EventKind::EventRaised {
            name: name.clone(),
            data: p(&format!("{name}-data")),
            taken_by: None,
        }),
        EventKind::ChildStarted {
            op,
            name,
            input,
            detached: false,
            ..
        } => Some(EventKind::ChildCompleted {
            op: op.clone(),
            output: p(&serde_json::json!({ "name": name, "input": d::<serde_json::Value>(input) })),
        }),
        _ => None,
    }
}

/// Drives a run to its end by answering every issued operation with [`auto_complete`], oldest
/// first. Panics if the run blocks with nothing left to answer.
pub(crate) fn drive_to_end(driver: &mut Driver) {
    let mut pending: std::collections::VecDeque<EventKind> = Default::default();
    loop {
        pending.extend(driver.take_new_issued().iter().filter_map(auto_complete));
        if driver.outcome().is_some() {
            return;
        }
        let next = pending
            .pop_front()
            .expect("the run waits but nothing is left to deliver");
        assert!(driver.deliver(next.clone()), "delivery refused: {next:?}");
    }
}
