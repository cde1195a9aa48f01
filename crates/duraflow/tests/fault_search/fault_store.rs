//! A store wrapper that plays one engine process: killing it makes every later call fail, as
//! if the process had died, and a fuse kills it by itself after a number of writes, so the
//! death falls at an exact point of the engine's work (possibly right after a write went
//! through and before the engine learned of it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use duraflow::crates::store::{
    Cache, Committed, Completed, CreateOutcome, LeaseToken, NewInstance, NewMessage, NextDue,
    Notifier, StoreResult, StoreStats, TaskCompletion, TaskId, TaskRelease, TaskWork, TurnCommit,
    TurnWork,
};
use duraflow::{Event, InstanceInfo, ListFilter, Page, Store, StoreError, Timestamp};

/// What a call may do, given the fuse.
enum Gate {
    /// The process lives on.
    Pass,
    /// This call is the process's last: a write applies (or not) and then the caller sees the
    /// process die.
    Last,
}

/// One engine process's view of the store.
pub(crate) struct FaultStore {
    inner: Arc<dyn Store>,
    dead: AtomicBool,
    /// Writes left before the process dies (`u64::MAX`: not armed).
    fuse: AtomicU64,
    /// Whether the write that blows the fuse is applied before the process dies.
    apply_last: AtomicBool,
}

fn killed() -> StoreError {
    StoreError::Unavailable("this engine process was killed by the fault search".into())
}

impl FaultStore {
    /// A live process on `inner`.
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        FaultStore {
            inner,
            dead: AtomicBool::new(false),
            fuse: AtomicU64::new(u64::MAX),
            apply_last: AtomicBool::new(false),
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

    /// Takes the fuse off.
    pub(crate) fn disarm(&self) {
        self.fuse.store(u64::MAX, Ordering::SeqCst);
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
    async fn send(&self, message: NewMessage) -> StoreResult<()> {
        self.request(self.inner.send(message)).await
    }
    async fn fetch_turns(
        &self,
        now: Timestamp,
        max: usize,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<TurnWork>> {
        self.write(self.inner.fetch_turns(now, max, lease, cache))
            .await
    }
    async fn commit_turns(
        &self,
        commits: Vec<TurnCommit>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        self.write(self.inner.commit_turns(commits)).await
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
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> StoreResult<Vec<TaskWork>> {
        self.write(self.inner.fetch_tasks(now, max, lease)).await
    }
    async fn complete_tasks(
        &self,
        now: Timestamp,
        completions: Vec<TaskCompletion>,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<StoreResult<Completed>>> {
        self.write(self.inner.complete_tasks(now, completions, cache))
            .await
    }
    async fn renew_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp> {
        self.write(self.inner.renew_task(id, token, now, lease))
            .await
    }
    async fn release_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
    ) -> StoreResult<()> {
        self.write(self.inner.release_task(id, token, release))
            .await
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
    async fn list(&self, filter: ListFilter) -> StoreResult<Page> {
        self.read()?;
        self.inner.list(filter).await
    }
    async fn purge(&self, id: &str) -> StoreResult<bool> {
        self.read()?;
        self.inner.purge(id).await
    }
    async fn stats(&self) -> StoreResult<StoreStats> {
        self.read()?;
        self.inner.stats().await
    }
}
