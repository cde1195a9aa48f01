//! Warm instances: workflows kept in memory, replayed, between their turns.
//!
//! When a turn is sent to be committed, the instance's [`WorkflowRun`] (the workflow future,
//! blocked where it waits) goes into this cache under the turn's lease token. The next turn of
//! the instance takes it back and only applies the new messages, instead of reading the journal
//! and replaying it from the start. The store is asked to skip reading a journal only when the
//! cache holds the run of the store's last commit of that instance (the same lease token), so a
//! journal that another process moved on, or a commit that failed, always means a full replay.
//! The run is cached before its commit, not after: nothing of the instance can happen between
//! the two that a later turn would need to see first.
//!
//! The cache is bounded (`EngineOptions::warm_instances`): the least recently used instance
//! is dropped first, so a parked workflow costs store rows, not memory.

use std::sync::{Mutex, MutexGuard, PoisonError};

use duraflow_core::{OpId, WorkflowRun};
use duraflow_store::{InstanceInfo, JournalCache, LeaseToken};
use hashlink::LruCache;

/// A workflow held between turns.
pub(crate) struct WarmRun {
    /// The run, replayed and blocked, with every event committed.
    pub(crate) run: WorkflowRun,
    /// The execution it belongs to.
    pub(crate) execution: u32,
    /// The lease token of the commit that left the journal as the run holds it.
    pub(crate) token: LeaseToken,
    /// The instance as its last turn saw it (what a direct turn starts from).
    pub(crate) instance: Box<InstanceInfo>,
}

/// The warm instances of one engine, least recently used first out.
pub(crate) struct WarmCache {
    runs: Mutex<LruCache<String, WarmRun>>,
    capacity: usize,
}

impl WarmCache {
    /// A cache of at most `capacity` instances (0 keeps none).
    pub(crate) fn new(capacity: usize) -> Self {
        WarmCache {
            runs: Mutex::new(LruCache::new(capacity.max(1))),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<String, WarmRun>> {
        // Every change is a single insert or remove: a poisoned cache is still consistent.
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the run of `instance_id` out of the cache, if it is there.
    pub(crate) fn take(&self, instance_id: &str) -> Option<WarmRun> {
        self.lock().remove(instance_id)
    }

    /// Takes the run of `instance_id` out of the cache if it belongs to `execution` and waits
    /// for operation `op` and nothing else (see [`WorkflowRun::waits_only_for`]): a run whose
    /// next turn a direct turn on `op`'s result can take.
    pub(crate) fn take_waiting_only_for(
        &self,
        instance_id: &str,
        execution: u32,
        op: &OpId,
    ) -> Option<WarmRun> {
        let mut runs = self.lock();
        let waits = runs
            .peek(instance_id)
            .is_some_and(|w| w.execution == execution && w.run.waits_only_for(op));
        if waits {
            runs.remove(instance_id)
        } else {
            None
        }
    }

    /// Takes the run of `instance_id` out of the cache if it is the one of the turn leased with
    /// `token` (a turn whose commit failed), and returns it for the caller to drop.
    pub(crate) fn discard(&self, instance_id: &str, token: LeaseToken) -> Option<WorkflowRun> {
        let mut runs = self.lock();
        if runs.peek(instance_id).is_some_and(|w| w.token == token) {
            runs.remove(instance_id).map(|w| w.run)
        } else {
            None
        }
    }

    /// Keeps the run of a turn that is being committed under `warm.token`, dropping the least
    /// recently used one if full.
    pub(crate) fn put(&self, instance_id: String, warm: WarmRun) {
        if self.capacity == 0 {
            return;
        }
        // Dropping an evicted run drops its workflow future: do it outside the lock.
        let evicted = {
            let mut runs = self.lock();
            let evicted = if runs.len() >= self.capacity && !runs.contains_key(&instance_id) {
                runs.remove_lru().map(|(_, run)| run)
            } else {
                None
            };
            let replaced = runs.insert(instance_id, warm);
            (evicted, replaced)
        };
        drop(evicted);
    }

    /// How many instances are warm.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl JournalCache for WarmCache {
    fn holds(&self, instance_id: &str, execution: u32, token: LeaseToken) -> bool {
        self.lock()
            .peek(instance_id)
            .is_some_and(|w| w.execution == execution && w.token == token)
    }
}
