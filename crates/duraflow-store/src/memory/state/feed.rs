//! The memory store's feed: its records in position order, subscriber cursors, and each
//! instance's last appended `(execution, seq)`.

use std::collections::HashMap;

use duraflow_core::Timestamp;

use super::{State, Wake};
use crate::feed::{read_limit, unseen, FeedEntry, FeedRecord};

/// The feed and its cursors.
#[derive(Debug, Default)]
pub(super) struct FeedLog {
    /// Every record, in position order (position `i + 1` at index `i`).
    entries: Vec<FeedEntry>,
    cursors: HashMap<String, u64>,
    /// The last `(execution, seq)` appended for each instance.
    marks: HashMap<String, (u32, u64)>,
}

impl State {
    /// Appends the records of a commit of `instance_id`'s `execution` that the instance does
    /// not have yet.
    pub(super) fn append_feed(
        &mut self,
        instance_id: &str,
        execution: u32,
        records: Vec<FeedRecord>,
        now: Timestamp,
        wake: &mut Wake,
    ) {
        if records.is_empty() {
            return;
        }
        let log = &mut self.feed;
        let mark = log.marks.get(instance_id).copied().unwrap_or((0, 0));
        let (fresh, mark) = unseen(mark, execution, &records);
        for r in fresh {
            let position = log.entries.len() as u64 + 1;
            log.entries.push(FeedEntry {
                position,
                instance_id: instance_id.to_owned(),
                topic: r.topic.clone(),
                payload: r.payload.clone(),
                at: now,
            });
            wake.feed = true;
        }
        log.marks.insert(instance_id.to_owned(), mark);
    }

    /// Forgets a purged instance's mark, so an instance created again under its id starts
    /// afresh.
    pub(super) fn forget_feed_mark(&mut self, instance_id: &str) {
        self.feed.marks.remove(instance_id);
    }

    pub(in crate::memory) fn read_feed(
        &self,
        after: u64,
        limit: usize,
        prefix: Option<&str>,
    ) -> Vec<FeedEntry> {
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(self.feed.entries.len());
        self.feed.entries[start..]
            .iter()
            .filter(|e| prefix.is_none_or(|p| e.topic.starts_with(p)))
            .take(read_limit(limit))
            .cloned()
            .collect()
    }

    pub(in crate::memory) fn feed_cursor(&self, subscriber: &str) -> Option<u64> {
        self.feed.cursors.get(subscriber).copied()
    }

    pub(in crate::memory) fn save_feed_cursor(&mut self, subscriber: &str, position: u64) {
        let cursor = self.feed.cursors.entry(subscriber.to_owned()).or_default();
        *cursor = (*cursor).max(position);
    }
}
