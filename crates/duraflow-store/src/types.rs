//! The data a store keeps and exchanges with the runtime.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use duraflow_core::{
    ActivityOptions, Event, EventKind, Failure, InstanceOptions, OpId, ParentLink, Payload,
    Timestamp, DEFAULT_QUEUE,
};
use duraflow_core::{FeedRecord, NewAwait, NewEmit};
pub use duraflow_core::{MessageKind, NewCallback, NewInstance, NewMessage, NewTask, OpResult};
use serde::{Deserialize, Serialize};

pub(crate) use crate::filter::FetchFilter;

use crate::error::StoreError;

/// A fencing token: proof that the holder's lease on an instance or a task is still the current
/// one. Every fetch issues a new token; a write with an older token is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseToken(pub i64);

/// The id of an inbox message, increasing in the order messages were sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub i64);

/// The id of an activity task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub i64);

/// The status of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Created; its first turn has not run yet.
    Pending,
    /// Started and not finished (including while it waits for timers or events).
    Running,
    /// Finished with an output.
    Completed,
    /// Finished with a failure.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Terminated.
    Terminated,
}

impl InstanceStatus {
    /// Every status.
    pub const ALL: [InstanceStatus; 6] = [
        InstanceStatus::Pending,
        InstanceStatus::Running,
        InstanceStatus::Completed,
        InstanceStatus::Failed,
        InstanceStatus::Cancelled,
        InstanceStatus::Terminated,
    ];

    /// Whether the instance has finished for good.
    pub fn is_terminal(self) -> bool {
        !matches!(self, InstanceStatus::Pending | InstanceStatus::Running)
    }

    /// The status as stored (`pending`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Pending => "pending",
            InstanceStatus::Running => "running",
            InstanceStatus::Completed => "completed",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Cancelled => "cancelled",
            InstanceStatus::Terminated => "terminated",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstanceStatus {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstanceStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "unknown status {s:?}: expected one of pending, running, completed, failed, \
                     cancelled, terminated"
                ))
            })
    }
}

/// What a store knows about an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The instance id.
    pub id: String,
    /// The workflow's registered name.
    pub name: String,
    /// The status.
    pub status: InstanceStatus,
    /// The current execution (1, then one more after each continue-as-new).
    pub execution: u32,
    /// The current execution's input.
    pub input: Payload,
    /// The output, once completed.
    pub output: Option<Payload>,
    /// The failure, once failed (also set for cancelled and terminated instances).
    pub failure: Option<Failure>,
    /// The parent, for a child workflow that reports back.
    pub parent: Option<ParentLink>,
    /// The queue whose engines run its turns.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// What its start set besides the input: priority, concurrency key, headers, policies.
    #[serde(default, skip_serializing_if = "InstanceOptions::is_default")]
    pub options: InstanceOptions,
    /// The attempt its current execution runs: 1, and one more each time the workflow failed
    /// and its retry policy started it again.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// When the instance was created.
    pub created_at: Timestamp,
    /// When the instance last changed.
    pub updated_at: Timestamp,
    /// The version of the workflow's code that started the current execution: the version
    /// the engine that ran the execution's first turn registered it with (`Workflow::VERSION`,
    /// `EngineBuilder::workflow_version`), as its `workflow_started` event records it. `None`
    /// while pending, when that engine registered no version, and for executions started
    /// before versions were recorded. Every read fills it.
    #[serde(default)]
    pub version: Option<String>,
    /// How many events the current execution's journal holds. Filled only by
    /// [`Management::describe`] (and so `Client::describe`, `duraflow show` and the HTTP
    /// API's instance); `None` from every other read ([`Store::instance`], lists, fetches),
    /// which would otherwise read the journal for it.
    ///
    /// [`Management::describe`]: crate::Management::describe
    /// [`Store::instance`]: crate::Store::instance
    #[serde(default)]
    pub journal_len: Option<u64>,
    /// When the current execution's last journal event was appended (its `at`), when
    /// [`InstanceInfo::journal_len`] is filled and the journal holds any.
    #[serde(default)]
    pub last_event_at: Option<Timestamp>,
}

impl InstanceInfo {
    /// For a pending instance, what it waits for, in words: an engine that serves its queue
    /// and has registered its workflow (engines take nothing else, so an instance no running
    /// engine serves stays pending, saying so here). `None` once it has started.
    pub fn waiting_for(&self) -> Option<String> {
        (self.status == InstanceStatus::Pending).then(|| {
            format!(
                "waiting for an engine that serves queue {:?} and has registered workflow {:?}",
                self.queue, self.name
            )
        })
    }
}

fn first_attempt() -> u32 {
    1
}

fn default_queue() -> String {
    DEFAULT_QUEUE.to_owned()
}

/// The longest instance id a store accepts, in bytes.
pub const MAX_INSTANCE_ID_LEN: usize = 512;

/// Checks an instance id: not empty (or blank) and at most [`MAX_INSTANCE_ID_LEN`] bytes. Every
/// store applies it to the instances it creates, so an id is valid everywhere or nowhere.
pub fn validate_instance_id(id: &str) -> Result<(), StoreError> {
    if id.trim().is_empty() {
        return Err(StoreError::Invalid(
            "an instance id must not be empty; give the instance an id or let duraflow \
             generate one"
                .into(),
        ));
    }
    if id.len() > MAX_INSTANCE_ID_LEN {
        return Err(StoreError::Invalid(format!(
            "instance id of {} bytes is longer than the {MAX_INSTANCE_ID_LEN} bytes allowed",
            id.len()
        )));
    }
    Ok(())
}

/// What creating an instance did.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateOutcome {
    /// The instance was created, with a start message in its inbox.
    Created,
    /// An instance with that id already existed; nothing was changed.
    Existing(Box<InstanceInfo>),
}

/// A message in an inbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Its id; messages to one instance are delivered in id order.
    pub id: MessageId,
    /// The addressee.
    pub instance_id: String,
    /// What it says.
    pub kind: MessageKind,
    /// It is not delivered before this time.
    pub visible_at: Timestamp,
}

/// The journal a leased turn comes with.
#[derive(Clone, Debug, PartialEq)]
pub enum Journal {
    /// Every event of the current execution, in order.
    Events(Vec<Event>),
    /// Not read: the caller's [`crate::JournalCache`] said it holds the journal as its own last
    /// commit left it, and no other commit has been made to the instance since.
    Cached,
    /// Not read: the journal is long, and the store leaves it to the caller to read with
    /// [`crate::Store::journal`] (the lease keeps anyone else from appending to it meanwhile),
    /// so that reading it does not hold up the store's other work. The SQLite store reads a
    /// journal of up to [`INLINE_JOURNAL`] events inside its writer's transaction and leaves a
    /// longer one to a reader connection.
    Unread,
}

/// The most journal events a store reads while it leases a turn before it answers
/// [`Journal::Unread`] instead (a store may read more, or always read).
pub const INLINE_JOURNAL: usize = 256;

impl Journal {
    /// The events, when they were read.
    pub fn events(&self) -> Option<&[Event]> {
        match self {
            Journal::Events(events) => Some(events),
            Journal::Cached | Journal::Unread => None,
        }
    }
}

/// An instance with visible messages, leased to the caller for one turn.
#[derive(Debug)]
pub struct TurnWork {
    /// The instance as stored.
    pub instance: InstanceInfo,
    /// The current execution's journal (or word that the caller holds it), or why it could not
    /// be read.
    pub journal: Result<Journal, StoreError>,
    /// The visible messages, in id order.
    pub messages: Vec<Message>,
    /// The lease's fencing token.
    pub token: LeaseToken,
}

impl TaskWork {
    /// `task` as the first attempt of the committer that claimed it ([`TaskClaim`]), once
    /// stored with `id` and leased with `token` until `lease_until`.
    pub fn claimed(
        task: &NewTask,
        id: TaskId,
        token: LeaseToken,
        lease_until: Timestamp,
    ) -> TaskWork {
        TaskWork {
            id,
            instance_id: task.instance_id.clone(),
            execution: task.execution,
            op: task.op.clone(),
            name: task.name.clone(),
            input: task.input.clone(),
            options: task.options.clone(),
            attempt: 1,
            scheduled_at: task.scheduled_at,
            token,
            lease_until,
            last_failure: None,
            heartbeat_details: None,
        }
    }
}

/// An activity task leased to the caller for one attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskWork {
    /// The task.
    pub id: TaskId,
    /// The instance that scheduled it.
    pub instance_id: String,
    /// The execution that scheduled it.
    pub execution: u32,
    /// The operation.
    pub op: OpId,
    /// The activity's registered name.
    pub name: String,
    /// The input.
    pub input: Payload,
    /// Retry and timeout options.
    pub options: ActivityOptions,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// When it was scheduled.
    pub scheduled_at: Timestamp,
    /// The lease's fencing token.
    pub token: LeaseToken,
    /// When the lease runs out unless renewed.
    pub lease_until: Timestamp,
    /// Why the previous attempt failed, when it was released for a retry.
    pub last_failure: Option<Failure>,
    /// The details of the latest heartbeat an earlier attempt recorded ([`Store::renew_task`]
    /// with details), for this attempt to resume from; `None` when none did.
    ///
    /// [`Store::renew_task`]: crate::Store::renew_task
    pub heartbeat_details: Option<Payload>,
}

/// How a leased task is given back without a result.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskRelease {
    /// The attempt failed and another will be made at `visible_at`.
    Retry {
        /// When the next attempt may start.
        visible_at: Timestamp,
        /// Why this attempt failed.
        failure: Failure,
    },
    /// The worker is shutting down: the attempt does not count and the task is visible at once.
    HandBack,
}

/// An activity's final result, reported with the lease token of the attempt that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskCompletion {
    /// The task.
    pub id: TaskId,
    /// The attempt's lease token.
    pub token: LeaseToken,
    /// The result, posted to the instance's inbox.
    pub result: OpResult,
    /// Lease the instance's next turn to the caller for this long, if nobody holds it, once the
    /// result is in its inbox (the caller then runs the turn without fetching it).
    pub claim_turn: Option<Duration>,
}

/// What a completion did besides posting its result.
#[derive(Debug, Default)]
pub struct Completed {
    /// The instance's turn, leased to the caller, when the completion asked for it and the
    /// instance was free, unfinished and due. Claims are granted after every completion of the
    /// batch has been posted, and once per instance per batch.
    pub turn: Option<TurnWork>,
}

/// A request to lease some of the activity tasks a commit creates to the committer at once, so
/// it runs them without fetching them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskClaim {
    /// Lease at most this many of the commit's new tasks, the first ones in order, stopping at
    /// the first task of a queue with a task concurrency limit
    /// ([`crate::QueueConfig::task_concurrency`]): that one and those after it are left to a
    /// fetch, which enforces the limit.
    pub max: usize,
    /// For this long from the commit's `now`.
    pub lease: Duration,
}

/// What a successful turn commit returns.
#[derive(Debug, Default, PartialEq)]
pub struct Committed {
    /// The new tasks leased to the committer by the commit's [`TaskClaim`], each with its first
    /// attempt counted.
    pub tasks: Vec<TaskWork>,
}

/// Everything one turn changes, committed atomically: all of it or none.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnCommit {
    /// The instance.
    pub instance_id: String,
    /// The turn's lease token.
    pub token: LeaseToken,
    /// The execution the events belong to.
    pub execution: u32,
    /// The journal length the turn started from; the new events are appended after it.
    pub journal_base: usize,
    /// New journal events, appended in order.
    pub new_events: Vec<Event>,
    /// Inbox messages the turn consumed, deleted.
    pub consumed: Vec<MessageId>,
    /// Messages to send (timers to itself, results to a parent, cancellations to children).
    pub messages: Vec<NewMessage>,
    /// Child instances to create; one that exists already is left as it is.
    pub new_instances: Vec<NewInstance>,
    /// Activity tasks to create.
    pub tasks: Vec<NewTask>,
    /// The instance's new status, with the output or failure for a finished one. A finished
    /// instance's remaining messages and tasks are deleted.
    pub status: InstanceStatus,
    /// The output, when completed.
    pub output: Option<Payload>,
    /// The failure, when failed, cancelled or terminated.
    pub failure: Option<Failure>,
    /// Continue as a new execution (execution + 1, fresh journal) with this input.
    pub continue_as_new: Option<Payload>,
    /// With `continue_as_new`: the new execution is a retry of the workflow after a failed
    /// attempt. The instance's `attempt` becomes the given one (a plain continue-as-new sets
    /// it back to 1), and the instance is not due before `start_at`, whatever its inbox holds,
    /// so that messages sent during the backoff wait for the new attempt's start.
    pub next_attempt: Option<NextAttempt>,
    /// Lease some of the new tasks to the committer.
    pub claim_tasks: Option<TaskClaim>,
    /// `None`: the commit ends the turn and releases its lease. `Some(d)`: a *checkpoint* of a
    /// turn that goes on: everything above is applied as for any commit, but the lease stays
    /// with the same token and now runs until `now + d`, so the same turn commits again (another
    /// checkpoint or its final commit) with `journal_base` moved past the events appended here.
    /// A checkpoint must leave the status `Running` and must not continue as new; a store
    /// refuses one that does (`StoreError::Invalid`) and writes nothing of it. If the lease of
    /// a checkpointed turn runs out, the instance is due again, even with an empty inbox, so
    /// that another turn resumes it from the checkpointed journal (likewise when the turn is
    /// abandoned). Submit a turn's next commit after its checkpoint's result: a batch applies
    /// one commit per instance (PostgreSQL refuses a second one as `LeaseLost`).
    pub keep_lease: Option<Duration>,
    /// Callbacks to open, for this instance's current execution; an external party resolves
    /// one with [`crate::Store::resolve_callback`].
    pub callbacks: Vec<NewCallback>,
    /// Callbacks of this instance's current execution that the turn settled itself (it timed
    /// them out), closed with the given status so that later resolutions are refused. Only
    /// open callbacks change.
    pub closed_callbacks: Vec<(OpId, CallbackStatus)>,
    /// Activity tasks of this instance's execution that the workflow no longer wants (their
    /// operations were dropped: the branches of a decided batch, the loser of a race):
    /// deleted, so they do not run again; a worker running one loses its lease (renewing it
    /// or completing it fails).
    pub cancelled_tasks: Vec<OpId>,
    /// Queue-wide events the turn emits, in order (see [`crate::queue_events`]): each is
    /// stored unless its queue has it already, answers the waiters of its queue and name, and
    /// sends the emitting operation its [`crate::EmitOutcome`] as a
    /// [`MessageKind::EmitResult`]. Applied before [`TurnCommit::awaits`].
    pub emits: Vec<NewEmit>,
    /// Awaits of queue-wide events the turn registers: one whose event is stored is answered
    /// in this commit (a [`MessageKind::QueueEvent`] to the instance); the others wait for
    /// an emit, or until the instance finishes.
    pub awaits: Vec<NewAwait>,
    /// Awaits of queue-wide events of this instance's execution that the workflow no longer
    /// wants (they timed out, or were dropped while they waited): their waiters are deleted,
    /// after [`TurnCommit::awaits`] are registered, so an emit no longer counts or answers
    /// them.
    pub cancelled_awaits: Vec<OpId>,
    /// `Some`: a **direct turn** ([`DirectTurn`]). The committer held the lease of an
    /// activity task of this instance's current execution, ran the instance's next turn on
    /// the task's result in memory without leasing the instance, and commits both at once: the
    /// task is deleted, its result going into the journal (in `new_events`) instead of the
    /// inbox. `token` then names the commit whose journal the turn continued (the instance's
    /// last commit), not a lease. The store refuses the commit as `LeaseLost`, writing
    /// nothing, unless at `now` the instance is not leased, its last commit has `token`, and
    /// the task's lease is current (a task that is gone is `NotFound`; one of another
    /// instance or execution is `Invalid`). Messages waiting in the inbox stay there for the
    /// next turn. A direct turn that ends leaves the instance unleased and its journal named
    /// by `token`, so the committer's warm run of it stays usable. One that keeps the lease (a
    /// checkpoint, see [`TurnCommit::keep_lease`]) takes the instance's lease with `token`:
    /// the turn goes on as a leased one, whose later commits are not direct.
    pub direct: Option<DirectTurn>,
    /// Records to append to the feed (see [`crate::feed`]), in order, in the same transaction:
    /// each gets the next position, unless its instance already has it (its `(execution,
    /// seq)` is not after the last one appended for the instance), when it is left out.
    pub feed: Vec<FeedRecord>,
    /// When the commit happens.
    pub now: Timestamp,
}

impl TurnCommit {
    /// For a commit that begins its execution's journal (its events start at position 0 with
    /// `workflow_started`): `Some` with the version that event records, which stores keep as
    /// the instance's [`InstanceInfo::version`]. `None` for every other commit, which leaves the
    /// version as it is.
    pub fn started_version(&self) -> Option<Option<&str>> {
        if self.journal_base != 0 {
            return None;
        }
        match self.new_events.first().map(|e| &e.kind) {
            Some(EventKind::WorkflowStarted { version, .. }) => Some(version.as_deref()),
            _ => None,
        }
    }

    /// For a commit that continues as new: the time before which the instance is not due
    /// (its `not_before`), which is when the new execution's start message becomes visible
    /// (the start this commit sends its own instance, or for a retry without one, the retry's
    /// `start_at`; the later of the two). A fetch with an earlier time would lease the new
    /// execution's first turn with the messages sent to it already but without its start, and
    /// what the start carries over would be lost. `None` for every other commit, which leaves
    /// the instance's `not_before` as it is.
    pub fn next_execution_at(&self) -> Option<Timestamp> {
        self.continue_as_new.as_ref()?;
        let next = self.execution + 1;
        let start = self
            .messages
            .iter()
            .filter(|m| m.instance_id == self.instance_id)
            .filter(|m| matches!(m.kind, MessageKind::Start { execution, .. } if execution == next))
            .map(|m| m.visible_at)
            .max();
        let retry = self.next_attempt.map(|next| next.start_at);
        start.max(retry)
    }

    /// The status the commit leaves its instance in: running for a continue-as-new (the new
    /// execution runs), else [`TurnCommit::status`].
    pub fn final_status(&self) -> InstanceStatus {
        if self.continue_as_new.is_some() {
            InstanceStatus::Running
        } else {
            self.status
        }
    }

    /// The attempt the new execution of a continue-as-new runs: the one
    /// [`TurnCommit::next_attempt`] names for a retry, else 1. `None` for a commit that does
    /// not continue as new, which leaves the attempt as it is.
    pub fn new_attempt(&self) -> Option<u32> {
        self.continue_as_new
            .as_ref()
            .map(|_| self.next_attempt.map_or(1, |next| next.attempt))
    }
}

/// What makes a turn commit a direct turn (see [`TurnCommit::direct`]): the activity task whose
/// result the turn delivered, held by the committer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectTurn {
    /// The task: deleted by the commit.
    pub task: TaskId,
    /// The token of the committer's lease of the task, which must be current.
    pub task_token: LeaseToken,
}

/// The attempt a retried workflow's next execution runs (see [`TurnCommit::next_attempt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextAttempt {
    /// The attempt: 2 for the first retry.
    pub attempt: u32,
    /// Not due before this time (the end of the backoff).
    pub start_at: Timestamp,
}

/// The state of a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    /// Waiting for its result.
    Open,
    /// An external party completed it.
    Completed,
    /// An external party failed it.
    Failed,
    /// It timed out (its deadline passed, or its turn timed it out).
    TimedOut,
}

impl CallbackStatus {
    /// Every status.
    pub const ALL: [CallbackStatus; 4] = [
        CallbackStatus::Open,
        CallbackStatus::Completed,
        CallbackStatus::Failed,
        CallbackStatus::TimedOut,
    ];

    /// The status as stored (`open`, `completed`, `failed`, `timed_out`).
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackStatus::Open => "open",
            CallbackStatus::Completed => "completed",
            CallbackStatus::Failed => "failed",
            CallbackStatus::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for CallbackStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CallbackStatus {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallbackStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "unknown callback status {s:?}: expected one of open, completed, failed, \
                     timed_out"
                ))
            })
    }
}

/// What an external party reports for a callback.
#[derive(Clone, Debug, PartialEq)]
pub enum CallbackResolution {
    /// It completed with this value.
    Complete(Payload),
    /// It failed.
    Fail(Failure),
    /// Its work is still going on; the callback stays open.
    Heartbeat,
}

/// The callback a resolution reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackTarget {
    /// The instance that waits for it.
    pub instance_id: String,
    /// The execution that opened it.
    pub execution: u32,
    /// The operation.
    pub op: OpId,
    /// Its name.
    pub name: String,
}

impl TurnCommit {
    /// A commit by the turn of `instance` leased with `token`, at `now`, that changes nothing:
    /// no new events (appended at 0), nothing consumed, status `running`, nothing created, the
    /// lease released. Fill in what the turn did.
    pub fn unchanged(instance: &InstanceInfo, token: LeaseToken, now: Timestamp) -> TurnCommit {
        TurnCommit {
            instance_id: instance.id.clone(),
            token,
            execution: instance.execution,
            journal_base: 0,
            new_events: Vec::new(),
            consumed: Vec::new(),
            messages: Vec::new(),
            new_instances: Vec::new(),
            tasks: Vec::new(),
            status: InstanceStatus::Running,
            output: None,
            failure: None,
            continue_as_new: None,
            next_attempt: None,
            claim_tasks: None,
            keep_lease: None,
            callbacks: Vec::new(),
            closed_callbacks: Vec::new(),
            cancelled_tasks: Vec::new(),
            emits: Vec::new(),
            awaits: Vec::new(),
            cancelled_awaits: Vec::new(),
            direct: None,
            feed: Vec::new(),
            now,
        }
    }

    /// A commit of the turn `work` at `now` that consumes every message the turn came with and
    /// changes nothing else ([`TurnCommit::unchanged`] otherwise), its events appended after
    /// the journal as read (or at 0 for a cached journal, whose length only the caller knows).
    pub fn consuming(work: &TurnWork, now: Timestamp) -> TurnCommit {
        let mut commit = TurnCommit::unchanged(&work.instance, work.token, now);
        commit.journal_base = work
            .journal
            .as_ref()
            .ok()
            .and_then(Journal::events)
            .map_or(0, <[Event]>::len);
        commit.consumed = work.messages.iter().map(|m| m.id).collect();
        commit
    }
}

/// Which instances to list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListFilter {
    /// Only these statuses (all when empty).
    pub statuses: Vec<InstanceStatus>,
    /// Only instances of this workflow name.
    pub name: Option<String>,
    /// Only instances of this queue.
    pub queue: Option<String>,
    /// Only instances created at or after this time.
    pub created_from: Option<Timestamp>,
    /// Only instances created before this time.
    pub created_before: Option<Timestamp>,
    /// Only instances last changed at or after this time.
    pub updated_from: Option<Timestamp>,
    /// Only instances last changed before this time (with a finished status: "finished
    /// before T").
    pub updated_before: Option<Timestamp>,
    /// At most this many (a store caps it at 1,000; 100 when 0).
    pub limit: usize,
    /// Continue after this cursor, from a previous page's `next` (in a listing by id, an
    /// instance id; see [`ListFilter::order`]).
    pub after: Option<String>,
}

/// The order a listing comes in, which its filter decides ([`ListFilter::order`]); each is
/// read from an index in that order, so a page costs the same at any depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListOrder {
    /// By id (byte order): no creation-time range, and no update-time range over finished
    /// statuses only.
    Id,
    /// By creation time, then id: a creation-time range is given.
    Created,
    /// By last change, then id: an update-time range over finished statuses only (a finished
    /// instance's last change is its finish, "finished before T").
    Finished,
}

/// Where a listing continues: after the instance `id`, which sorted at `time` (its creation
/// or last change, in a listing by time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListCursor {
    /// The sort time of the last instance listed (`None` in a listing by id).
    pub time: Option<Timestamp>,
    /// The id of the last instance listed.
    pub id: String,
}

impl ListFilter {
    /// The most instances one page holds.
    pub const MAX_LIMIT: usize = 1_000;
    /// The page size when `limit` is 0.
    pub const DEFAULT_LIMIT: usize = 100;

    /// The page size this filter asks for: `limit`, 100 when 0, at most 1,000.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }

    /// The order this filter lists in: by creation time when a creation-time range is given,
    /// by last change when an update-time range is given with finished statuses only, by id
    /// otherwise.
    pub fn order(&self) -> ListOrder {
        if self.created_from.is_some() || self.created_before.is_some() {
            ListOrder::Created
        } else if (self.updated_from.is_some() || self.updated_before.is_some())
            && !self.statuses.is_empty()
            && self.statuses.iter().all(|s| s.is_terminal())
        {
            ListOrder::Finished
        } else {
            ListOrder::Id
        }
    }

    /// The position [`ListFilter::after`] names, in this filter's order. A listing by time
    /// continues from a cursor `<milliseconds>/<id>` that a previous page's `next` gave;
    /// anything else there is refused with what to pass instead.
    pub fn cursor(&self) -> Result<Option<ListCursor>, StoreError> {
        let Some(after) = &self.after else {
            return Ok(None);
        };
        if self.order() == ListOrder::Id {
            return Ok(Some(ListCursor {
                time: None,
                id: after.clone(),
            }));
        }
        let parsed = after
            .split_once('/')
            .and_then(|(time, id)| Some((time.parse::<i64>().ok()?, id)));
        match parsed {
            Some((time, id)) => Ok(Some(ListCursor {
                time: Some(Timestamp(time)),
                id: id.to_owned(),
            })),
            None => Err(StoreError::Invalid(format!(
                "cursor {after:?} is not a cursor of a listing by time: a listing with a \
                 creation-time range, or an update-time range over finished statuses, comes \
                 in time order and continues from the `next` of its previous page \
                 (`<milliseconds>/<id>`)"
            ))),
        }
    }

    /// The time `info` sorts by in this filter's order (`None` by id).
    pub fn sort_time(&self, info: &InstanceInfo) -> Option<Timestamp> {
        match self.order() {
            ListOrder::Id => None,
            ListOrder::Created => Some(info.created_at),
            ListOrder::Finished => Some(info.updated_at),
        }
    }

    /// Whether `info` passes the filter's conditions (not its paging).
    pub fn matches(&self, info: &InstanceInfo) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&info.status))
            && self.name.as_ref().is_none_or(|n| *n == info.name)
            && self.queue.as_ref().is_none_or(|q| *q == info.queue)
            && self.created_from.is_none_or(|t| info.created_at >= t)
            && self.created_before.is_none_or(|t| info.created_at < t)
            && self.updated_from.is_none_or(|t| info.updated_at >= t)
            && self.updated_before.is_none_or(|t| info.updated_at < t)
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The instances, in the listing's order ([`ListFilter::order`]).
    pub instances: Vec<InstanceInfo>,
    /// The cursor for the next page, if there is one.
    pub next: Option<String>,
}

impl Page {
    /// The page `filter` asks for, made of `instances`: the first `page_size() + 1` in the
    /// filter's order that pass it and come after its cursor (as a store reads them). The
    /// `next` cursor is the last instance's id in a listing by id, and `<milliseconds>/<id>`
    /// of its sort time in a listing by time.
    pub fn listed(mut instances: Vec<InstanceInfo>, filter: &ListFilter) -> Page {
        let size = filter.page_size();
        let next = if instances.len() > size {
            instances.truncate(size);
            instances.last().map(|last| match filter.sort_time(last) {
                Some(time) => format!("{}/{}", time.0, last.id),
                None => last.id.clone(),
            })
        } else {
            None
        };
        Page { instances, next }
    }

    /// The page of `size` made of `instances` in a listing by id, the first `size + 1` in id
    /// order that pass the filter (as a store reads them): one more than fits means there is a
    /// next page. [`Page::listed`] serves every order.
    pub fn of(mut instances: Vec<InstanceInfo>, size: usize) -> Page {
        let next = if instances.len() > size {
            instances.truncate(size);
            instances.last().map(|i| i.id.clone())
        } else {
            None
        };
        Page { instances, next }
    }
}

/// Counts by status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Instances by status.
    pub instances: Vec<(InstanceStatus, u64)>,
    /// Inbox messages waiting.
    pub messages: u64,
    /// Activity tasks waiting or running.
    pub tasks: u64,
    /// Open callbacks.
    pub callbacks: u64,
}

/// When the next delayed work becomes visible, for a dispatcher deciding how long to sleep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextDue {
    /// The earliest future message visibility or instance lease expiry.
    pub turn: Option<Timestamp>,
    /// The earliest future task visibility or task lease expiry.
    pub task: Option<Timestamp>,
}
