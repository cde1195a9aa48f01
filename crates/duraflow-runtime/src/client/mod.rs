//! [`Client`]: start, signal, observe and clean up instances, and resolve callbacks.

mod callbacks;
mod queue_events;
mod start;
mod subscribe;
mod wait;

pub use start::{IfExists, RunHandle, Start, TypedRunHandle, TypedStart};
pub use subscribe::{SubscribeOptions, Subscription};
pub use wait::Wait;

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use duraflow_core::{Clock, Event, Payload};
use duraflow_store::{
    management_of, InstanceInfo, InstanceStatus, IntoStore, ListFilter, Management, MessageKind,
    NewMessage, Page, QueueConfig, QueueDepth, Registered, Store, StoreError, StoreStats,
};
use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;

use crate::claimed::ClaimedTurns;
use crate::clock::SystemClock;
use crate::error::ClientError;

/// Starts, signals, observes and cleans up workflow instances.
///
/// Get one from [`crate::Engine::client`] (which also checks workflow names against the
/// engine), or build one on a store alone with [`Client::new`] to operate instances from a
/// process that runs no workflows. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    workflows: Option<Arc<Vec<String>>>,
    /// Where the engine this client belongs to (if any) runs the first turns of what it
    /// starts. Weak, so that a client kept after `Engine::shutdown` neither keeps the engine's
    /// writers alive nor starts work on it.
    local: Option<Weak<dyn ClaimedTurns>>,
    /// The longest a wait goes without looking at the store (see [`Client::with_wait_poll`]).
    wait_poll: Duration,
}

/// The longest a wait goes without looking at the store, unless
/// [`Client::with_wait_poll`] says otherwise.
pub const DEFAULT_WAIT_POLL: Duration = Duration::from_millis(500);

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("store", &self.store.backend())
            .finish()
    }
}

impl Client {
    /// A client on `store` alone (a store, or one shared as `Arc<dyn Store>`, as
    /// [`crate::EngineBuilder::store`] takes it), using the system clock. It does not check
    /// workflow names.
    pub fn new(store: impl IntoStore) -> Self {
        Client {
            store: store.into_store(),
            clock: Arc::new(SystemClock),
            workflows: None,
            local: None,
            wait_poll: DEFAULT_WAIT_POLL,
        }
    }

    /// Sets the longest a wait ([`Client::wait`], [`Client::wait_finished`]) goes without
    /// looking at the store (default [`DEFAULT_WAIT_POLL`], 500 ms). A wait looks at once,
    /// then after 5 ms and twice as long each time up to this, and sooner when the store's
    /// notifier announces a finish. Where the finishes happen in processes that cannot wake
    /// this one (a SQLite file shared by processes), this is how late a wait may learn of one.
    /// Less than a millisecond counts as one.
    pub fn with_wait_poll(mut self, most: Duration) -> Self {
        self.wait_poll = most.max(Duration::from_millis(1));
        self
    }

    pub(crate) fn for_engine(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        workflows: Arc<Vec<String>>,
        local: Weak<dyn ClaimedTurns>,
    ) -> Self {
        Client {
            store,
            clock,
            workflows: Some(workflows),
            local: Some(local),
            wait_poll: DEFAULT_WAIT_POLL,
        }
    }

    /// Raises the external event `name` with `data` on an instance. It is buffered until the
    /// workflow waits for it.
    pub async fn raise_event(
        &self,
        id: impl AsRef<str>,
        name: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<(), ClientError> {
        let data = Payload::encode(data).map_err(|e| ClientError::Encode {
            what: format!("the data of event {name:?}"),
            message: e.0,
        })?;
        self.send(
            id.as_ref(),
            MessageKind::Event {
                name: name.to_owned(),
                data,
            },
        )
        .await
    }

    /// Requests cancellation: the instance ends as cancelled at its next turn, its running
    /// activities are told to stop, and its attached children are cancelled too.
    pub async fn cancel(&self, id: impl AsRef<str>, reason: &str) -> Result<(), ClientError> {
        self.send(
            id.as_ref(),
            MessageKind::Cancel {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// Terminates the instance without running any more of its code (it works even when the
    /// code is gone or no longer matches the journal); attached children are terminated too.
    pub async fn terminate(&self, id: impl AsRef<str>, reason: &str) -> Result<(), ClientError> {
        self.send(
            id.as_ref(),
            MessageKind::Terminate {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// Sends a message. A client of a running engine with room for a turn sends it claiming
    /// (`Store::send_claiming`): when the instance's turn is free, the engine runs it at once
    /// instead of fetching it.
    async fn send(&self, id: &str, kind: MessageKind) -> Result<(), ClientError> {
        let now = self.clock.now();
        let message = NewMessage {
            instance_id: id.to_owned(),
            kind,
            visible_at: now,
        };
        let sent = match self.room_for_a_turn() {
            Some((turns, permit)) => self
                .store
                .send_claiming(
                    message,
                    turns.turn_filter(),
                    now,
                    turns.turn_lease(),
                    Some(turns.journal_cache()),
                )
                .await
                .map(|claimed| {
                    if let Some(work) = claimed {
                        turns.spawn_turn(work, permit);
                    }
                }),
            None => self.store.send(message).await,
        };
        sent.map_err(|e| match e {
            StoreError::NotFound(_) => ClientError::NotFound(id.to_owned()),
            StoreError::InstanceFinished { id, status } => {
                ClientError::InstanceFinished { id, status }
            }
            other => ClientError::Store(other),
        })
    }

    /// The engine this client belongs to and a turn permit, when the engine runs and has room
    /// for a turn: what the client's write claims, the engine runs at once under the permit.
    fn room_for_a_turn(&self) -> Option<(Arc<dyn ClaimedTurns>, OwnedSemaphorePermit)> {
        let turns = self.local.as_ref()?.upgrade()?;
        let permit = turns.room_for_a_turn()?;
        Some((turns, permit))
    }

    /// The instance's status, input, output or failure.
    pub async fn status(&self, id: impl AsRef<str>) -> Result<InstanceInfo, ClientError> {
        let id = id.as_ref();
        self.store
            .instance(id)
            .await?
            .ok_or_else(|| ClientError::NotFound(id.to_owned()))
    }

    /// The instance as [`Client::status`] reads it, with its current execution's journal
    /// length and the time of its last event filled ([`InstanceInfo::journal_len`],
    /// [`InstanceInfo::last_event_at`]), through the store's management extension
    /// (`Management::describe`); a store without one is refused with a `StoreError::Invalid`
    /// that names it. `status` does not read them: waiting polls it.
    pub async fn describe(&self, id: impl AsRef<str>) -> Result<InstanceInfo, ClientError> {
        let id = id.as_ref();
        self.management()?
            .describe(id)
            .await?
            .ok_or_else(|| ClientError::NotFound(id.to_owned()))
    }

    /// The journal of an execution (the current one when `None`).
    pub async fn history(
        &self,
        id: impl AsRef<str>,
        execution: Option<u32>,
    ) -> Result<Vec<Event>, ClientError> {
        let id = id.as_ref();
        self.store
            .journal(id, execution)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => ClientError::NotFound(id.to_owned()),
                other => ClientError::Store(other),
            })
    }

    /// The store's management extension (listing, purging, counting); a store without one
    /// is refused with a `StoreError::Invalid` that names it.
    fn management(&self) -> Result<&dyn Management, ClientError> {
        Ok(management_of(&*self.store)?)
    }

    /// Lists instances, filtered by status, name, queue and creation and update times, a
    /// page at a time.
    pub async fn list(&self, filter: ListFilter) -> Result<Page, ClientError> {
        Ok(self.management()?.list(filter).await?)
    }

    /// Purges up to `max` (at most 1,000) finished instances that `filter` selects, in id
    /// order, in one transaction where the store allows, and returns their ids: call it
    /// again until it returns none to purge them all (progress can be shown between calls).
    /// `filter.statuses` may name only finished statuses, all of them when empty ("completed
    /// before T" is `statuses: [Completed]`, `updated_before: Some(T)`).
    pub async fn purge_finished(
        &self,
        filter: ListFilter,
        max: usize,
    ) -> Result<Vec<String>, ClientError> {
        Ok(self.management()?.purge_finished(filter, max).await?)
    }

    /// The depth of every queue with unfinished work now: pending and running instances,
    /// ready, leased and delayed activity tasks.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, ClientError> {
        Ok(self.management()?.queue_depths(self.clock.now()).await?)
    }

    /// Counts by status, and of messages, tasks and open callbacks.
    pub async fn stats(&self) -> Result<StoreStats, ClientError> {
        Ok(self.management()?.stats().await?)
    }

    /// How many instances there are in each status, counted by the store (no paging through
    /// [`Client::list`]): every status, in the order of [`InstanceStatus::ALL`].
    pub async fn count_by_status(&self) -> Result<Vec<(InstanceStatus, u64)>, ClientError> {
        let counted = self.management()?.stats().await?.instances;
        Ok(InstanceStatus::ALL
            .into_iter()
            .map(|status| {
                let n = counted
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                (status, n)
            })
            .collect())
    }

    /// What the engines sharing the store have announced they serve: each workflow and
    /// activity name on each queue, with when an engine serving it last started (see
    /// `duraflow_store::registry`). Workflows first, then by queue and name.
    pub async fn registrations(&self) -> Result<Vec<Registered>, ClientError> {
        Ok(self.management()?.registrations().await?)
    }

    /// The store's gauges (instances by status, messages, tasks, callbacks), read now, in the
    /// Prometheus text format: what a server that runs no engine serves on `/metrics` (see
    /// [`crate::metrics::store_metrics`]; an engine's [`crate::Metrics::scrape`] adds its own
    /// counters).
    pub async fn store_metrics(&self) -> Result<String, ClientError> {
        Ok(crate::metrics::store_metrics(self.store.as_ref()).await?)
    }

    /// Stores a queue's flow-control configuration (replacing the one it had), for operators:
    /// every engine sharing the store holds to it from its next fetch. A zero limit is refused
    /// (`StoreError::Invalid`).
    pub async fn configure_queue(&self, config: QueueConfig) -> Result<(), ClientError> {
        Ok(self.store.configure_queue(config).await?)
    }

    /// A queue's stored flow-control configuration, if it has one.
    pub async fn queue_config(&self, name: &str) -> Result<Option<QueueConfig>, ClientError> {
        Ok(self.store.queue_config(name).await?)
    }

    /// Every stored queue configuration.
    pub async fn queue_configs(&self) -> Result<Vec<QueueConfig>, ClientError> {
        Ok(self.store.queue_configs().await?)
    }

    /// Deletes a finished instance and its history: every execution's journal, its inbox and
    /// its tasks. An unknown id is [`ClientError::NotFound`], like every other call on one; an
    /// instance still running is refused with [`ClientError::InstanceRunning`] (cancel or
    /// terminate it first).
    pub async fn purge(&self, id: impl AsRef<str>) -> Result<(), ClientError> {
        let id = id.as_ref();
        match self.management()?.purge(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ClientError::NotFound(id.to_owned())),
            Err(StoreError::InstanceRunning(_)) => Err(ClientError::InstanceRunning(id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }
}
