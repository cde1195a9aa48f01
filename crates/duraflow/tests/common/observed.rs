//! A store that hands every call to a `MemoryStore` and shows a test what came back: the
//! tests that count fetches and claims, or watch leases and refusals, implement [`Observer`]
//! and wrap it in [`Observed`].

use std::ops::Deref;
use std::time::Duration;

use async_trait::async_trait;
use duraflow::crates::store::{
    Cache, CallbackResolution, CallbackTarget, Committed, Completed, CreateOutcome, LeaseToken,
    NewInstance, NewMessage, NextDue, Notifier, Registration, StoreResult, TaskCompletion, TaskId,
    TaskRelease, TaskWork, TurnCommit, TurnWork,
};
use duraflow::{Event, InstanceInfo, MemoryStore, QueueConfig, Store, Timestamp};

/// What a test sees of the store's answers; every method does nothing unless overridden.
pub trait Observer: Send + Sync + 'static {
    /// A creation that may claim the first turn returned `turn`.
    fn created(&self, _turn: Option<&TurnWork>) {}
    /// A send that may claim its instance's turn returned `turn`.
    fn sent(&self, _turn: Option<&TurnWork>) {}
    /// A fetch leased these turns.
    fn fetched_turns(&self, _work: &[TurnWork]) {}
    /// A batch of turn commits ended so.
    fn committed(&self, _results: &[StoreResult<Committed>]) {}
    /// Whether to refuse a direct turn's commit as `LeaseLost` without passing it to the
    /// store, as if another turn had got to its instance first.
    fn refuse_direct(&self, _commit: &TurnCommit) -> bool {
        false
    }
    /// A direct turn's commit was accepted (`true`) or refused.
    fn direct(&self, _accepted: bool) {}
    /// A fetch leased these tasks.
    fn fetched_tasks(&self, _tasks: &[TaskWork]) {}
    /// Completions under these lease tokens ended so (in the same order).
    fn completed(&self, _tokens: &[LeaseToken], _results: &[StoreResult<Completed>]) {}
    /// A turn's lease renewal ended so.
    fn renewed(&self, _result: &StoreResult<Timestamp>) {}
}

/// A [`MemoryStore`] whose answers an [`Observer`] sees; it derefs to the observer.
#[derive(Default)]
pub struct Observed<O> {
    inner: MemoryStore,
    observer: O,
}

impl<O> Deref for Observed<O> {
    type Target = O;

    fn deref(&self) -> &O {
        &self.observer
    }
}

#[async_trait]
impl<O: Observer> Store for Observed<O> {
    fn backend(&self) -> &'static str {
        "observed"
    }

    fn management(&self) -> Option<&dyn duraflow::Management> {
        self.inner.management()
    }

    fn notifier(&self) -> Option<&Notifier> {
        self.inner.notifier()
    }
    async fn create_instance(&self, instance: NewInstance) -> StoreResult<CreateOutcome> {
        self.inner.create_instance(instance).await
    }
    async fn create_instance_claiming(
        &self,
        instance: NewInstance,
        lease: Duration,
    ) -> StoreResult<(CreateOutcome, Option<TurnWork>)> {
        let (outcome, turn) = self.inner.create_instance_claiming(instance, lease).await?;
        self.observer.created(turn.as_ref());
        Ok((outcome, turn))
    }
    async fn send(&self, message: NewMessage) -> StoreResult<()> {
        self.inner.send(message).await
    }
    async fn send_claiming(
        &self,
        message: NewMessage,
        filter: &duraflow_store::FetchFilter,
        now: Timestamp,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Option<TurnWork>> {
        let turn = self
            .inner
            .send_claiming(message, filter, now, lease, cache)
            .await?;
        self.observer.sent(turn.as_ref());
        Ok(turn)
    }
    async fn fetch_turns(
        &self,
        filter: &duraflow_store::FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<TurnWork>> {
        let work = self
            .inner
            .fetch_turns(filter, now, max, lease, cache)
            .await?;
        self.observer.fetched_turns(&work);
        Ok(work)
    }
    async fn commit_turns(
        &self,
        commits: Vec<TurnCommit>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        let refused: Vec<bool> = commits
            .iter()
            .map(|c| c.direct.is_some() && self.observer.refuse_direct(c))
            .collect();
        let direct: Vec<bool> = commits.iter().map(|c| c.direct.is_some()).collect();
        let ids: Vec<String> = commits.iter().map(|c| c.instance_id.clone()).collect();
        let passed: Vec<TurnCommit> = commits
            .into_iter()
            .zip(&refused)
            .filter(|(_, refused)| !**refused)
            .map(|(c, _)| c)
            .collect();
        let mut stored = self.inner.commit_turns(passed).await?.into_iter();
        let results: Vec<StoreResult<Committed>> = refused
            .iter()
            .zip(&ids)
            .map(|(refused, id)| match refused {
                true => Err(duraflow::StoreError::instance_lease_lost(id)),
                false => stored.next().unwrap_or_else(|| {
                    Err(duraflow::StoreError::Other("a result is missing".into()))
                }),
            })
            .collect();
        for (result, _) in results.iter().zip(&direct).filter(|(_, d)| **d) {
            self.observer.direct(result.is_ok());
        }
        self.observer.committed(&results);
        Ok(results)
    }
    async fn abandon_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        self.inner.abandon_turn(instance_id, token, retry_at).await
    }
    async fn fetch_tasks(
        &self,
        filter: &duraflow_store::FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> StoreResult<Vec<TaskWork>> {
        let tasks = self.inner.fetch_tasks(filter, now, max, lease).await?;
        self.observer.fetched_tasks(&tasks);
        Ok(tasks)
    }
    async fn complete_tasks(
        &self,
        filter: &duraflow_store::FetchFilter,
        now: Timestamp,
        completions: Vec<TaskCompletion>,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<StoreResult<Completed>>> {
        let tokens: Vec<LeaseToken> = completions.iter().map(|c| c.token).collect();
        let results = self
            .inner
            .complete_tasks(filter, now, completions, cache)
            .await?;
        self.observer.completed(&tokens, &results);
        Ok(results)
    }
    async fn renew_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
        details: Option<duraflow::Payload>,
    ) -> StoreResult<Timestamp> {
        self.inner.renew_task(id, token, now, lease, details).await
    }
    async fn renew_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp> {
        let result = self.inner.renew_turn(instance_id, token, now, lease).await;
        self.observer.renewed(&result);
        result
    }
    async fn resolve_callback(
        &self,
        now: Timestamp,
        token: &str,
        resolution: CallbackResolution,
    ) -> StoreResult<CallbackTarget> {
        self.inner.resolve_callback(now, token, resolution).await
    }
    async fn release_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
    ) -> StoreResult<()> {
        self.inner.release_task(id, token, release).await
    }
    async fn emit_event(
        &self,
        queue: &str,
        name: &str,
        data: duraflow::Payload,
        now: Timestamp,
    ) -> StoreResult<duraflow::EmitOutcome> {
        self.inner.emit_event(queue, name, data, now).await
    }
    async fn queue_event(
        &self,
        queue: &str,
        name: &str,
    ) -> StoreResult<Option<duraflow::StoredEvent>> {
        self.inner.queue_event(queue, name).await
    }
    async fn configure_queue(&self, config: QueueConfig) -> StoreResult<()> {
        self.inner.configure_queue(config).await
    }
    async fn queue_config(&self, name: &str) -> StoreResult<Option<QueueConfig>> {
        self.inner.queue_config(name).await
    }
    async fn queue_configs(&self) -> StoreResult<Vec<QueueConfig>> {
        self.inner.queue_configs().await
    }
    async fn next_due(&self, now: Timestamp) -> StoreResult<NextDue> {
        self.inner.next_due(now).await
    }
    async fn instance(&self, id: &str) -> StoreResult<Option<InstanceInfo>> {
        self.inner.instance(id).await
    }
    async fn journal(&self, id: &str, execution: Option<u32>) -> StoreResult<Vec<Event>> {
        self.inner.journal(id, execution).await
    }
    async fn checkpoint(&self) -> StoreResult<()> {
        self.inner.checkpoint().await
    }
    async fn read_feed(
        &self,
        after: u64,
        limit: usize,
        topic_prefix: Option<&str>,
    ) -> StoreResult<Vec<duraflow_store::FeedEntry>> {
        self.inner.read_feed(after, limit, topic_prefix).await
    }
    async fn feed_cursor(&self, subscriber: &str) -> StoreResult<Option<u64>> {
        self.inner.feed_cursor(subscriber).await
    }
    async fn save_feed_cursor(&self, subscriber: &str, position: u64) -> StoreResult<()> {
        self.inner.save_feed_cursor(subscriber, position).await
    }
    async fn announce(&self, registrations: Vec<Registration>, now: Timestamp) -> StoreResult<()> {
        self.inner.announce(registrations, now).await
    }
}
