//! The state one execution's operations share while it is replayed and run.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use foldhash::{HashMap, HashSet};

use crate::attempt::{AttemptStart, RecordedOp};
use crate::error::{Mismatch, Nondeterminism};
use crate::event::{Event, EventKind, ParentLink};
use crate::failure::Failure;
use crate::op_id::OpId;
use crate::payload::Payload;
use crate::primitive::{Primitive, ABANDONED};
use crate::time::{Clock, Timestamp};

mod callbacks;
mod contexts;
mod ops;

pub(crate) use callbacks::CallbackDeadlines;
pub(crate) use ops::Ops;

/// How an operation ended, as handed to the future waiting for it.
#[derive(Debug)]
pub(crate) enum Completion {
    /// An activity, step or child returned this output; an event carried this data.
    Ok(Payload),
    /// The operation failed.
    Err(Failure),
    /// A timer fired.
    Fired,
    /// A detached child was started with this instance id.
    Started(String),
    /// An attempt of a step failed; the step retries once its backoff timer fires.
    Retrying,
}

/// Where an operation stands.
#[derive(Debug)]
pub(crate) enum Slot {
    /// Issued and waiting for its completion.
    Waiting(Option<Waker>),
    /// Completed (or, for a step, an attempt ended); the future has not taken the result yet.
    Done(Completion),
    /// Its future was dropped before it completed; a late completion is ignored.
    Abandoned,
}

/// The mutable state of one execution, shared by the context, the operation futures and the run.
pub(crate) struct State {
    pub(crate) instance_id: String,
    pub(crate) execution: u32,
    pub(crate) workflow_name: String,
    pub(crate) parent: Option<ParentLink>,
    /// The headers the instance was started with.
    pub(crate) headers: BTreeMap<String, String>,
    /// The attempt this execution runs (1 unless the workflow is being retried).
    pub(crate) attempt: u32,
    /// What earlier attempts completed, as they were handed to this one.
    pub(crate) earlier: Vec<RecordedOp>,
    /// Of those, the ones no operation of this attempt has taken yet, by operation.
    pub(crate) recorded: HashMap<OpId, RecordedOp>,
    /// Whether `workflow_started` has been applied: an execution starts once.
    pub(crate) started: bool,
    /// The journal from position `base` on: the recorded events followed by those appended
    /// in this process. Once a run has committed, the events it committed are dropped (a warm
    /// run needs none of them), and `base` counts them.
    pub(crate) journal: Vec<Event>,
    /// How many events precede `journal[0]`.
    pub(crate) base: usize,
    /// How many events were recorded before this run began replaying.
    pub(crate) recorded_len: usize,
    /// The replay cursor: the next journal position to match or deliver.
    pub(crate) pos: usize,
    /// Whether operations may really run (steps execute, new operations are allowed). A run
    /// that only checks a journal is not live.
    pub(crate) live: bool,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    /// Workflow time: when the last delivered event was appended.
    pub(crate) now: Timestamp,
    /// The next sequence number of the root scope, and of every other scope by its id.
    root_seq: u32,
    scope_seq: HashMap<OpId, u32>,
    /// Every operation in flight: the slot its future waits on, and the primitive and state
    /// (a row of its transition table) of one issued and not yet in a final state.
    pub(crate) ops: Ops,
    event_waiters: HashMap<String, VecDeque<OpId>>,
    buffered_events: HashMap<String, VecDeque<(u64, Payload)>>,
    events_seen: u64,
    /// Attached children that have not reported back, by operation.
    pub(crate) open_children: HashMap<OpId, String>,
    pub(crate) nondeterminism: Option<Nondeterminism>,
    pub(crate) steps_running: usize,
    /// Results of inline steps that finished during a poll, oldest first. The run journals and
    /// applies each one only once the workflow waits again, exactly as replay delivers them.
    pub(crate) finished_steps: VecDeque<FinishedStep>,
    /// Whether the run waits for its journal so far to be made durable (see
    /// `WorkflowRun::checkpoint_wanted`).
    pub(crate) checkpoint_wanted: bool,
    /// How much of the journal is known to be stored: the recorded journal, then whatever the
    /// driver has committed.
    pub(crate) durable_len: usize,
    /// A journaled step result that the workflow is handed only after the next checkpoint.
    held: Option<(Timestamp, EventKind)>,
    /// Steps waiting for the next checkpoint before their closure runs.
    checkpoint_waiters: Vec<Waker>,
    pub(crate) continue_as_new: Option<Payload>,
    pub(crate) random_counter: u64,
    /// What `heartbeat` calls: installed by the driver to renew the turn's lease.
    pub(crate) heartbeat: Option<Heartbeat>,
    /// The recorded ends of child contexts, by operation, with their positions (built when
    /// replay first meets a context).
    context_ends: Option<HashMap<OpId, RecordedEnd>>,
    /// Child contexts whose recorded end replay returned without running the body: their
    /// recorded events are passed over until the end.
    skipped: HashSet<OpId>,
    /// Set when the replay cursor passed the recorded end of a skipped context whose future
    /// waits for it (see `ChildContext`): the code must run before the next recorded event is
    /// matched, as it ran right after that end when it was journaled.
    pub(crate) context_end_reached: bool,
    /// Skipped contexts whose recorded end the cursor passed and that have not yet taken it: a
    /// context whose own end is passed meanwhile waits for them (their ends come first).
    pub(crate) replayed_ends_untaken: usize,
    /// The deadlines of open callbacks.
    pub(crate) callbacks: HashMap<OpId, CallbackDeadlines>,
    /// Activities whose futures were dropped while they waited, in a live run past its
    /// recorded journal: the turn cancels their tasks.
    dropped_activities: Vec<OpId>,
    /// Awaits of queue-wide events that ended without their event (timed out, or dropped
    /// while they waited) in a live run: the turn deletes their waiters.
    dropped_awaits: Vec<OpId>,
    /// How many records the workflow has published in this execution, replayed or live.
    pub(crate) publish_seq: u64,
    /// The records published live since the driver last took them.
    pub(crate) feed: Vec<crate::feed::FeedRecord>,
}

/// The hook a driver installs to hear a workflow's heartbeats (see
/// `WorkflowRun::on_heartbeat`).
pub(crate) type Heartbeat = Arc<dyn Fn() + Send + Sync>;

/// A child context's recorded end: its journal position and result.
pub(crate) type RecordedEnd = (usize, Result<Payload, Failure>);

/// The result of a step attempt, waiting to be journaled and delivered.
#[derive(Debug)]
pub(crate) struct FinishedStep {
    /// `step_completed`, `step_failed` or `step_retrying`.
    pub(crate) kind: EventKind,
    /// Whether the workflow may see it only once it is durable.
    pub(crate) durable_first: bool,
}

/// A handle on [`State`].
pub(crate) type Shared = Arc<Mutex<State>>;

/// Locks the state. A panic elsewhere while it was held leaves it usable: every update to it is
/// a single assignment or push, so there is no half-written invariant to protect.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub(crate) fn new(
        instance_id: String,
        execution: u32,
        journal: Vec<Event>,
        live: bool,
        clock: Option<Arc<dyn Clock>>,
    ) -> Self {
        let recorded_len = journal.len();
        let now = journal.first().map(|e| e.at).unwrap_or_default();
        State {
            instance_id,
            execution,
            workflow_name: String::new(),
            parent: None,
            headers: BTreeMap::new(),
            attempt: 1,
            earlier: Vec::new(),
            recorded: HashMap::default(),
            started: false,
            journal,
            base: 0,
            recorded_len,
            pos: 0,
            live,
            clock,
            now,
            root_seq: 0,
            scope_seq: HashMap::default(),
            ops: Ops::default(),
            event_waiters: HashMap::default(),
            buffered_events: HashMap::default(),
            events_seen: 0,
            open_children: HashMap::default(),
            nondeterminism: None,
            steps_running: 0,
            finished_steps: VecDeque::new(),
            checkpoint_wanted: false,
            durable_len: recorded_len,
            held: None,
            checkpoint_waiters: Vec::new(),
            continue_as_new: None,
            random_counter: 0,
            heartbeat: None,
            context_ends: None,
            skipped: HashSet::default(),
            context_end_reached: false,
            replayed_ends_untaken: 0,
            callbacks: HashMap::default(),
            dropped_activities: Vec::new(),
            dropped_awaits: Vec::new(),
            publish_seq: 0,
            feed: Vec::new(),
        }
    }

    /// The journal's length, every event counted (those dropped after a commit too).
    pub(crate) fn journal_len(&self) -> usize {
        self.base + self.journal.len()
    }

    /// The recorded event at position `pos` (which is still held: replay reads only before the
    /// run first commits).
    pub(crate) fn event_at(&self, pos: usize) -> &Event {
        &self.journal[pos - self.base]
    }

    /// Moves the recorded delivery at the cursor out of the journal, for replay to apply, and
    /// moves the cursor past it. No position behind the cursor is read again (replay reads at
    /// the cursor and ahead of it, and a run hands out only the events it appended), so the
    /// cancellation without a reason left in its place, which allocates nothing, is never seen;
    /// copying the event instead cost an allocation per replayed result.
    pub(crate) fn take_delivered(&mut self) -> Event {
        let slot = &mut self.journal[self.pos - self.base];
        let gone = EventKind::CancelRequested {
            reason: String::new(),
        };
        let kind = std::mem::replace(&mut slot.kind, gone);
        self.pos += 1;
        Event { at: slot.at, kind }
    }

    /// Drops the events before `len` (they are committed) and returns them.
    pub(crate) fn forget_committed(&mut self, len: usize) -> Vec<Event> {
        let n = len.saturating_sub(self.base).min(self.journal.len());
        let rest = self.journal.split_off(n);
        self.base += n;
        std::mem::replace(&mut self.journal, rest)
    }

    /// Whether the recorded event at the cursor is a delivery (not an issued event).
    pub(crate) fn next_recorded_is_delivered(&self) -> bool {
        self.pos < self.recorded_len && !self.event_at(self.pos).kind.is_issued()
    }

    /// Whether the cursor is still inside the recorded journal.
    pub(crate) fn is_replaying(&self) -> bool {
        self.pos < self.recorded_len
    }

    /// Engine time for a new event: the clock when live, workflow time otherwise.
    pub(crate) fn clock_now(&self) -> Timestamp {
        match &self.clock {
            Some(c) if self.live => c.now().max(self.now),
            _ => self.now,
        }
    }

    /// Where a new timer's span starts: the present, rounded up to whole milliseconds, in a
    /// live run past its recorded journal (so that a timer never fires before its span has
    /// passed since the code asked for it), workflow time otherwise (replay reads the recorded
    /// fire time instead).
    pub(crate) fn timer_start(&self) -> Timestamp {
        match &self.clock {
            Some(c) if self.live && !self.is_replaying() => c.now_rounded_up().max(self.now),
            _ => self.now,
        }
    }

    /// The next operation id in `scope`.
    pub(crate) fn next_op_id(&mut self, scope: Option<&OpId>) -> OpId {
        let seq = match scope {
            None => &mut self.root_seq,
            Some(scope) => self.scope_seq.entry(scope.clone()).or_insert(0),
        };
        let id = OpId::new(scope, *seq);
        *seq += 1;
        id
    }

    /// Records that the code asks for `kind`: during replay it must match the journal at the
    /// cursor; afterwards it is appended. Returns `false` (and records the nondeterminism) when it
    /// does not match. A borrowed `kind` is copied only when it is appended: replay compares.
    pub(crate) fn issue(&mut self, kind: Cow<'_, EventKind>) -> bool {
        if self.nondeterminism.is_some() {
            return false;
        }
        self.skip_recorded();
        if self.pos < self.recorded_len {
            let recorded = &self.event_at(self.pos).kind;
            if recorded.is_issued() && same_operation(recorded, &kind) {
                self.pos += 1;
                self.note_issued(&kind);
                return true;
            }
            let (requested, mismatch) = if recorded.is_issued() {
                (
                    format!("asked for {} instead", kind.describe()),
                    Mismatch::Changed,
                )
            } else {
                (
                    format!(
                        "asked for {} before that event was delivered (an added operation, or \
                         operations in a different order)",
                        kind.describe()
                    ),
                    Mismatch::Added,
                )
            };
            self.nondeterminism = Some(Nondeterminism {
                position: self.pos,
                recorded: recorded.describe(),
                requested,
                op: kind.op().or(recorded.op()).cloned(),
                mismatch,
            });
            return false;
        }
        self.note_issued(&kind);
        let at = self.clock_now();
        self.journal.push(Event {
            at,
            kind: kind.into_owned(),
        });
        self.pos = self.journal_len();
        true
    }

    /// Takes the activities dropped while waiting since the last call (see
    /// `WorkflowRun::take_dropped_activities`).
    pub(crate) fn take_dropped_activities(&mut self) -> Vec<OpId> {
        std::mem::take(&mut self.dropped_activities)
    }

    /// Takes the awaits that ended without their event since the last call (see
    /// `WorkflowRun::take_dropped_awaits`).
    pub(crate) fn take_dropped_awaits(&mut self) -> Vec<OpId> {
        std::mem::take(&mut self.dropped_awaits)
    }

    /// Notes that the await `op` ended without its event, when `op` is an await still waiting
    /// in a live run: its waiter in the store is no longer wanted.
    fn note_dropped_await(&mut self, op: &OpId) {
        let waiting_await = matches!(
            self.ops.get(op),
            (
                Some(Slot::Waiting(_)),
                Some((Primitive::QueueEventAwait, _))
            )
        );
        if waiting_await && self.live && !self.is_replaying() {
            self.dropped_awaits.push(op.clone());
        }
    }

    /// Starts the state machine of the operation `kind` issues (or, for an operation issued
    /// again, such as a step's next attempt, takes its row), so that only the deliveries its
    /// table allows reach it.
    /// An issued event that ends an operation (a child context's end) takes its row.
    fn note_issued(&mut self, kind: &EventKind) {
        let Some(op) = kind.op() else {
            return;
        };
        let Some(primitive) = kind.issues() else {
            self.advance(op, kind.type_name());
            if matches!(kind, EventKind::ChildCancelled { .. }) {
                self.open_children.remove(op);
            }
            return;
        };
        self.ops.set_machine(op, |had| {
            let state = match had {
                Some((p, from)) if p == primitive => primitive
                    .step(from, kind.type_name())
                    .unwrap_or(primitive.initial()),
                _ => primitive.initial(),
            };
            (primitive, state)
        });
    }

    /// Whether `op` is the one operation issued and not yet in a final state, and no step is
    /// running or waiting to be journaled.
    pub(crate) fn waits_only_for(&self, op: &OpId) -> bool {
        self.ops.open_count() == 1
            && self.ops.machine(op).is_some()
            && self.steps_running == 0
            && self.finished_steps.is_empty()
            && !self.checkpoint_wanted
    }

    /// Moves `op` along the row of its table for `event`; an operation that reaches a final
    /// state is forgotten. Returns whether the table had the row.
    pub(crate) fn advance(&mut self, op: &OpId, event: &str) -> bool {
        self.ops.advance(op, event)
    }

    /// Journals and applies the oldest result of a step that finished while the workflow ran.
    /// Returns `false` when there is none. The result of a step whose future was dropped in the
    /// meantime is discarded, like any stale completion.
    ///
    /// A result that must be durable before the workflow sees it is journaled and held, and a
    /// checkpoint is asked for; [`State::checkpoint_taken`] hands it over.
    pub(crate) fn apply_finished_step(&mut self) -> bool {
        let Some(FinishedStep {
            kind,
            durable_first,
        }) = self.finished_steps.pop_front()
        else {
            return false;
        };
        if self.wants(&kind) {
            let at = self.append(self.clock_now(), kind.clone());
            if durable_first {
                self.held = Some((at, kind));
                self.checkpoint_wanted = true;
            } else {
                self.apply_delivered(at, kind);
            }
        } else if let Some(op) = kind.op() {
            self.ops.take_slot(op);
        }
        true
    }

    /// Asks for a checkpoint and registers `waker` to be woken once it is taken.
    pub(crate) fn wait_for_checkpoint(&mut self, waker: &Waker) {
        self.checkpoint_wanted = true;
        if !self.checkpoint_waiters.iter().any(|w| w.will_wake(waker)) {
            self.checkpoint_waiters.push(waker.clone());
        }
    }

    /// The journal up to `durable_len` is stored: hand over the held step result and wake the
    /// steps that waited.
    pub(crate) fn checkpoint_taken(&mut self) {
        self.checkpoint_wanted = false;
        if let Some((at, kind)) = self.held.take() {
            self.apply_delivered(at, kind);
        }
        for w in self.checkpoint_waiters.drain(..) {
            w.wake();
        }
    }

    /// Appends an event at the end of the journal and moves the cursor past it. Returns the
    /// event's time (never earlier than workflow time).
    pub(crate) fn append(&mut self, at: Timestamp, kind: EventKind) -> Timestamp {
        let at = at.max(self.now);
        self.journal.push(Event { at, kind });
        self.pos = self.journal_len();
        at
    }

    /// Wakes every operation still waiting, so that work that only a live run does (steps whose
    /// journaled start has no result) gets going once replay is over.
    pub(crate) fn wake_waiting(&self) {
        for slot in self.ops.slots() {
            if let Slot::Waiting(Some(w)) = slot {
                w.wake_by_ref();
            }
        }
    }

    /// Whether a newly arrived event is still of use: a completion for an operation that waits
    /// for it, an external event, a cancellation. Duplicate and stale completions are not.
    pub(crate) fn wants(&self, kind: &EventKind) -> bool {
        match kind {
            // Not "the journal is empty": an external event sent while the previous execution
            // continued as new can reach the next one before its start message.
            EventKind::WorkflowStarted { .. } => !self.started,
            EventKind::EventRaised { .. }
            | EventKind::CancelRequested { .. }
            | EventKind::TerminateRequested { .. } => true,
            other => match other.op() {
                Some(op) => match self.ops.get(op) {
                    (Some(Slot::Waiting(_)), Some((p, state))) => {
                        p.row(state, other.type_name()).is_some()
                    }
                    _ => false,
                },
                None => false,
            },
        }
    }

    /// Why [`State::wants`] refuses a delivered event, for the error that reports a recorded
    /// one: the journal holds a delivery that the code, at that point, cannot take.
    pub(crate) fn refusal(&self, kind: &EventKind) -> String {
        let Some(op) = kind.op() else {
            return "had already started (an execution starts once)".to_owned();
        };
        match self.ops.get(op) {
            (Some(Slot::Waiting(_)), Some((issued, state))) => format!(
                "issued operation {op} as {issued}, which takes no {} while {state}",
                kind.type_name()
            ),
            (Some(Slot::Waiting(_)), None) => {
                format!(
                    "waits for operation {op} as an event wait, not for a {}",
                    kind.type_name()
                )
            }
            (Some(Slot::Done(_)), _) => {
                format!("already has the result of operation {op} (a duplicate delivery)")
            }
            (Some(Slot::Abandoned), _) => {
                format!("no longer waits for operation {op} (it was abandoned)")
            }
            (None, _) => format!(
                "has no operation {op} waiting for a result (not issued yet, already completed, \
                 or detached)"
            ),
        }
    }

    /// Hands a delivered event to the operation waiting for it: moves the operation along its
    /// table and completes its slot, in one lookup of the operation.
    pub(crate) fn apply_delivered(&mut self, at: Timestamp, kind: EventKind) {
        self.now = self.now.max(at);
        let event = kind.type_name();
        let (op, completion) = match kind {
            EventKind::ActivityCompleted { op, output }
            | EventKind::StepCompleted { op, output }
            | EventKind::QueueEventReceived { op, data: output } => (op, Completion::Ok(output)),
            EventKind::ChildCompleted { op, output } => {
                self.open_children.remove(&op);
                (op, Completion::Ok(output))
            }
            EventKind::ActivityFailed { op, failure } | EventKind::StepFailed { op, failure } => {
                (op, Completion::Err(*failure))
            }
            EventKind::ChildFailed { op, failure } => {
                self.open_children.remove(&op);
                (op, Completion::Err(*failure))
            }
            EventKind::StepRetrying { op, .. } => (op, Completion::Retrying),
            EventKind::CallbackCompleted { op, output } => {
                self.callbacks.remove(&op);
                (op, Completion::Ok(output))
            }
            EventKind::CallbackFailed { op, failure } => {
                self.callbacks.remove(&op);
                (op, Completion::Err(*failure))
            }
            EventKind::TimerFired { op } => {
                // An await's own timer: it timed out.
                self.note_dropped_await(&op);
                (op, Completion::Fired)
            }
            EventKind::QueueEventEmitCompleted { op, outcome } => {
                // A plain enum always encodes; `null` would fail the decode, not panic.
                let outcome = Payload::encode(&outcome).unwrap_or_else(|_| Payload::null());
                (op, Completion::Ok(outcome))
            }
            EventKind::CallbackHeartbeat { op, .. } => {
                self.advance(&op, event);
                if let Some(cb) = self.callbacks.get_mut(&op) {
                    cb.last_beat = at.max(cb.last_beat);
                }
                return;
            }
            EventKind::EventRaised {
                name,
                data,
                taken_by,
            } => return self.apply_raised(name, data, taken_by),
            other => {
                if let Some(op) = other.op() {
                    self.advance(op, event);
                }
                return;
            }
        };
        self.ops
            .update(&op, Some(event), |slot| complete(slot, completion));
    }

    /// Hands an external event to the oldest wait for it, or buffers it.
    fn apply_raised(&mut self, name: String, data: Payload, taken_by: Option<OpId>) {
        self.events_seen += 1;
        let seq = self.events_seen;
        if let Some(op) = &taken_by {
            if self.skipped_scope_of(op) {
                // Taken by a wait in a context whose body replay does not run.
                return;
            }
        }
        let waiter = self
            .event_waiters
            .get_mut(&name)
            .and_then(|q| q.pop_front());
        match waiter {
            Some(op) => {
                self.ops.update(&op, Some("event_raised"), |slot| {
                    complete(slot, Completion::Ok(data))
                });
            }
            None => self
                .buffered_events
                .entry(name)
                .or_default()
                .push_back((seq, data)),
        }
    }

    /// Completes the slot of `op` (see [`complete`]).
    pub(crate) fn complete(&mut self, op: &OpId, completion: Completion) {
        self.ops.update(op, None, |slot| complete(slot, completion));
    }

    /// Registers a wait for the next event called `name`, taking a buffered one at once if any.
    pub(crate) fn wait_for_event(&mut self, op: OpId, name: &str) {
        let buffered = self
            .buffered_events
            .get_mut(name)
            .and_then(|q| q.pop_front());
        match buffered {
            Some((_, data)) => {
                self.advance(&op, "event_raised");
                self.ops.set_slot(&op, Slot::Done(Completion::Ok(data)));
            }
            None => {
                self.ops.set_slot(&op, Slot::Waiting(None));
                self.event_waiters
                    .entry(name.to_owned())
                    .or_default()
                    .push_back(op);
            }
        }
    }

    /// Marks an operation whose future was dropped before completing.
    pub(crate) fn abandon(&mut self, op: &OpId) {
        let waiting_activity = matches!(
            self.ops.get(op),
            (Some(Slot::Waiting(_)), Some((Primitive::Activity, _)))
        );
        if waiting_activity && self.live && !self.is_replaying() {
            self.dropped_activities.push(op.clone());
        }
        self.note_dropped_await(op);
        self.advance(op, ABANDONED);
        self.ops.remove_machine(op);
        self.ops.update(op, None, |slot| match slot {
            Some(Slot::Waiting(_)) => *slot = Some(Slot::Abandoned),
            Some(Slot::Done(_)) => *slot = None,
            Some(Slot::Abandoned) | None => {}
        });
        for q in self.event_waiters.values_mut() {
            q.retain(|o| o != op);
        }
    }

    /// External events that arrived but were never taken by a wait, oldest first (carried over
    /// to the next execution by continue-as-new).
    pub(crate) fn unconsumed_events(&self) -> Vec<(String, Payload)> {
        let mut all: Vec<(u64, &String, &Payload)> = self
            .buffered_events
            .iter()
            .flat_map(|(name, q)| q.iter().map(move |(seq, data)| (*seq, name, data)))
            .collect();
        all.sort_by_key(|(seq, _, _)| *seq);
        all.into_iter()
            .map(|(_, n, d)| (n.clone(), d.clone()))
            .collect()
    }
}

/// Completes a slot: an operation waiting gets `completion` and its future is woken; one
/// abandoned is forgotten (a late completion is ignored); one already done keeps its result.
fn complete(slot: &mut Option<Slot>, completion: Completion) {
    match slot {
        Some(Slot::Waiting(waker)) => {
            let waker = waker.take();
            *slot = Some(Slot::Done(completion));
            if let Some(w) = waker {
                w.wake();
            }
        }
        Some(Slot::Abandoned) => *slot = None,
        Some(Slot::Done(_)) | None => {}
    }
}

impl State {
    /// Begins a retried attempt: `start` says which, and what earlier attempts completed.
    pub(crate) fn start_attempt(&mut self, start: AttemptStart) {
        self.attempt = start.attempt;
        self.recorded = start
            .recorded
            .iter()
            .filter_map(|r| Some((r.issued.op()?.clone(), r.clone())))
            .collect();
        self.earlier = start.recorded;
    }

    /// The result an earlier attempt recorded for the operation `issue` would start, if it
    /// recorded one for the same kind of operation with the same id and name: the operation is
    /// then not issued again, and completes at once with it (on replay too, since the recorded
    /// results are journaled in the execution's start).
    pub(crate) fn take_recorded(&mut self, issue: &EventKind) -> Option<Completion> {
        if self.recorded.is_empty() {
            return None;
        }
        let op = issue.op()?;
        if !same_operation(&self.recorded.get(op)?.issued, issue) {
            return None;
        }
        let recorded = self.recorded.remove(op)?;
        match recorded.completion {
            EventKind::ActivityCompleted { output, .. }
            | EventKind::StepCompleted { output, .. }
            | EventKind::ChildCompleted { output, .. } => Some(Completion::Ok(output)),
            EventKind::TimerFired { .. } => Some(Completion::Fired),
            _ => None,
        }
    }
}

/// Whether two issued events ask for the same operation: same type, operation id and name.
fn same_operation(recorded: &EventKind, requested: &EventKind) -> bool {
    std::mem::discriminant(recorded) == std::mem::discriminant(requested)
        && recorded.op() == requested.op()
        && recorded.name() == requested.name()
}
