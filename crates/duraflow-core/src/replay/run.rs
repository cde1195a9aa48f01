//! [`WorkflowRun`]: drives one execution of a workflow through its journal and new deliveries.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures::future::{poll_fn, BoxFuture};
use futures::task::AtomicWaker;
use futures::FutureExt;

use super::state::{lock, Shared, State};
use crate::context::WorkflowContext;
use crate::error::{Mismatch, Nondeterminism, WorkflowError};
use crate::event::{Event, EventKind, ParentLink};
use crate::failure::{Failure, FailureKind};
use crate::payload::Payload;
use crate::time::{Clock, Timestamp};
use crate::workflow::WorkflowFn;

/// What replay does with the journal at its cursor.
enum Next {
    /// The recorded journal is replayed.
    Done,
    /// The recorded end of a skipped child context was passed: the code must run.
    ContextEnd,
    /// The journal and the code disagree.
    Mismatch(Box<Nondeterminism>),
    /// The start, a cancellation or a termination: applied to the run itself.
    Lifecycle(Event),
    /// A delivery was applied; says whether the next recorded event is one too.
    Applied { delivered_next: bool },
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The workflow returned this output.
    Completed(Payload),
    /// The workflow failed (its own error, a failed operation, nondeterminism, a panic...).
    Failed(Failure),
    /// The workflow continued as a new execution.
    ContinuedAsNew {
        /// The next execution's input.
        input: Payload,
        /// External events that were never taken, to deliver to the next execution in order.
        carried_events: Vec<(String, Payload)>,
    },
    /// The execution was cancelled.
    Cancelled(String),
    /// The execution was terminated.
    Terminated(String),
}

/// Wakes the run: records that something inside the workflow became ready, and passes the wake
/// on to whoever polls the run (needed while inline steps do real I/O).
struct WakeFlag {
    woken: AtomicBool,
    outer: AtomicWaker,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.outer.wake();
    }
}

/// One execution of a workflow, replayed from its journal and then driven by new deliveries.
///
/// Every delivered event is applied on its own and the workflow is run until all its branches
/// wait before the next one is applied, so completions are seen in journal order and races
/// resolve the same way on every replay.
pub struct WorkflowRun {
    state: Shared,
    workflow: WorkflowFn,
    future: Option<BoxFuture<'static, Result<Payload, WorkflowError>>>,
    outcome: Option<Outcome>,
    wake: Arc<WakeFlag>,
    waker: Waker,
    replayed: bool,
    committed_len: usize,
}

impl WorkflowRun {
    /// A run that executes: new operations are recorded, inline steps run, and new events are
    /// stamped with `clock`.
    pub fn live(
        instance_id: impl Into<String>,
        execution: u32,
        journal: Vec<Event>,
        workflow: WorkflowFn,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::new(
            instance_id.into(),
            execution,
            journal,
            workflow,
            Some(clock),
        )
    }

    /// A run that only checks a journal against the code: steps are never executed.
    pub fn checker(
        instance_id: impl Into<String>,
        execution: u32,
        journal: Vec<Event>,
        workflow: WorkflowFn,
    ) -> Self {
        Self::new(instance_id.into(), execution, journal, workflow, None)
    }

    fn new(
        instance_id: String,
        execution: u32,
        journal: Vec<Event>,
        workflow: WorkflowFn,
        clock: Option<Arc<dyn Clock>>,
    ) -> Self {
        let committed_len = journal.len();
        let live = clock.is_some();
        let state = Arc::new(Mutex::new(State::new(
            instance_id,
            execution,
            journal,
            live,
            clock,
        )));
        let wake = Arc::new(WakeFlag {
            woken: AtomicBool::new(false),
            outer: AtomicWaker::new(),
        });
        let waker = Waker::from(wake.clone());
        WorkflowRun {
            state,
            workflow,
            future: None,
            outcome: None,
            wake,
            waker,
            replayed: false,
            committed_len,
        }
    }

    /// Replays the recorded journal (once): recorded deliveries are handed to the code in order
    /// and every operation the code asks for is matched against the journal. A mismatch ends the
    /// run as failed with a nondeterminism failure.
    pub async fn replay(&mut self) {
        if self.replayed {
            return;
        }
        self.replayed = true;
        let mut in_start = false;
        loop {
            if self.outcome.is_some() {
                return;
            }
            // One lock for each recorded event: a plain delivery is applied under it, and only
            // the start, a cancellation or a termination (which change the run itself) leave it.
            let next = {
                let mut s = lock(&self.state);
                s.skip_recorded();
                if std::mem::take(&mut s.context_end_reached) {
                    Next::ContextEnd
                } else if s.pos >= s.recorded_len {
                    Next::Done
                } else {
                    let recorded = &s.event_at(s.pos).kind;
                    if recorded.is_issued() {
                        let requested = if self.future.is_some() {
                            "waits for something else without asking for it (a removed \
                             operation, or operations in a different order)"
                        } else {
                            "has not started"
                        };
                        Next::Mismatch(Box::new(Nondeterminism {
                            position: s.pos,
                            recorded: recorded.describe(),
                            requested: requested.to_owned(),
                            op: recorded.op().cloned(),
                            mismatch: Mismatch::Removed,
                        }))
                    } else if !s.wants(recorded) {
                        // A recorded delivery is one the run wanted when it was journaled; one
                        // it does not want now (a second start, a duplicate, a completion of
                        // the wrong kind or for an operation the code never waits for) means
                        // the journal and the code disagree. Applying it anyway would hand an
                        // operation a result that is not its own.
                        Next::Mismatch(Box::new(Nondeterminism {
                            position: s.pos,
                            recorded: recorded.describe(),
                            requested: s.refusal(recorded),
                            op: recorded.op().cloned(),
                            mismatch: Mismatch::Unexpected,
                        }))
                    } else if changes_the_run(recorded) {
                        Next::Lifecycle(s.take_delivered())
                    } else {
                        let ev = s.take_delivered();
                        s.apply_delivered(ev.at, ev.kind);
                        Next::Applied {
                            delivered_next: s.next_recorded_is_delivered(),
                        }
                    }
                }
            };
            // The deliveries recorded right after the start were delivered with it, before the
            // code first ran (see `begin`): the code runs once the last of them is applied.
            match next {
                Next::Done => break,
                Next::ContextEnd => {
                    // A skipped context's recorded end was passed: its result goes to the code
                    // now, which then asks for what it asked for after that end.
                    self.run_until_blocked().await;
                    continue;
                }
                Next::Mismatch(nd) => return self.fail_nondeterminism(*nd),
                Next::Lifecycle(ev) => {
                    let starts = matches!(ev.kind, EventKind::WorkflowStarted { .. });
                    self.apply_only(ev.at, ev.kind);
                    in_start = (starts || in_start)
                        && self.outcome.is_none()
                        && lock(&self.state).next_recorded_is_delivered();
                }
                Next::Applied { delivered_next } => in_start = in_start && delivered_next,
            }
            if !in_start {
                self.run_until_blocked().await;
            }
        }
        // Replay is over: wake what waits so that a live run starts the work only it does.
        lock(&self.state).wake_waiting();
        self.run_until_blocked().await;
    }

    /// Whether a newly arrived event is still of use to this execution. Duplicate and stale
    /// completions (an operation already completed, or abandoned) are not, and must be dropped.
    pub fn wants(&self, kind: &EventKind) -> bool {
        self.outcome.is_none() && lock(&self.state).wants(kind)
    }

    /// Appends a newly arrived event to the journal, hands it to the workflow and runs the
    /// workflow until it waits again. Returns `false`, changing nothing, when the event is not
    /// wanted (see [`WorkflowRun::wants`]). Replays first if that has not been done.
    ///
    /// A run that asked for a checkpoint ([`WorkflowRun::checkpoint_wanted`]) must be given it
    /// first; delivering without it resumes the run as if the checkpoint had been taken (the
    /// steps waiting for it get only the durability of the turn's commit).
    pub async fn deliver(&mut self, at: Timestamp, kind: EventKind) -> bool {
        self.replay().await;
        self.resume_if_held().await;
        let Some(kind) = lock(&self.state).interpret(at, kind) else {
            return false;
        };
        if !self.wants(&kind) {
            return false;
        }
        let (at, kind) = self.journal_delivery(at, kind);
        self.apply_only(at, kind);
        self.run_until_blocked().await;
        true
    }

    /// Begins the execution: delivers `workflow_started` and the events its start carried
    /// over (see [`crate::plan::Deliveries::start_len`]) one after the other, and only then runs
    /// the workflow. Those events were sent before the execution began, so its code sees them
    /// as having arrived before it ran, and a turn can never stop half way through them.
    /// Returns how many were accepted.
    pub async fn begin(&mut self, at: Timestamp, start: Vec<EventKind>) -> usize {
        self.replay().await;
        self.resume_if_held().await;
        let mut accepted = 0;
        for kind in start {
            let Some(kind) = lock(&self.state).interpret(at, kind) else {
                continue;
            };
            if !self.wants(&kind) {
                continue;
            }
            let (at, kind) = self.journal_delivery(at, kind);
            self.apply_only(at, kind);
            accepted += 1;
        }
        self.run_until_blocked().await;
        accepted
    }

    /// The activities the workflow dropped while they waited (the branches of a decided batch,
    /// the loser of a race) since the last call, in a live run: their tasks can be cancelled,
    /// since their results would be refused. Dropped during replay, they were taken by the turn
    /// that first dropped them.
    pub fn take_dropped_activities(&mut self) -> Vec<crate::OpId> {
        lock(&self.state).take_dropped_activities()
    }

    /// The awaits of queue-wide events that ended without their event (timed out, or dropped
    /// while they waited) since the last call, in a live run: their waiters in the store can
    /// be deleted, since an event for them would be refused.
    pub fn take_dropped_awaits(&mut self) -> Vec<crate::OpId> {
        lock(&self.state).take_dropped_awaits()
    }

    /// The records the workflow published live since the last call (see
    /// `WorkflowContext::publish`), for the commit that ends or checkpoints the turn. A commit
    /// that is refused loses them with the run, which is dropped: the turn that redoes it
    /// replays and publishes them again.
    pub fn take_feed(&mut self) -> Vec<crate::FeedRecord> {
        std::mem::take(&mut lock(&self.state).feed)
    }

    /// Installs what a heartbeat from the workflow (`WorkflowContext::heartbeat`,
    /// `StepContext::heartbeat`) calls: the driver renews the turn's lease.
    pub fn on_heartbeat(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        lock(&self.state).heartbeat = Some(hook);
    }

    /// Whether the run, blocked, waits for operation `op` and for nothing else: no other
    /// operation is open and no step is running. Its next turn then depends on `op`'s result
    /// alone, which a driver holding that result can deliver without reading the inbox.
    pub fn waits_only_for(&self, op: &crate::OpId) -> bool {
        self.outcome.is_none() && lock(&self.state).waits_only_for(op)
    }

    /// Whether the run waits for its journal so far to be made durable before it goes on: an
    /// at-least-once step's result must be stored before the workflow moves past it, and an
    /// at-most-once step's start before its closure runs. The driver commits
    /// [`WorkflowRun::uncommitted_events`] (keeping the turn), calls
    /// [`WorkflowRun::mark_committed`] and then [`WorkflowRun::resume`].
    pub fn checkpoint_wanted(&self) -> bool {
        self.outcome.is_none() && lock(&self.state).checkpoint_wanted
    }

    /// Goes on after a checkpoint: hands the held step result to the workflow, lets the steps
    /// that waited for their start to be durable run, and runs until the workflow waits again
    /// (or wants another checkpoint).
    pub async fn resume(&mut self) {
        lock(&self.state).checkpoint_taken();
        self.run_until_blocked().await;
    }

    async fn resume_if_held(&mut self) {
        if self.checkpoint_wanted() {
            self.resume().await;
        }
    }

    /// Appends a newly arrived event to the journal (noting the wait in a child context that
    /// takes it); returns its time and the event as journaled.
    fn journal_delivery(&self, at: Timestamp, mut kind: EventKind) -> (Timestamp, EventKind) {
        let mut s = lock(&self.state);
        s.stamp(at, &mut kind);
        (s.append(at, kind.clone()), kind)
    }

    /// Applies a delivered event without running the workflow: to the run itself when it
    /// [`changes_the_run`], to the state otherwise.
    fn apply_only(&mut self, at: Timestamp, kind: EventKind) {
        match kind {
            EventKind::WorkflowStarted {
                name,
                input,
                parent,
                headers,
                retry,
                version: _,
            } => {
                let ctx = {
                    let mut s = lock(&self.state);
                    s.started = true;
                    s.now = s.now.max(at);
                    s.workflow_name = name;
                    s.parent = parent.map(|p| *p);
                    s.headers = headers;
                    if let Some(retry) = retry {
                        s.start_attempt(*retry);
                    }
                    WorkflowContext::root(self.state.clone(), &s.instance_id)
                };
                let workflow = self.workflow.clone();
                match std::panic::catch_unwind(AssertUnwindSafe(|| workflow(ctx, input))) {
                    Ok(fut) => self.future = Some(fut),
                    Err(panic) => self.finish(Err(panic_error(panic))),
                }
            }
            EventKind::CancelRequested { reason } => {
                self.future = None;
                lock(&self.state).now = at;
                self.outcome = Some(Outcome::Cancelled(reason));
            }
            EventKind::TerminateRequested { reason } => {
                self.future = None;
                lock(&self.state).now = at;
                self.outcome = Some(Outcome::Terminated(reason));
            }
            other => lock(&self.state).apply_delivered(at, other),
        }
    }

    /// Polls the workflow until every branch waits for a delivery (or it ends). While inline
    /// steps are running this future stays pending and is woken by their I/O.
    async fn run_until_blocked(&mut self) {
        poll_fn(|cx| self.poll_until_blocked(cx)).await
    }

    fn poll_until_blocked(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.outcome.is_some() {
                return Poll::Ready(());
            }
            let Some(fut) = self.future.as_mut() else {
                return Poll::Ready(());
            };
            self.wake.outer.register(cx.waker());
            self.wake.woken.store(false, Ordering::Release);
            let mut inner_cx = Context::from_waker(&self.waker);
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll_unpin(&mut inner_cx)));
            match polled {
                Err(panic) => {
                    self.future = None;
                    self.finish(Err(panic_error(panic)));
                    return Poll::Ready(());
                }
                Ok(Poll::Ready(result)) => {
                    self.future = None;
                    self.finish(result);
                    return Poll::Ready(());
                }
                Ok(Poll::Pending) => {}
            }
            let (nondeterminism, continued) = {
                let mut s = lock(&self.state);
                (s.nondeterminism.take(), s.continue_as_new.take())
            };
            if let Some(nd) = nondeterminism {
                self.fail_nondeterminism(nd);
                return Poll::Ready(());
            }
            if let Some(input) = continued {
                self.future = None;
                let carried_events = lock(&self.state).unconsumed_events();
                self.outcome = Some(Outcome::ContinuedAsNew {
                    input,
                    carried_events,
                });
                return Poll::Ready(());
            }
            if self.wake.woken.load(Ordering::Acquire) {
                continue;
            }
            // The workflow waits: deliver the result of a step that finished, one at a time, as
            // replay delivers recorded results; stop for a checkpoint when one is wanted.
            let mut s = lock(&self.state);
            if s.checkpoint_wanted {
                return Poll::Ready(());
            }
            if s.apply_finished_step() {
                continue;
            }
            if s.steps_running > 0 {
                return Poll::Pending;
            }
            return Poll::Ready(());
        }
    }

    fn finish(&mut self, result: Result<Payload, WorkflowError>) {
        let (kind, outcome) = match result {
            Ok(output) => (
                EventKind::WorkflowCompleted {
                    output: output.clone(),
                },
                Outcome::Completed(output),
            ),
            Err(e) => {
                let failure = e.to_failure();
                (
                    EventKind::WorkflowFailed {
                        failure: Box::new(failure.clone()),
                    },
                    Outcome::Failed(failure),
                )
            }
        };
        let issued = {
            let mut s = lock(&self.state);
            if s.issue(Cow::Owned(kind)) {
                Ok(())
            } else {
                Err(s.nondeterminism.take())
            }
        };
        match issued {
            Ok(()) => self.outcome = Some(outcome),
            Err(Some(nd)) => self.fail_nondeterminism(nd),
            Err(None) => self.outcome = Some(outcome),
        }
    }

    fn fail_nondeterminism(&mut self, nd: Nondeterminism) {
        // Drop the workflow before taking the lock: dropping its operations uses it.
        self.future = None;
        let failure = WorkflowError::Nondeterminism(nd).to_failure();
        {
            let mut s = lock(&self.state);
            let at = s.clock_now();
            s.journal.push(Event {
                at,
                kind: EventKind::WorkflowFailed {
                    failure: Box::new(failure.clone()),
                },
            });
        }
        self.outcome = Some(Outcome::Failed(failure));
    }

    /// How the execution ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The events appended since the run was created or since [`WorkflowRun::mark_committed`].
    pub fn uncommitted_events(&self) -> Vec<Event> {
        let s = lock(&self.state);
        let from = self
            .committed_len
            .saturating_sub(s.base)
            .min(s.journal.len());
        s.journal[from..].to_vec()
    }

    /// Records that the events so far are stored, and lets go of them: a run that goes on
    /// (a warm instance) needs none of its history, only what is still in flight, so its
    /// memory does not grow with its journal. Returns the events let go, for the caller to
    /// drop where it suits (dropping a long journal takes a while).
    pub fn mark_committed(&mut self) -> Vec<Event> {
        let mut s = lock(&self.state);
        self.committed_len = s.journal_len();
        s.durable_len = self.committed_len;
        // Replay reads recorded events until it is done; a run commits only after that.
        if s.pos < s.recorded_len {
            return Vec::new();
        }
        let len = self.committed_len;
        s.forget_committed(len)
    }

    /// The length of the journal, committed or not.
    pub fn journal_len(&self) -> usize {
        lock(&self.state).journal_len()
    }

    /// How many journal events the run holds in memory (all of them until it first commits,
    /// then only those not committed yet).
    pub fn held_events(&self) -> usize {
        lock(&self.state).journal.len()
    }

    /// How many operations the run keeps track of (every one it has issued, finished or not).
    pub fn held_operations(&self) -> usize {
        lock(&self.state).ops.slot_count()
    }

    /// The parent link from the execution's start event, for a child workflow.
    pub fn parent(&self) -> Option<ParentLink> {
        lock(&self.state).parent.clone()
    }

    /// The registered name from the execution's start event.
    pub fn workflow_name(&self) -> String {
        lock(&self.state).workflow_name.clone()
    }

    /// Attached child instances that have not reported back.
    pub fn open_children(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.state).open_children.values().cloned().collect();
        v.sort();
        v
    }

    /// Workflow time.
    pub fn now(&self) -> Timestamp {
        lock(&self.state).now
    }
}

impl Drop for WorkflowRun {
    fn drop(&mut self) {
        // The workflow's operations take the state's lock as they are dropped; drop them first.
        self.future = None;
    }
}

/// Whether a delivered event changes the run itself (its start creates the workflow's future;
/// a cancellation or termination ends it) rather than only the state: [`WorkflowRun::apply_only`]
/// applies these, and replay leaves its lock for them.
fn changes_the_run(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::WorkflowStarted { .. }
            | EventKind::CancelRequested { .. }
            | EventKind::TerminateRequested { .. }
    )
}

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> WorkflowError {
    WorkflowError::Panic(format!(
        "workflow code panicked: {}",
        panic_message(&*panic)
    ))
}

/// The text a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_owned())
}

/// What replaying a journal against workflow code found.
#[derive(Debug)]
pub struct ReplayReport {
    /// How the execution ended, if the journal reaches its end.
    pub outcome: Option<Outcome>,
    /// Events the code produced beyond the journal (none for a journal replayed with the code
    /// that wrote it, apart from a nondeterminism failure).
    pub new_events: Vec<Event>,
}

impl ReplayReport {
    /// The nondeterminism failure, if replay found one.
    pub fn nondeterminism(&self) -> Option<&Failure> {
        match &self.outcome {
            Some(Outcome::Failed(f)) if f.kind == FailureKind::Nondeterminism => Some(f),
            _ => None,
        }
    }
}

/// Replays a stored journal against `workflow` without running anything: the tool for checking
/// that new code is compatible with the journals of running instances before deploying it.
pub fn check_replay(
    workflow: WorkflowFn,
    instance_id: &str,
    execution: u32,
    journal: Vec<Event>,
) -> ReplayReport {
    let mut run = WorkflowRun::checker(instance_id, execution, journal, workflow);
    // A checker never runs steps, so nothing it awaits can be pending: one poll finishes it.
    if run.replay().now_or_never().is_none() {
        unreachable!("a replay that runs no steps never waits");
    }
    ReplayReport {
        outcome: run.outcome().cloned(),
        new_events: run.uncommitted_events(),
    }
}

impl std::fmt::Debug for WorkflowRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("WorkflowRun")
            .field("instance_id", &s.instance_id)
            .field("execution", &s.execution)
            .field("journal_len", &s.journal_len())
            .field("outcome", &self.outcome)
            .finish()
    }
}
