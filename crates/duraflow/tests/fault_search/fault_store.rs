//! A store wrapper that plays one engine process: killing it makes every later call fail, as
//! if the process had died, and a fuse kills it by itself after a number of writes, so the
//! death falls at an exact point of the engine's work (possibly right after a write went
//! through and before the engine learned of it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use duraflow::crates::store::{
    Cache, CallbackResolution, CallbackTarget, Committed, Completed, CreateOutcome, LeaseToken,
    NewInstance, NewMessage, NextDue, Notifier, Registration, StoreResult, TaskCompletion, TaskId,
    TaskRelease, TaskWork, TurnCommit, TurnWork,
};
use duraflow::{Event, InstanceInfo, QueueConfig, Store, StoreError, Timestamp};
use tracing::debug;

/// What a call may do, given the fuse.
enum Gate {
    /// The process lives on.
    Pass,
    /// This call is the process's last: a write applies (or not) and then the caller sees the
    /// process die.
    Last,
}

/// One engine process's view of the store. Its hot-path calls are traced at debug level
/// (`RUST_LOG=fault_search=debug`), named by the process, to follow a failing seed.
pub(crate) struct FaultStore {
    inner: Arc<dyn Store>,
    name: String,
    dead: AtomicBool,
    /// Writes left before the process dies (`u64::MAX`: not armed).
    fuse: AtomicU64,
    /// Whether the write that blows the fuse is applied before the process dies.
    apply_last: AtomicBool,
    /// How many milliseconds early this process's turn fetches, and the messages its clients
    /// send, read the time: a fetch whose time was read before it got its connection, a client
    /// whose clock is behind. An event so sent can be visible to such a fetch before the start
    /// of the execution it goes to, sent later at the right time; the fetch must not lease
    /// that execution's first turn without its start (0: no lag).
    lag_ms: AtomicU64,
}

fn killed() -> StoreError {
    StoreError::Unavailable("this engine process was killed by the fault search".into())
}

impl FaultStore {
    /// A live process on `inner`.
    pub(crate) fn new(inner: Arc<dyn Store>, name: &str) -> Self {
        FaultStore {
            inner,
            name: name.to_owned(),
            dead: AtomicBool::new(false),
            fuse: AtomicU64::new(u64::MAX),
            apply_last: AtomicBool::new(false),
            lag_ms: AtomicU64::new(0),
        }
    }

    /// The process dies now.
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }

    /// Whether the process has died.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// The process dies at its `writes`-th write from now (at least 1); that write is applied
    /// first when `apply_last`.
    pub(crate) fn arm(&self, writes: u64, apply_last: bool) {
        self.apply_last.store(apply_last, Ordering::SeqCst);
        self.fuse.store(writes.max(1), Ordering::SeqCst);
    }

    /// Takes the fuse off, and lets the process read the time as it is.
    pub(crate) fn disarm(&self) {
        self.fuse.store(u64::MAX, Ordering::SeqCst);
        self.lag_ms.store(0, Ordering::SeqCst);
    }

    /// Makes this process's turn fetches and its clients' messages read the time `lag` early
    /// (see `lag_ms`).
    pub(crate) fn lag_clock(&self, lag: Duration) {
        let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        self.lag_ms.store(ms, Ordering::SeqCst);
    }

    /// `at` as this process reads it (see `lag_ms`).
    fn lagged(&self, at: Timestamp) -> Timestamp {
        let lag = i64::try_from(self.lag_ms.load(Ordering::SeqCst)).unwrap_or(0);
        Timestamp(at.0.saturating_sub(lag))
    }

    fn gate(&self) -> StoreResult<Gate> {
        if self.is_dead() {
            return Err(killed());
        }
        let before = self
            .fuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| match f {
                u64::MAX | 0 => None,
                f => Some(f - 1),
            });
        if before == Ok(1) {
            self.kill();
            return Ok(Gate::Last);
        }
        Ok(Gate::Pass)
    }

    /// An engine write: applied unless dead; the last one may be applied and still fail.
    async fn write<T, F>(&self, call: F) -> StoreResult<T>
    where
        F: std::future::Future<Output = StoreResult<T>>,
    {
        match self.gate()? {
            Gate::Pass => call.await,
            Gate::Last if self.apply_last.load(Ordering::SeqCst) => {
                let _ = call.await;
                Err(killed())
            }
            Gate::Last => Err(killed()),
        }
    }

    /// A client's write: never applied when it fails, so that a refusal is a refusal.
    async fn request<T, F>(&self, call: F) -> StoreResult<T>
    where
        F: std::future::Future<Output = StoreResult<T>>,
    {
        match self.gate()? {
            Gate::Pass => call.await,
            Gate::Last => Err(killed()),
        }
    }

    fn read(&self) -> StoreResult<()> {
        if self.is_dead() {
            Err(killed())
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FaultStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn management(&self) -> Option<&dyn duraflow::Management> {
        self.inner.management()
    }

    fn notifier(&self) -> Option<&Notifier> {
        self.inner.notifier()
    }
    async fn create_instance(&self, instance: NewInstance) -> StoreResult<CreateOutcome> {
        self.request(self.inner.create_instance(instance)).await
    }
    async fn create_instance_claiming(
        &self,
        instance: NewInstance,
        lease: Duration,
    ) -> StoreResult<(CreateOutcome, Option<TurnWork>)> {
        self.request(self.inner.create_instance_claiming(instance, lease))
            .await
    }
    async fn send(&self, mut message: NewMessage) -> StoreResult<()> {
        message.visible_at = self.lagged(message.visible_at);
        self.request(self.inner.send(message)).await
    }
    async fn send_claiming(
        &self,
        mut message: NewMessage,
        filter: &duraflow_store::FetchFilter,
        now: Timestamp,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Option<TurnWork>> {
        message.visible_at = self.lagged(message.visible_at);
        let now = self.lagged(now);
        self.request(self.inner.send_claiming(message, filter, now, lease, cache))
            .await
    }
    async fn fetch_turns(
        &self,
        filter: &duraflow_store::FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<TurnWork>> {
        let now = self.lagged(now);
        let out = self
            .write(self.inner.fetch_turns(filter, now, max, lease, cache))
            .await;
        if let Ok(turns) = &out {
            for t in turns {
                debug!(process = %self.name, instance = %t.instance.id, token = ?t.token, messages = t.messages.len(), "fetched turn");
            }
        }
        out
    }
    async fn commit_turns(
        &self,
        commits: Vec<TurnCommit>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        let what: Vec<String> = commits
            .iter()
            .map(|c| {
                let events: Vec<&str> = c.new_events.iter().map(|e| e.kind.type_name()).collect();
                format!("{} {:?} {events:?}", c.instance_id, c.token)
            })
            .collect();
        let out = self.write(self.inner.commit_turns(commits)).await;
        match &out {
            Ok(results) => {
                for (what, result) in what.iter().zip(results) {
                    let claimed: Option<Vec<_>> = result
                        .as_ref()
                        .ok()
                        .map(|c| c.tasks.iter().map(|t| t.id).collect());
                    debug!(process = %self.name, commit = %what, ok = result.is_ok(), ?claimed, error = ?result.as_ref().err(), "commit");
                }
            }
            Err(e) => {
                debug!(process = %self.name, commits = ?what, error = %e, "commit batch failed")
            }
        }
        out
    }
    async fn abandon_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        self.write(self.inner.abandon_turn(instance_id, token, retry_at))
            .await
    }
    async fn fetch_tasks(
        &self,
        filter: &duraflow_store::FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> StoreResult<Vec<TaskWork>> {
        let out = self
            .write(self.inner.fetch_tasks(filter, now, max, lease))
            .await;
        if let Ok(tasks) = &out {
            for t in tasks {
                debug!(process = %self.name, task = ?t.id, instance = %t.instance_id, op = %t.op, attempt = t.attempt, token = ?t.token, "fetched task");
            }
        }
        out
    }
    async fn complete_tasks(
        &self,
        filter: &duraflow_store::FetchFilter,
        now: Timestamp,
        completions: Vec<TaskCompletion>,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<StoreResult<Completed>>> {
        let ids: Vec<_> = completions.iter().map(|c| (c.id, c.token)).collect();
        let out = self
            .write(self.inner.complete_tasks(filter, now, completions, cache))
            .await;
        match &out {
            Ok(results) => {
                for (id, result) in ids.iter().zip(results) {
                    debug!(process = %self.name, task = ?id, ok = result.is_ok(), claimed_turn = result.as_ref().is_ok_and(|c| c.turn.is_some()), error = ?result.as_ref().err(), "completion");
                }
            }
            Err(e) => {
                debug!(process = %self.name, tasks = ?ids, error = %e, "completion batch failed")
            }
        }
        out
    }
    async fn renew_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
        details: Option<duraflow::Payload>,
    ) -> StoreResult<Timestamp> {
        self.write(self.inner.renew_task(id, token, now, lease, details))
            .await
    }
    async fn renew_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp> {
        self.write(self.inner.renew_turn(instance_id, token, now, lease))
            .await
    }
    async fn resolve_callback(
        &self,
        now: Timestamp,
        token: &str,
        resolution: CallbackResolution,
    ) -> StoreResult<CallbackTarget> {
        self.write(self.inner.resolve_callback(now, token, resolution))
            .await
    }
    async fn release_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
    ) -> StoreResult<()> {
        let out = self
            .write(self.inner.release_task(id, token, release))
            .await;
        debug!(process = %self.name, task = ?id, ?token, error = ?out.as_ref().err(), "release");
        out
    }
    async fn emit_event(
        &self,
        queue: &str,
        name: &str,
        data: duraflow::Payload,
        now: Timestamp,
    ) -> StoreResult<duraflow::EmitOutcome> {
        self.write(self.inner.emit_event(queue, name, data, now))
            .await
    }
    async fn queue_event(
        &self,
        queue: &str,
        name: &str,
    ) -> StoreResult<Option<duraflow::StoredEvent>> {
        self.read()?;
        self.inner.queue_event(queue, name).await
    }
    async fn configure_queue(&self, config: QueueConfig) -> StoreResult<()> {
        self.write(self.inner.configure_queue(config)).await
    }
    async fn queue_config(&self, name: &str) -> StoreResult<Option<QueueConfig>> {
        self.read()?;
        self.inner.queue_config(name).await
    }
    async fn queue_configs(&self) -> StoreResult<Vec<QueueConfig>> {
        self.read()?;
        self.inner.queue_configs().await
    }
    async fn next_due(&self, now: Timestamp) -> StoreResult<NextDue> {
        self.read()?;
        self.inner.next_due(now).await
    }
    async fn instance(&self, id: &str) -> StoreResult<Option<InstanceInfo>> {
        self.read()?;
        self.inner.instance(id).await
    }
    async fn journal(&self, id: &str, execution: Option<u32>) -> StoreResult<Vec<Event>> {
        self.read()?;
        self.inner.journal(id, execution).await
    }
    async fn read_feed(
        &self,
        after: u64,
        limit: usize,
        topic_prefix: Option<&str>,
    ) -> StoreResult<Vec<duraflow_store::FeedEntry>> {
        self.read()?;
        self.inner.read_feed(after, limit, topic_prefix).await
    }
    async fn feed_cursor(&self, subscriber: &str) -> StoreResult<Option<u64>> {
        self.read()?;
        self.inner.feed_cursor(subscriber).await
    }
    async fn save_feed_cursor(&self, subscriber: &str, position: u64) -> StoreResult<()> {
        self.read()?;
        self.inner.save_feed_cursor(subscriber, position).await
    }
    // The registry is written once at engine start, outside the work the fault search
    // breaks: it passes straight through.
    async fn announce(&self, registrations: Vec<Registration>, now: Timestamp) -> StoreResult<()> {
        self.inner.announce(registrations, now).await
    }
}
