//! Leasing turns in priority order, admitting pending instances within their queues' limits.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use duraflow_core::Timestamp;

use super::{DueKey, Instance, State};
use crate::journal_cache::JournalCache;
use crate::queue_config::{pending_scan, Verdict};
use crate::types::{FetchFilter, TurnWork};

impl State {
    pub(in crate::memory) fn fetch_turns(
        &mut self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
        cache: Option<&Arc<dyn JournalCache>>,
    ) -> Vec<TurnWork> {
        // Everything due by `now` is fetchable; the check for a visible message (or an expired
        // lease or an abandoned turn, which a checkpoint may have left with an empty inbox)
        // only guards against a caller whose clock went backwards since the index was updated.
        let due = |((at, _), _): &(DueKey, String)| *at <= now;
        let take = |(_, id): &(DueKey, String)| {
            self.instances.get(id).is_some_and(|inst| {
                filter.matches(&inst.info.queue, &inst.info.name)
                    && (inst.lease.is_some_and(|l| !l.live(now))
                        || inst.redo
                        || inst.visible(now).next().is_some())
            })
        };
        let queues: BTreeSet<&str> = filter.queues.iter().map(String::as_str).collect();
        let mut candidates = Vec::new();
        for queue in queues {
            let found = self
                .due
                .candidates(queue, max, pending_scan(max), due, take);
            candidates.extend(found.into_iter().map(|c| (queue, c)));
        }
        candidates.sort_by(|(_, a), (_, b)| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut admissions = HashMap::new();
        let mut ready = Vec::new();
        for (queue, (_, (_, id), admitted)) in &candidates {
            if ready.len() == max {
                break;
            }
            let key = self.instances.get(id).and_then(Instance::key);
            if !admitted && self.flow.needs_admission(queue, key) {
                let admission = admissions.entry(*queue).or_insert_with(|| {
                    let keys = candidates
                        .iter()
                        .filter(|(q, c)| q == queue && !c.2)
                        .filter_map(|(_, (_, (_, id), _))| self.instances.get(id)?.key());
                    self.flow.admission(queue, keys, now)
                });
                if admission.admit(key) != Verdict::Admit {
                    continue;
                }
            }
            ready.push(id.clone());
        }
        ready
            .into_iter()
            .filter_map(|id| self.lease_turn(&id, now, lease, cache))
            .collect()
    }
}
