//! The management extension: what operators and their tools read and do with a store, apart
//! from the engine's hot path ([`Store`]).
//!
//! A store offers it through [`Store::management`]; every store in this workspace does. The
//! engine never calls it: a store without it runs workflows all the same, and only listing,
//! purging and counting (the CLI, the server, `Client::list`, ...) are refused. Reading one
//! instance and one journal stay on [`Store`], because the engine reads them too;
//! [`Management::describe`] reads one instance with its journal's length and last event time.

use async_trait::async_trait;
use duraflow_core::Timestamp;

use crate::error::{StoreError, StoreResult};
use crate::registry::Registered;
use crate::store::Store;
use crate::types::{InstanceInfo, InstanceStatus, ListFilter, Page, StoreStats};

/// The most instances one [`Management::purge_finished`] call purges.
pub const MAX_PURGE_BATCH: usize = 1_000;

/// The work waiting and running in one queue, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// The queue.
    pub queue: String,
    /// Instances not admitted yet (pending), due or not.
    pub pending_instances: u64,
    /// Admitted, unfinished instances (running, or waiting for a timer or an event).
    pub running_instances: u64,
    /// Activity tasks visible and not leased: waiting for a worker.
    pub ready_tasks: u64,
    /// Activity tasks under a live lease: an attempt running.
    pub leased_tasks: u64,
    /// Activity tasks scheduled for later (a retry's backoff, a delay).
    pub delayed_tasks: u64,
}

/// Queue depths gathered queue by queue, as a store counts them.
#[derive(Debug, Default)]
pub struct DepthTally(std::collections::BTreeMap<String, QueueDepth>);

impl DepthTally {
    /// The depth of `queue`, zero until counted.
    pub fn of(&mut self, queue: &str) -> &mut QueueDepth {
        self.0
            .entry(queue.to_owned())
            .or_insert_with(|| QueueDepth {
                queue: queue.to_owned(),
                ..QueueDepth::default()
            })
    }

    /// Adds a queue's unfinished instances, as a store counts them (negative counts, which
    /// no store returns, count 0).
    pub fn instances(&mut self, queue: &str, pending: i64, running: i64) {
        let d = self.of(queue);
        d.pending_instances += count(pending);
        d.running_instances += count(running);
    }

    /// Adds a queue's tasks, as a store counts them.
    pub fn tasks(&mut self, queue: &str, ready: i64, leased: i64, delayed: i64) {
        let d = self.of(queue);
        d.ready_tasks += count(ready);
        d.leased_tasks += count(leased);
        d.delayed_tasks += count(delayed);
    }

    /// The depths, by queue name.
    pub fn into_depths(self) -> Vec<QueueDepth> {
        self.0.into_values().collect()
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// What operators read and do with a store (see the [module](self) docs).
///
/// Every store must pass the conformance suite's `management` module. Listing is in the order
/// [`ListFilter::order`] gives (by id, by creation time, or finished instances by the time they
/// finished) and served by an index on every filter; counting reads indexes, not whole tables,
/// where the backend allows.
#[async_trait]
pub trait Management: Send + Sync {
    /// One instance as [`Store::instance`] reads it, with what only operators need filled
    /// in: the current execution's journal length ([`InstanceInfo::journal_len`]) and the
    /// time of its last event ([`InstanceInfo::last_event_at`]), read from the journal's
    /// index (the last event of the execution), not kept by the commits. `None` for an
    /// unknown instance.
    async fn describe(&self, id: &str) -> StoreResult<Option<InstanceInfo>>;

    /// Lists instances, filtered and paged, in the filter's order ([`ListFilter::order`]).
    async fn list(&self, filter: ListFilter) -> StoreResult<Page>;

    /// Deletes a finished instance with all its executions, messages and tasks. Returns `false`
    /// if there was no such instance; refuses a running one (`InstanceRunning`).
    async fn purge(&self, id: &str) -> StoreResult<bool>;

    /// Purges up to `max` (at most [`MAX_PURGE_BATCH`]) finished instances that `filter`
    /// selects, in the listing's order, and returns their ids; call it again until it returns
    /// none to purge them all. `filter.statuses` may name only finished statuses (all of them
    /// when empty): anything else is `Invalid`. `filter.limit` and `filter.after` are ignored.
    ///
    /// The default lists a page and purges its instances one by one; a store may do it in
    /// one transaction.
    async fn purge_finished(&self, filter: ListFilter, max: usize) -> StoreResult<Vec<String>> {
        let filter = purge_filter(filter, max)?;
        let page = self.list(filter).await?;
        let mut purged = Vec::with_capacity(page.instances.len());
        for instance in page.instances {
            if self.purge(&instance.id).await? {
                purged.push(instance.id);
            }
        }
        Ok(purged)
    }

    /// Counts by status, and of messages, tasks and open callbacks.
    async fn stats(&self) -> StoreResult<StoreStats>;

    /// The depth of every queue that holds unfinished instances or tasks at `now`, by queue
    /// name.
    async fn queue_depths(&self, now: Timestamp) -> StoreResult<Vec<QueueDepth>>;

    /// Every registration engines announced ([`Store::announce`], see [`crate::registry`]),
    /// ordered by kind (workflows first), queue and name.
    async fn registrations(&self) -> StoreResult<Vec<Registered>>;
}

/// `filter` checked for [`Management::purge_finished`]: only finished statuses (all of them
/// when none is named), the first `max` (capped at [`MAX_PURGE_BATCH`], at least 1).
pub fn purge_filter(mut filter: ListFilter, max: usize) -> StoreResult<ListFilter> {
    if let Some(s) = filter.statuses.iter().find(|s| !s.is_terminal()) {
        return Err(StoreError::Invalid(format!(
            "cannot purge {} instances: only finished ones (completed, failed, cancelled, \
             terminated) can be purged; cancel or terminate them first",
            s.as_str()
        )));
    }
    if filter.statuses.is_empty() {
        filter.statuses = InstanceStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
    }
    filter.limit = max.clamp(1, MAX_PURGE_BATCH);
    filter.after = None;
    Ok(filter)
}

/// The management extension of `store`; an `Invalid` error naming the backend when it has
/// none.
pub fn management_of(store: &dyn Store) -> StoreResult<&dyn Management> {
    store.management().ok_or_else(|| {
        StoreError::Invalid(format!(
            "the {} store has no management extension: it cannot list, purge or count \
             instances; use a store that implements duraflow_store::Management",
            store.backend()
        ))
    })
}
