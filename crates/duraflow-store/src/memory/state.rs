//! The in-memory store's state and the operations on it, all synchronous: the caller holds the
//! lock for the whole of each operation, which makes every operation atomic.
//!
//! Two ordered indexes keep every operation logarithmic in the number of instances and tasks:
//! `due` orders the instances that have work by when it is due (see [`Instance::due_key`]), and
//! `task_due` orders tasks by when they can next be fetched (their visibility, or their lease's
//! expiry while leased).

mod callbacks;
mod commit;
mod feed;
mod fetch;
mod flow;
mod index;
mod queue_events;
mod reads;
mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{ActivityOptions, Event, Failure, OpId, Payload, Timestamp};

use crate::error::{StoreError, StoreResult};
use crate::journal_cache::JournalCache;
use crate::rules::holds_lease;
use crate::wake::{instance_due_at, message_due_at, DueState};
use flow::Flow;
use index::{QueueIndex, TurnIndex, TurnSlot};

use crate::types::{
    CreateOutcome, FetchFilter, InstanceInfo, InstanceStatus, Journal, LeaseToken, Message,
    MessageId, MessageKind, NewInstance, NewMessage, TaskId, TurnWork,
};

/// Which notifications an operation calls for; sent once the lock is released.
pub(super) use crate::wake::Wake;

/// A lease on an instance or a task.
#[derive(Debug, Clone, Copy)]
struct Lease {
    token: LeaseToken,
    until: Timestamp,
}

impl Lease {
    /// Whether the lease still holds at `now`.
    fn live(self, now: Timestamp) -> bool {
        self.until > now
    }
}

/// Whether `lease` is the current lease and is held with `token`, live at `now` if given
/// ([`holds_lease`]).
fn holds(lease: Option<Lease>, token: LeaseToken, now: Option<Timestamp>) -> bool {
    holds_lease(lease.map(|l| (l.token, l.until)), token, now)
}

/// An instance's place in [`State::due`]: when its work is due, then its oldest message.
/// When an instance's work is due, then its oldest message, then its place in creation order
/// (unique: keys that tie on time and message never compare instance ids).
type DueKey = (Timestamp, MessageId, u64);

/// One execution's journal, kept as the events of each commit: appending never moves what is
/// there already (a single growing vector would copy a long journal each time it grows, on
/// the turn that happens to need the room).
#[derive(Debug, Default)]
pub(super) struct JournalLog {
    commits: Vec<Vec<Event>>,
    len: usize,
}

impl JournalLog {
    /// How many events it holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn append(&mut self, events: Vec<Event>) {
        if !events.is_empty() {
            self.len += events.len();
            self.commits.push(events);
        }
    }

    /// The last event, if any.
    pub(super) fn last(&self) -> Option<&Event> {
        self.commits.last().and_then(|events| events.last())
    }

    /// Every event, in order.
    pub(super) fn to_vec(&self) -> Vec<Event> {
        let mut all = Vec::with_capacity(self.len);
        for events in &self.commits {
            all.extend_from_slice(events);
        }
        all
    }
}

#[derive(Debug)]
struct Instance {
    info: InstanceInfo,
    /// The journal of every execution, kept after continue-as-new.
    journals: BTreeMap<u32, JournalLog>,
    inbox: BTreeMap<MessageId, Message>,
    /// The lease of the turn in progress (kept after it expires, for fencing, until the turn
    /// commits or is abandoned).
    lease: Option<Lease>,
    /// Set by `abandon_turn`: no turn before this time.
    not_before: Option<Timestamp>,
    /// Set by `abandon_turn` until the next commit that ends a turn: the abandoned turn is
    /// redone at `not_before` even with an empty inbox (a checkpoint can have consumed it).
    redo: bool,
    /// The token of the last turn committed.
    committed_with: LeaseToken,
    /// Its place in [`State::due`], while it has one.
    due: Option<TurnSlot<(DueKey, String)>>,
    /// When it was admitted (its first turn leased); `None` while it is pending.
    started_at: Option<Timestamp>,
    /// Its activity tasks.
    tasks: BTreeSet<TaskId>,
    /// The tokens of its callbacks.
    callbacks: BTreeSet<String>,
    /// The queues and names it has waiters for.
    awaited: BTreeSet<queue_events::EventKey>,
    /// Its place in creation order: the last tie-break of its due key.
    seq: u64,
}

impl Instance {
    /// When the instance's work is due ([`instance_due_at`]); ties go to the oldest message.
    fn due_key(&self) -> Option<DueKey> {
        let at = instance_due_at(&DueState {
            finished: self.info.status.is_terminal(),
            lease_until: self.lease.map(|lease| lease.until),
            earliest_message: self.inbox.values().map(|m| m.visible_at).min(),
            not_before: self.not_before,
            redo: self.redo,
        })?;
        let oldest = self.inbox.keys().next().copied();
        Some((at, oldest.unwrap_or(MessageId(i64::MAX)), self.seq))
    }

    /// Its concurrency key, if it was started with one.
    fn key(&self) -> Option<&str> {
        self.info.options.concurrency_key.as_deref()
    }

    /// When its work is due, if it is in the due index.
    fn due_at(&self) -> Option<Timestamp> {
        self.due.as_ref().map(|slot| slot.key.0 .0)
    }

    fn visible(&self, now: Timestamp) -> impl Iterator<Item = &Message> {
        self.inbox.values().filter(move |m| m.visible_at <= now)
    }
}

#[derive(Debug)]
struct Task {
    id: TaskId,
    instance_id: String,
    execution: u32,
    op: OpId,
    name: String,
    /// Its queue (from its options), kept for the due index.
    queue: String,
    input: Payload,
    options: ActivityOptions,
    scheduled_at: Timestamp,
    visible_at: Timestamp,
    /// Attempts made so far (counted at fetch, given back by a hand-back).
    attempt: u32,
    lease: Option<Lease>,
    last_failure: Option<Failure>,
    /// The details of the latest heartbeat of any attempt.
    heartbeat_details: Option<Payload>,
}

impl Task {
    /// When the task can next be fetched: its lease's expiry while leased, else its
    /// visibility.
    fn due_at(&self) -> Timestamp {
        self.lease.map_or(self.visible_at, |l| l.until)
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    instances: BTreeMap<String, Instance>,
    /// Instances with work, in the order it is due (overall, and per queue by priority).
    due: TurnIndex<(DueKey, String)>,
    /// Queue configurations and the counts flow control keeps.
    flow: Flow,
    tasks: BTreeMap<TaskId, Task>,
    /// Tasks by when they can next be fetched (overall and per queue).
    task_due: QueueIndex<(Timestamp, TaskId)>,
    /// Callbacks by token.
    callbacks: BTreeMap<String, callbacks::Callback>,
    /// Queue-wide events and their waiters.
    queue_events: queue_events::QueueEvents,
    feed: feed::FeedLog,
    last_message: i64,
    last_task: i64,
    last_token: i64,
    /// The last instance's place in creation order.
    last_instance: u64,
}

/// Moves `inst` to `key` in the due index (reusing its slot's strings when it moves).
fn reindex(due: &mut TurnIndex<(DueKey, String)>, inst: &mut Instance, key: Option<DueKey>) {
    let admitted = inst.started_at.is_some();
    let priority = inst.info.options.priority;
    let Some(key) = key else {
        if let Some(old) = inst.due.take() {
            due.remove(&old);
        }
        return;
    };
    let slot = match inst.due.take() {
        Some(old)
            if old.key.0 == key
                && old.admitted == admitted
                && old.priority == priority
                && old.queue == inst.info.queue =>
        {
            inst.due = Some(old);
            return;
        }
        Some(mut old) => {
            due.remove(&old);
            old.key.0 = key;
            old.admitted = admitted;
            old.priority = priority;
            if old.queue != inst.info.queue {
                old.queue.clone_from(&inst.info.queue);
            }
            old
        }
        None => TurnSlot {
            queue: inst.info.queue.clone(),
            priority,
            admitted,
            key: (key, inst.info.id.clone()),
        },
    };
    due.insert(&slot);
    inst.due = Some(slot);
}

/// Recomputes `inst`'s place in the due index.
fn refresh(due: &mut TurnIndex<(DueKey, String)>, inst: &mut Instance) {
    let key = inst.due_key();
    reindex(due, inst, key);
}

impl State {
    fn next_message_id(&mut self) -> MessageId {
        self.last_message += 1;
        MessageId(self.last_message)
    }

    fn next_task_id(&mut self) -> TaskId {
        self.last_task += 1;
        TaskId(self.last_task)
    }

    fn next_token(&mut self) -> LeaseToken {
        self.last_token += 1;
        LeaseToken(self.last_token)
    }

    /// Puts a message in an existing instance's inbox, without checks.
    fn deliver(&mut self, instance_id: &str, kind: MessageKind, visible_at: Timestamp) {
        let id = self.next_message_id();
        let Some(inst) = self.instances.get_mut(instance_id) else {
            return;
        };
        inst.inbox.insert(
            id,
            Message {
                id,
                instance_id: instance_id.to_owned(),
                kind,
                visible_at,
            },
        );
        // The new message can only make the work due earlier, and only when no turn holds
        // the instance: an update instead of a recomputation keeps big inboxes cheap.
        let key = match (inst.due.as_ref().map(|slot| slot.key.0), inst.lease) {
            (Some((at, oldest, seq)), None) => Some((
                at.min(message_due_at(visible_at, inst.not_before)),
                oldest,
                seq,
            )),
            (Some(key), Some(_)) => Some(key),
            (None, _) => inst.due_key(),
        };
        reindex(&mut self.due, inst, key);
    }

    /// Inserts an instance that does not exist yet, with its start message.
    fn insert_instance(&mut self, new: NewInstance, wake: &mut Wake) {
        let due_at = new.due_at();
        let id = new.id;
        let created_at = new.created_at;
        self.last_instance += 1;
        let seq = self.last_instance;
        let info = InstanceInfo {
            id: id.clone(),
            name: new.name,
            status: InstanceStatus::Pending,
            execution: 1,
            input: new.input,
            output: None,
            failure: None,
            parent: new.parent,
            queue: new.queue,
            options: new.options,
            attempt: 1,
            created_at,
            updated_at: created_at,
            version: None,
            journal_len: None,
            last_event_at: None,
        };
        self.instances.insert(
            id.clone(),
            Instance {
                info,
                journals: BTreeMap::from([(1, JournalLog::default())]),
                inbox: BTreeMap::new(),
                lease: None,
                // Not due before its start (a delayed one), whatever it is sent meanwhile.
                not_before: Some(due_at),
                redo: false,
                committed_with: LeaseToken(0),
                due: None,
                started_at: None,
                tasks: BTreeSet::new(),
                callbacks: BTreeSet::new(),
                awaited: BTreeSet::new(),
                seq,
            },
        );
        self.deliver(&id, MessageKind::start(1), due_at);
        wake.turns = true;
    }

    pub(super) fn create_instance(&mut self, new: NewInstance, wake: &mut Wake) -> CreateOutcome {
        if let Some(existing) = self.instances.get(&new.id) {
            return CreateOutcome::Existing(Box::new(existing.info.clone()));
        }
        self.insert_instance(new, wake);
        CreateOutcome::Created
    }

    /// Creates an instance and leases its first turn to the creator; nobody else is woken for
    /// it. A delayed start is not due yet: it is created as by [`State::create_instance`].
    pub(super) fn create_instance_claiming(
        &mut self,
        new: NewInstance,
        lease: Duration,
        wake: &mut Wake,
    ) -> (CreateOutcome, Option<TurnWork>) {
        let key = new.options.concurrency_key.as_deref();
        if new.due_at() > new.created_at || self.flow.needs_admission(&new.queue, key) {
            return (self.create_instance(new, wake), None);
        }
        let (id, now) = (new.id.clone(), new.created_at);
        let outcome = self.create_instance(new, &mut Wake::default());
        let turn = match outcome {
            CreateOutcome::Created => self.lease_turn(&id, now, lease, None),
            CreateOutcome::Existing(_) => None,
        };
        (outcome, turn)
    }

    pub(super) fn send(&mut self, message: NewMessage, wake: &mut Wake) -> StoreResult<()> {
        let inst = self
            .instances
            .get(&message.instance_id)
            .ok_or_else(|| StoreError::instance_not_found(&message.instance_id))?;
        if inst.info.status.is_terminal() {
            return Err(StoreError::InstanceFinished {
                id: message.instance_id,
                status: inst.info.status.to_string(),
            });
        }
        self.deliver(&message.instance_id, message.kind, message.visible_at);
        wake.turns = true;
        Ok(())
    }

    /// Sends `message` and leases its instance's turn to the sender when it is free at once
    /// (see `Store::send_claiming`); otherwise wakes the fetchers as [`State::send`] does.
    pub(super) fn send_claiming(
        &mut self,
        message: NewMessage,
        filter: &FetchFilter,
        now: Timestamp,
        lease: Duration,
        cache: Option<&Arc<dyn JournalCache>>,
        wake: &mut Wake,
    ) -> StoreResult<Option<TurnWork>> {
        let id = message.instance_id.clone();
        self.send(message, &mut Wake::default())?;
        let turn = if self.claimable(&id, filter, now) {
            self.lease_turn(&id, now, lease, cache)
        } else {
            None
        };
        if turn.is_none() {
            wake.turns = true;
        }
        Ok(turn)
    }

    /// Whether the turn of instance `id` may be claimed at `now` by a caller serving `filter`:
    /// it is due (visible work, no live lease, no backoff), and admitted already or in need of
    /// no admission.
    pub(super) fn claimable(&self, id: &str, filter: &FetchFilter, now: Timestamp) -> bool {
        self.instances.get(id).is_some_and(|inst| {
            filter.matches(&inst.info.queue, &inst.info.name)
                && inst.due_at().is_some_and(|at| at <= now)
                && (inst.started_at.is_some()
                    || !self.flow.needs_admission(&inst.info.queue, inst.key()))
                && inst.visible(now).next().is_some()
        })
    }

    /// Leases the turn of instance `id`, which is due, with its journal and visible messages.
    pub(super) fn lease_turn(
        &mut self,
        id: &str,
        now: Timestamp,
        lease: Duration,
        cache: Option<&Arc<dyn JournalCache>>,
    ) -> Option<TurnWork> {
        let token = self.next_token();
        let inst = self.instances.get_mut(id)?;
        inst.lease = Some(Lease {
            token,
            until: now.plus(lease),
        });
        if inst.started_at.is_none() {
            inst.started_at = Some(now);
            self.flow.admitted(
                &inst.info.queue,
                inst.info.options.concurrency_key.as_deref(),
                now,
            );
        }
        refresh(&mut self.due, inst);
        let execution = inst.info.execution;
        let warm = cache.is_some_and(|c| c.holds(id, execution, inst.committed_with));
        let journal = if warm {
            Journal::Cached
        } else {
            Journal::Events(
                inst.journals
                    .get(&execution)
                    .map(JournalLog::to_vec)
                    .unwrap_or_default(),
            )
        };
        Some(TurnWork {
            instance: inst.info.clone(),
            journal: Ok(journal),
            messages: inst.visible(now).cloned().collect(),
            token,
        })
    }
}
