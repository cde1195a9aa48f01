//! An ordered index of work kept per queue, so that a fetch filtered by queue reads only the
//! queues it serves; `next_due` takes the first key of each queue (and priority). Each change
//! of an instance's due time is one removal and one insertion, in one tree.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::types::FetchFilter;

/// Keys in order, per queue.
#[derive(Debug)]
pub(super) struct QueueIndex<K> {
    by_queue: BTreeMap<String, BTreeSet<K>>,
}

impl<K> Default for QueueIndex<K> {
    fn default() -> Self {
        QueueIndex {
            by_queue: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> QueueIndex<K> {
    pub(super) fn insert(&mut self, queue: &str, key: K) {
        match self.by_queue.get_mut(queue) {
            Some(keys) => {
                keys.insert(key);
            }
            None => {
                self.by_queue
                    .insert(queue.to_owned(), BTreeSet::from([key]));
            }
        }
    }

    pub(super) fn remove(&mut self, queue: &str, key: &K) {
        // An emptied queue keeps its entry, as in `TurnIndex::remove`.
        if let Some(keys) = self.by_queue.get_mut(queue) {
            keys.remove(key);
        }
    }

    /// The first key at or after `from`, of every queue.
    pub(super) fn first_from(&self, from: &K) -> Option<&K> {
        self.by_queue
            .values()
            .filter_map(|keys| keys.range(from..).next())
            .min()
    }

    /// The keys of `queue`, in order.
    pub(super) fn of_queue(&self, queue: &str) -> impl DoubleEndedIterator<Item = &K> {
        self.by_queue.get(queue).into_iter().flatten()
    }

    /// Up to `max` keys of each queue `filter` serves that `take` accepts (and no more than
    /// `quota` allows for the queue), read in order while `due` holds, merged in order and cut
    /// to `max`.
    pub(super) fn select(
        &self,
        filter: &FetchFilter,
        max: usize,
        due: impl Fn(&K) -> bool,
        take: impl Fn(&K) -> bool,
        quota: impl Fn(&str) -> usize,
    ) -> Vec<K> {
        let queues: BTreeSet<&str> = filter.queues.iter().map(String::as_str).collect();
        let mut keys: Vec<K> = queues
            .into_iter()
            .filter_map(|q| self.by_queue.get(q).map(|keys| (q, keys)))
            .flat_map(|(q, keys)| {
                keys.iter()
                    .take_while(|k| due(k))
                    .filter(|k| take(k))
                    .take(max.min(quota(q)))
                    .cloned()
            })
            .collect();
        keys.sort();
        keys.truncate(max);
        keys
    }
}

/// The due index of instances: per queue, the admitted instances and those still pending
/// apart, each by priority (highest first) and then in due order, so that a fetch reads the due work of each priority from its start, and the
/// turns of admitted instances are never read past behind pending ones held back.
#[derive(Debug)]
pub(super) struct TurnIndex<K> {
    by_queue: BTreeMap<String, [ByPriority<K>; 2]>,
}

/// Keys by priority (highest first), each priority's in order.
type ByPriority<K> = BTreeMap<Reverse<i32>, BTreeSet<K>>;

impl<K> Default for TurnIndex<K> {
    fn default() -> Self {
        TurnIndex {
            by_queue: BTreeMap::new(),
        }
    }
}

/// Where an instance sits in a [`TurnIndex`]: its queue, priority and whether it is admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TurnSlot<K> {
    pub(super) queue: String,
    pub(super) priority: i32,
    pub(super) admitted: bool,
    pub(super) key: K,
}

/// A due instance a fetch may lease: its order (priority first), its key and whether it is
/// admitted already.
pub(super) type Candidate<K> = (Reverse<i32>, K, bool);

impl<K: Ord + Clone> TurnIndex<K> {
    pub(super) fn insert(&mut self, slot: &TurnSlot<K>) {
        if !self.by_queue.contains_key(&slot.queue) {
            self.by_queue.insert(slot.queue.clone(), Default::default());
        }
        let Some(parts) = self.by_queue.get_mut(&slot.queue) else {
            return;
        };
        parts[usize::from(slot.admitted)]
            .entry(Reverse(slot.priority))
            .or_default()
            .insert(slot.key.clone());
    }

    pub(super) fn remove(&mut self, slot: &TurnSlot<K>) {
        let Some(parts) = self.by_queue.get_mut(&slot.queue) else {
            return;
        };
        let part = &mut parts[usize::from(slot.admitted)];
        if let Some(keys) = part.get_mut(&Reverse(slot.priority)) {
            keys.remove(&slot.key);
            if keys.is_empty() {
                part.remove(&Reverse(slot.priority));
            }
        }
        // An emptied queue keeps its (empty) entry: there are as many as queues, and a queue
        // that empties tends to fill again at once.
    }

    /// The first key at or after `from` of every queue, part and priority (one lookup per
    /// priority in use in each queue: few).
    pub(super) fn first_from(&self, from: &K) -> Option<&K> {
        self.by_queue
            .values()
            .flat_map(|parts| parts.iter().flat_map(BTreeMap::values))
            .filter_map(|keys| keys.range(from..).next())
            .min()
    }

    /// The due candidates of `queue` that `take` accepts, in lease order: up to `admitted`
    /// of its admitted instances and up to `pending` of the others, each part read priority
    /// by priority while `due` holds.
    pub(super) fn candidates(
        &self,
        queue: &str,
        admitted: usize,
        pending: usize,
        due: impl Fn(&K) -> bool,
        take: impl Fn(&K) -> bool,
    ) -> Vec<Candidate<K>> {
        let Some(parts) = self.by_queue.get(queue) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (part, max) in [(&parts[1], admitted), (&parts[0], pending)] {
            let mut left = max;
            for (priority, keys) in part {
                if left == 0 {
                    break;
                }
                for key in keys.iter().take_while(|k| due(k)).filter(|k| take(k)) {
                    out.push((*priority, key.clone(), std::ptr::eq(part, &parts[1])));
                    left -= 1;
                    if left == 0 {
                        break;
                    }
                }
            }
        }
        out
    }
}
