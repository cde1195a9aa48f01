//! An ordered index of work kept once for everything and once per queue, so that a fetch
//! filtered by queue reads only the queues it serves, and `next_due` reads one index.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::FetchFilter;

/// Keys in order, overall and per queue.
#[derive(Debug)]
pub(super) struct QueueIndex<K> {
    all: BTreeSet<K>,
    by_queue: BTreeMap<String, BTreeSet<K>>,
}

impl<K> Default for QueueIndex<K> {
    fn default() -> Self {
        QueueIndex {
            all: BTreeSet::new(),
            by_queue: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> QueueIndex<K> {
    pub(super) fn insert(&mut self, queue: &str, key: K) {
        self.all.insert(key.clone());
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
        self.all.remove(key);
        if let Some(keys) = self.by_queue.get_mut(queue) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_queue.remove(queue);
            }
        }
    }

    /// Every key, in order.
    pub(super) fn all(&self) -> &BTreeSet<K> {
        &self.all
    }

    /// Up to `max` keys of each queue `filter` serves that `take` accepts, read in order while
    /// `due` holds, merged in order and cut to `max`.
    pub(super) fn select(
        &self,
        filter: &FetchFilter,
        max: usize,
        due: impl Fn(&K) -> bool,
        take: impl Fn(&K) -> bool,
    ) -> Vec<K> {
        let queues: BTreeSet<&str> = filter.queues.iter().map(String::as_str).collect();
        let mut keys: Vec<K> = queues
            .into_iter()
            .filter_map(|q| self.by_queue.get(q))
            .flat_map(|keys| {
                keys.iter()
                    .take_while(|k| due(k))
                    .filter(|k| take(k))
                    .take(max)
                    .cloned()
            })
            .collect();
        keys.sort();
        keys.truncate(max);
        keys
    }
}
