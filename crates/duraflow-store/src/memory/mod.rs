//! The in-memory store: all state in one mutex-guarded structure. For tests, development and
//! single-process use where nothing has to survive a restart.

mod state;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use duraflow_core::{EmitOutcome, Event, Payload, StoredEvent, Timestamp};

use crate::error::StoreResult;
use crate::feed::{validate_subscriber, FeedEntry};
use crate::management::{Management, QueueDepth};
use crate::notify::Notifier;
use crate::queue_config::QueueConfig;
use crate::registry::{validate_registrations, Registered, RegisteredKind, Registration};
use crate::store::Cache;
use crate::store::Store;
use crate::types::{
    CallbackResolution, CallbackTarget, Committed, Completed, CreateOutcome, FetchFilter,
    InstanceInfo, LeaseToken, ListFilter, NewInstance, NewMessage, NextDue, Page, StoreStats,
    TaskCompletion, TaskId, TaskRelease, TaskWork, TurnCommit, TurnWork,
};

use self::state::{State, Wake};

/// A registration's identity in the registry: kind, queue and name.
type RegistryKey = (RegisteredKind, String, String);

/// The in-memory store.
///
/// It keeps everything in process memory behind one mutex, so it is fast and exact but not
/// durable: everything is lost when the process ends. It wakes waiters in the same process
/// through its [`Notifier`], and like every store it never reads a clock: all times are the
/// `now` arguments it is given.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    notifier: Notifier,
    /// The registry (see [`crate::registry`]): apart from the state, which no turn touches.
    registry: Mutex<BTreeMap<RegistryKey, (Timestamp, Option<String>)>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is made in full before anything that could panic, so a poisoned state is
        // still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the locked state, then wakes whoever `f` asked for, after the lock is
    /// released.
    fn with_state<T>(&self, f: impl FnOnce(&mut State, &mut Wake) -> T) -> T {
        let mut wake = Wake::default();
        let out = {
            let mut state = self.lock();
            let out = f(&mut state, &mut wake);
            for id in wake.to_hand_over(&self.notifier) {
                if let Some(info) = state.instance(&id) {
                    wake.hand_over(info);
                }
            }
            out
        };
        wake.notify(&self.notifier);
        out
    }
}

#[async_trait]
impl Management for MemoryStore {
    async fn describe(&self, id: &str) -> StoreResult<Option<InstanceInfo>> {
        Ok(self.lock().describe(id))
    }

    async fn list(&self, filter: ListFilter) -> StoreResult<Page> {
        self.lock().list(filter)
    }

    async fn purge(&self, id: &str) -> StoreResult<bool> {
        self.lock().purge(id)
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        Ok(self.lock().stats())
    }

    async fn queue_depths(&self, now: Timestamp) -> StoreResult<Vec<QueueDepth>> {
        Ok(self.lock().queue_depths(now))
    }

    async fn registrations(&self) -> StoreResult<Vec<Registered>> {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(registry
            .iter()
            .map(|((kind, queue, name), (last_seen, version))| Registered {
                registration: Registration::new(*kind, queue, name).with_version(version.clone()),
                last_seen: *last_seen,
            })
            .collect())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn notifier(&self) -> Option<&Notifier> {
        Some(&self.notifier)
    }

    fn management(&self) -> Option<&dyn Management> {
        Some(self)
    }

    async fn create_instance(&self, instance: NewInstance) -> StoreResult<CreateOutcome> {
        crate::types::validate_instance_id(&instance.id)?;
        Ok(self.with_state(|s, w| s.create_instance(instance, w)))
    }

    async fn create_instances_claiming(
        &self,
        instances: Vec<NewInstance>,
        claim: Vec<bool>,
        lease: Duration,
    ) -> StoreResult<Vec<(CreateOutcome, Option<TurnWork>)>> {
        for new in &instances {
            crate::types::validate_instance_id(&new.id)?;
        }
        Ok(self.with_state(|s, w| {
            instances
                .into_iter()
                .enumerate()
                .map(|(i, new)| match claim.get(i) {
                    Some(true) => s.create_instance_claiming(new, lease, w),
                    _ => (s.create_instance(new, w), None),
                })
                .collect()
        }))
    }

    async fn create_instance_claiming(
        &self,
        instance: NewInstance,
        lease: Duration,
    ) -> StoreResult<(CreateOutcome, Option<TurnWork>)> {
        crate::types::validate_instance_id(&instance.id)?;
        Ok(self.with_state(|s, w| s.create_instance_claiming(instance, lease, w)))
    }

    async fn send(&self, message: NewMessage) -> StoreResult<()> {
        self.with_state(|s, w| s.send(message, w))
    }

    async fn send_claiming(
        &self,
        message: NewMessage,
        filter: &FetchFilter,
        now: Timestamp,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Option<TurnWork>> {
        self.with_state(|s, w| s.send_claiming(message, filter, now, lease, cache, w))
    }

    async fn fetch_turns(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<TurnWork>> {
        Ok(self.with_state(|s, _| s.fetch_turns(filter, now, max, lease, cache)))
    }

    async fn commit_turns(
        &self,
        commits: Vec<TurnCommit>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        Ok(self.with_state(|s, w| commits.into_iter().map(|c| s.commit_turn(c, w)).collect()))
    }

    async fn abandon_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        self.with_state(|s, w| s.abandon_turn(instance_id, token, retry_at, w))
    }

    async fn renew_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp> {
        self.with_state(|s, _| s.renew_turn(instance_id, token, now, lease))
    }

    async fn fetch_tasks(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> StoreResult<Vec<TaskWork>> {
        Ok(self.with_state(|s, _| s.fetch_tasks(filter, now, max, lease)))
    }

    async fn complete_tasks(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        completions: Vec<TaskCompletion>,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<StoreResult<Completed>>> {
        Ok(self.with_state(|s, w| s.complete_tasks(filter, now, completions, cache, w)))
    }

    async fn renew_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
        details: Option<Payload>,
    ) -> StoreResult<Timestamp> {
        self.with_state(|s, _| s.renew_task(id, token, now, lease, details))
    }

    async fn release_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
    ) -> StoreResult<()> {
        self.with_state(|s, w| s.release_task(id, token, release, w))
    }

    async fn resolve_callback(
        &self,
        now: Timestamp,
        token: &str,
        resolution: CallbackResolution,
    ) -> StoreResult<CallbackTarget> {
        self.with_state(|s, w| s.resolve_callback(now, token, resolution, w))
    }

    async fn emit_event(
        &self,
        queue: &str,
        name: &str,
        data: Payload,
        now: Timestamp,
    ) -> StoreResult<EmitOutcome> {
        crate::queue_events::validate_queue_event(queue, name)?;
        Ok(self.with_state(|s, w| s.emit_event(queue, name, data, now, w)))
    }

    async fn queue_event(&self, queue: &str, name: &str) -> StoreResult<Option<StoredEvent>> {
        Ok(self.lock().queue_event(queue, name))
    }

    async fn configure_queue(&self, config: QueueConfig) -> StoreResult<()> {
        config.validate()?;
        self.with_state(|s, w| s.configure_queue(config, w));
        Ok(())
    }

    async fn queue_config(&self, name: &str) -> StoreResult<Option<QueueConfig>> {
        Ok(self.lock().queue_config(name))
    }

    async fn queue_configs(&self) -> StoreResult<Vec<QueueConfig>> {
        Ok(self.lock().queue_configs())
    }

    async fn next_due(&self, now: Timestamp) -> StoreResult<NextDue> {
        Ok(self.lock().next_due(now))
    }

    async fn instance(&self, id: &str) -> StoreResult<Option<InstanceInfo>> {
        Ok(self.lock().instance(id))
    }

    async fn journal(&self, id: &str, execution: Option<u32>) -> StoreResult<Vec<Event>> {
        self.lock().journal(id, execution)
    }

    async fn read_feed(
        &self,
        after: u64,
        limit: usize,
        topic_prefix: Option<&str>,
    ) -> StoreResult<Vec<FeedEntry>> {
        Ok(self.lock().read_feed(after, limit, topic_prefix))
    }

    async fn feed_cursor(&self, subscriber: &str) -> StoreResult<Option<u64>> {
        Ok(self.lock().feed_cursor(subscriber))
    }

    async fn save_feed_cursor(&self, subscriber: &str, position: u64) -> StoreResult<()> {
        validate_subscriber(subscriber)?;
        self.lock().save_feed_cursor(subscriber, position);
        Ok(())
    }

    async fn announce(&self, registrations: Vec<Registration>, now: Timestamp) -> StoreResult<()> {
        validate_registrations(&registrations)?;
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        for r in registrations {
            let (seen, version) = registry
                .entry((r.kind, r.queue, r.name))
                .or_insert((now, None));
            // The latest announcement's version.
            if now >= *seen {
                *seen = now;
                *version = r.version;
            }
        }
        Ok(())
    }
}
