//! The store contract.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use duraflow_core::{EmitOutcome, Event, Payload, StoredEvent, Timestamp};

use crate::error::StoreResult;
use crate::feed::FeedEntry;
use crate::journal_cache::JournalCache;
use crate::management::Management;
use crate::notify::Notifier;
use crate::queue_config::QueueConfig;
use crate::registry::Registration;
use crate::types::{
    CallbackResolution, CallbackTarget, Committed, Completed, CreateOutcome, FetchFilter,
    InstanceInfo, LeaseToken, NewInstance, NewMessage, NextDue, TaskCompletion, TaskId,
    TaskRelease, TaskWork, TurnCommit, TurnWork,
};

/// The caller's warm journals, if it keeps any (see [`JournalCache`]).
pub type Cache<'a> = Option<&'a Arc<dyn JournalCache>>;

/// What a durable-execution store must do. It stores; the runtime decides.
///
/// The contract is small on purpose and free of workflow logic. Every time the store needs is
/// passed in as `now` (engine time from the runtime's clock), so stores never read a clock and
/// tests can use virtual time. Every store must pass the conformance suite in
/// [`crate::conformance`].
///
/// Semantics every implementation keeps:
/// - **Atomic turns**: [`Store::commit_turns`] applies each [`TurnCommit`] entirely or not at
///   all; a batch shares one transaction where the backend allows, but one turn's rejection
///   (a lost lease) does not affect the others.
/// - **Leases with fencing**: a fetch leases the instance or task with a fresh [`LeaseToken`];
///   writes with a token that is no longer current fail with `StoreError::LeaseLost`; an
///   expired lease makes the work fetchable again.
/// - **Delayed visibility**: a message or task is never returned before its `visible_at`.
/// - **Order**: an instance's messages are returned in the order they were sent; instances are
///   leased in the order their work became due (the time their oldest message became visible,
///   or their lease expired), ties in the order their oldest message was sent.
/// - **Queues**: every instance and task belongs to a queue; fetches and claims take only work
///   that passes the caller's [`FetchFilter`] (queues and, optionally, names), so engines with
///   different queues or registrations share a store without taking each other's work. The
///   committer of a [`crate::TaskClaim`] and the creator of a claimed instance check the filter
///   themselves: they know the queue and name of what they claim.
/// - **Claims**: a commit may lease some of the tasks it creates to the committer, and a task
///   completion may lease the instance's next turn to the completer, and a creation may lease
///   the new instance's first turn to the creator, so work that stays in one process skips a
///   fetch; a claim is granted only where a fetch would have leased the work, and a store may
///   grant none.
/// - **Flow control**: due work of higher priority is leased first, in due order among equal
///   priorities. An instance is admitted when its first turn is leased; a pending instance is
///   admitted only within its queue's [`QueueConfig`] (concurrency, per-key concurrency, rate
///   limit), atomically however many processes fetch; the turns of admitted instances are
///   never held back. Claims never admit an instance that needs an admission decision. A
///   commit that finishes an admitted instance of a limited queue, or one with a key, wakes
///   turns.
/// - **Finished instances** take no more messages: their inbox, tasks, callbacks and queue-event
///   waiters are deleted when they finish, and messages later sent to them are dropped (`send`
///   reports it). A continue-as-new deletes the callbacks and waiters of the executions before
///   it.
/// - **The feed**: the records a commit carries ([`TurnCommit::feed`]) are appended in its
///   transaction, at positions that increase in commit order (see [`crate::feed`]).
/// - **Queue-wide events**: the first emit of a name in a queue wins and is kept; it answers
///   every waiter of that queue and name in the same transaction, and an await registered after
///   it is answered in the commit that registers it (see [`crate::queue_events`]).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name, for diagnostics (`memory`, `sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// In-process wakeups, if this store gives them; otherwise the runtime polls.
    fn notifier(&self) -> Option<&Notifier> {
        None
    }

    /// The store's management extension (listing, purging, counting), if it has one. The
    /// engine never needs it; operators' tools do. `None` by default.
    fn management(&self) -> Option<&dyn Management> {
        None
    }

    /// Creates an instance with a start message in its inbox, atomically. If the id is taken,
    /// nothing changes and the existing instance is returned.
    async fn create_instance(&self, instance: NewInstance) -> StoreResult<CreateOutcome>;

    /// Creates many instances, each as [`Store::create_instance`] does, and returns their
    /// outcomes in the order given: an id that is taken (or repeated earlier in the batch)
    /// changes nothing and is reported as [`CreateOutcome::Existing`]. A store that can writes
    /// them all in one transaction, so a batch costs about one commit. Ids are validated before
    /// anything is written. The default is [`Store::create_instances_claiming`] claiming
    /// nothing.
    async fn create_instances(
        &self,
        instances: Vec<NewInstance>,
    ) -> StoreResult<Vec<CreateOutcome>> {
        Ok(self
            .create_instances_claiming(instances, Vec::new(), Duration::ZERO)
            .await?
            .into_iter()
            .map(|(outcome, _)| outcome)
            .collect())
    }

    /// Creates many instances as [`Store::create_instances`] does and may lease the first turn
    /// of each new one whose `claim` is true to the caller for `lease` (from its
    /// `created_at`), in the same write, as [`Store::create_instance_claiming`] does for one.
    /// Returns each instance's outcome and claimed turn, in the order given. The default
    /// creates them one by one and grants no claim.
    async fn create_instances_claiming(
        &self,
        instances: Vec<NewInstance>,
        claim: Vec<bool>,
        lease: Duration,
    ) -> StoreResult<Vec<(CreateOutcome, Option<TurnWork>)>> {
        let _ = (claim, lease);
        for new in &instances {
            crate::validate_instance_id(&new.id)?;
        }
        let mut out = Vec::with_capacity(instances.len());
        for new in instances {
            out.push((self.create_instance(new).await?, None));
        }
        Ok(out)
    }

    /// Creates an instance as [`Store::create_instance`] does and, when it is new, may lease its
    /// first turn to the caller for `lease` (from its `created_at`) in the same write, as a fetch
    /// would have. The default grants no claim.
    async fn create_instance_claiming(
        &self,
        instance: NewInstance,
        lease: Duration,
    ) -> StoreResult<(CreateOutcome, Option<TurnWork>)> {
        let _ = lease;
        Ok((self.create_instance(instance).await?, None))
    }

    /// Puts a message in an instance's inbox. Fails with `NotFound` for an unknown instance and
    /// `InstanceFinished` for a finished one.
    async fn send(&self, message: NewMessage) -> StoreResult<()>;

    /// Sends `message` as [`Store::send`] does and, in the same write, may lease its
    /// instance's next turn to the caller for `lease` from `now`, as a fetch with `filter` and
    /// `cache` would: only when the message is visible at `now` and the turn is free at once
    /// (the instance open, not leased, not held back by a backoff, its queue and workflow
    /// passing `filter`, and admitted already or needing no admission). The turn holds every
    /// message of the inbox visible at `now`, in send order, the new one among them. Otherwise
    /// the instance is due as after [`Store::send`] and `None` comes back. A client of a running
    /// engine sends this way, so that the engine runs the turn at once instead of fetching it.
    /// The default grants no claim.
    async fn send_claiming(
        &self,
        message: NewMessage,
        filter: &FetchFilter,
        now: Timestamp,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Option<TurnWork>> {
        let _ = (filter, now, lease, cache);
        self.send(message).await.map(|()| None)
    }

    /// Leases up to `max` instances that have visible messages and no live lease, each with its
    /// visible messages and its current journal, for `lease`. Only instances that pass `filter`
    /// (their queue, their workflow name) are leased, in the order of the contract among them;
    /// the others stay due for a fetcher that serves them. A journal the caller's `cache`
    /// holds unchanged may be left unread ([`crate::Journal::Cached`]), and so may a long one,
    /// for the caller to read with [`Store::journal`] ([`crate::Journal::Unread`]).
    async fn fetch_turns(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<TurnWork>>;

    /// Commits turns. The outer error means nothing was committed (the store could not be
    /// reached); otherwise each turn has its own result, in order, with the tasks it claimed.
    async fn commit_turns(
        &self,
        commits: Vec<TurnCommit>,
    ) -> StoreResult<Vec<StoreResult<Committed>>>;

    /// Gives up a turn's lease without committing; its messages become visible again at
    /// `retry_at`, and the instance is due then even with an empty inbox (a checkpoint may have
    /// consumed it), so that the turn is redone.
    async fn abandon_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        retry_at: Timestamp,
    ) -> StoreResult<()>;

    /// Extends the lease of a turn in progress to `now + lease` and returns its new expiry, for
    /// a turn that runs long (between its checkpoints, see [`TurnCommit::keep_lease`]).
    /// `LeaseLost` when `token` is not the instance's current, live lease; `NotFound` for an
    /// unknown instance.
    async fn renew_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp>;

    /// Leases up to `max` visible activity tasks that pass `filter` (their queue, their activity
    /// name) for `lease`, counting an attempt on each. Of a queue with a task concurrency limit
    /// ([`crate::QueueConfig::task_concurrency`]) it leases no more than the limit less the
    /// queue's tasks whose lease is live at `now`, atomically however many fetchers share the
    /// store.
    async fn fetch_tasks(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> StoreResult<Vec<TaskWork>>;

    /// Completes tasks: each deletes the task and posts its result to the instance's inbox,
    /// atomically. A completion whose lease is no longer current is rejected (`LeaseLost`).
    /// Completions that ask for the instance's turn get it as [`Completed::turn`] when it is
    /// free and passes `filter` (its queue and workflow name; its journal read as for
    /// [`Store::fetch_turns`], with `cache`).
    ///
    /// A batch in which every completion asks for its turn need not be durable when it
    /// returns (a store may skip waiting for its sync): the commit of the turn that consumes
    /// the results is durable, and makes everything written before it durable too. Until then
    /// a crash can only lose results, and a lost result means the activity runs again, which
    /// at-least-once delivery allows.
    async fn complete_tasks(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        completions: Vec<TaskCompletion>,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<StoreResult<Completed>>>;

    /// Extends a task's lease to `now + lease` (the new lease may also be shorter than the one
    /// it replaces) and returns its new expiry; `LeaseLost` (or `NotFound` when the task was
    /// deleted because its instance finished) tells the worker to stop.
    ///
    /// A **heartbeat** passes `details`: they replace the task's heartbeat details in the same
    /// write, and every later fetch of the task returns them ([`TaskWork::heartbeat_details`])
    /// until another heartbeat replaces them, so the next attempt (after a failure, a lost
    /// lease, a crash) can resume from them. `None` leaves the recorded details as they are. A
    /// renewal refused for a lost lease writes nothing, details included. Like fetches, a
    /// renewal need not be durable when it returns.
    async fn renew_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
        details: Option<Payload>,
    ) -> StoreResult<Timestamp>;

    /// Gives a leased task back without a result: to retry later, or handed back at shutdown.
    async fn release_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
    ) -> StoreResult<()>;

    /// Resolves the open callback with `token`, atomically: `Complete`/`Fail` close it
    /// (`Completed`/`Failed`) and put a [`crate::MessageKind::CallbackResult`] in its instance's
    /// inbox, visible at `now`; `Heartbeat` leaves it open and puts a
    /// [`crate::MessageKind::CallbackHeartbeat`] there. Waiters are woken as for
    /// [`Store::send`]. Returns what it reached.
    ///
    /// `CallbackNotFound` (nothing changes) when no open callback has the token: unknown,
    /// forged, or its instance finished, was purged or continued as new. `CallbackClosed`
    /// (nothing changes) when it was already closed; one whose `timeout_at` is not after `now`
    /// is closed as `TimedOut` here and refused the same way.
    async fn resolve_callback(
        &self,
        now: Timestamp,
        token: &str,
        resolution: CallbackResolution,
    ) -> StoreResult<CallbackTarget>;

    /// Emits the queue-wide event `name` with `data` in `queue`, for a client (a workflow emits
    /// through [`TurnCommit::emits`]), atomically: the first emit of a name in a queue stores
    /// it and puts a [`crate::MessageKind::QueueEvent`] (visible at `now`) in the inbox of
    /// every waiter of `(queue, name)`, deleting the waiters, and returns
    /// [`EmitOutcome::Emitted`] with their number; a later emit changes nothing and returns
    /// [`EmitOutcome::AlreadyEmitted`]. Waiters are woken as for [`Store::send`]. A queue or
    /// name no store can keep is `Invalid` (see [`crate::validate_queue_event`]).
    async fn emit_event(
        &self,
        queue: &str,
        name: &str,
        data: Payload,
        now: Timestamp,
    ) -> StoreResult<EmitOutcome>;

    /// The queue-wide event `name` of `queue`, as its first emit stored it, if it has been
    /// emitted.
    async fn queue_event(&self, queue: &str, name: &str) -> StoreResult<Option<StoredEvent>>;

    /// Stores a queue's flow-control configuration, replacing the one it had (an upsert).
    /// Every fetch and claim after it enforces it, in every process that shares the store.
    /// `Invalid` for a configuration [`QueueConfig::validate`] refuses.
    async fn configure_queue(&self, config: QueueConfig) -> StoreResult<()>;

    /// A queue's stored configuration, if it has one.
    async fn queue_config(&self, name: &str) -> StoreResult<Option<QueueConfig>>;

    /// Every stored queue configuration, by name.
    async fn queue_configs(&self) -> StoreResult<Vec<QueueConfig>>;

    /// When delayed work next becomes visible (or a lease next expires), after `now`. Work
    /// that is due but held back by flow control is not reported: it waits for a wakeup (an
    /// instance of its queue finishing) or the polling interval.
    async fn next_due(&self, now: Timestamp) -> StoreResult<NextDue>;

    /// An instance's stored state.
    async fn instance(&self, id: &str) -> StoreResult<Option<InstanceInfo>>;

    /// The journal of an execution (the current one when `None`).
    async fn journal(&self, id: &str, execution: Option<u32>) -> StoreResult<Vec<Event>>;

    /// Up to `limit` records of the feed (see [`crate::feed`]) after position `after`, in
    /// position order, only those whose topic starts with `topic_prefix` when one is given. A
    /// record at or below the position of a record a read has returned never appears later:
    /// positions are assigned in commit order, so a reader can keep one cursor. `limit` is
    /// taken between 1 and [`crate::feed::MAX_FEED_READ`].
    async fn read_feed(
        &self,
        after: u64,
        limit: usize,
        topic_prefix: Option<&str>,
    ) -> StoreResult<Vec<FeedEntry>>;

    /// The position a subscriber saved with [`Store::save_feed_cursor`], if it saved one.
    async fn feed_cursor(&self, subscriber: &str) -> StoreResult<Option<u64>>;

    /// Saves a subscriber's cursor: the position up to which it has processed the feed. The
    /// cursor never moves backwards: saving a position below the saved one changes nothing.
    /// `Invalid` for a name [`crate::feed::validate_subscriber`] refuses.
    async fn save_feed_cursor(&self, subscriber: &str, position: u64) -> StoreResult<()>;

    /// Records that the caller serves `registrations` (see [`crate::registry`]): an upsert
    /// whose `last_seen` is `now`, or stays the later time already kept. `Invalid` for an
    /// announcement [`crate::validate_registrations`] refuses (nothing is recorded then).
    async fn announce(&self, registrations: Vec<Registration>, now: Timestamp) -> StoreResult<()>;

    /// Moves whatever the backend keeps aside into its main storage; the engine calls it once
    /// it has stopped, and the store stays usable (clients may go on with it). The SQLite store
    /// folds its write-ahead log into the database file, so that the file alone holds
    /// everything. Does nothing by default.
    async fn checkpoint(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// What a store can be given as: any [`Store`], or one already shared as `Arc<dyn Store>`
/// (such as `Engine::store()`), so that the engine builder and the client take a store the same
/// way.
pub trait IntoStore {
    /// The store, shared.
    fn into_store(self) -> Arc<dyn Store>;
}

impl<S: Store> IntoStore for S {
    fn into_store(self) -> Arc<dyn Store> {
        Arc::new(self)
    }
}

impl IntoStore for Arc<dyn Store> {
    fn into_store(self) -> Arc<dyn Store> {
        self
    }
}
