//! Leasing turns in priority order, admitting pending instances within their queues' limits.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use duraflow_core::Timestamp;

use super::index::Candidate;
use super::{DueKey, Instance, State};
use crate::journal_cache::JournalCache;
use crate::queue_config::{admit_in_order, pending_scan, Candidate as Pending};
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
        let due = |((at, _, _), _): &(DueKey, String)| *at <= now;
        let take = |(_, id): &(DueKey, String)| {
            self.instances.get(id).is_some_and(|inst| {
                filter.matches(&inst.info.queue, &inst.info.name)
                    && (inst.lease.is_some_and(|l| !l.live(now))
                        || inst.redo
                        || inst.visible(now).next().is_some())
            })
        };
        let queues: BTreeSet<&str> = filter.queues.iter().map(String::as_str).collect();
        // Most fetches find what they need among the first `max` pending instances; only when
        // a full key held some of those back may others further on be admitted instead.
        let mut scan = max;
        let ready = loop {
            let mut candidates = Vec::new();
            let mut scanned_full = false;
            for &queue in &queues {
                let found = self.due.candidates(queue, max, scan, due, take);
                scanned_full |= found.iter().filter(|c| !c.2).count() >= scan;
                candidates.extend(found.into_iter().map(|c| (queue, c)));
            }
            candidates.sort_by(|(_, a), (_, b)| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let (ready, skipped) = self.admit(&candidates, max, now);
            if skipped && scanned_full && ready.len() < max && scan < pending_scan(max) {
                scan = pending_scan(max);
                continue;
            }
            break ready.into_iter().map(str::to_owned).collect::<Vec<_>>();
        };
        ready
            .into_iter()
            .filter_map(|id| self.lease_turn(&id, now, lease, cache))
            .collect()
    }

    /// Which `candidates` (in lease order) a fetch of at most `max` leases, and whether a
    /// full key held one back ([`admit_in_order`] over this state's counters).
    fn admit<'c>(
        &self,
        candidates: &'c [(&'c str, Candidate<(DueKey, String)>)],
        max: usize,
        now: Timestamp,
    ) -> (Vec<&'c str>, bool) {
        let seen: Vec<Pending<'_>> = candidates
            .iter()
            .map(|(queue, (_, (_, id), admitted))| Pending {
                queue,
                key: self.instances.get(id).and_then(Instance::key),
                admitted: *admitted,
            })
            .collect();
        let Ok((ready, skipped)) = admit_in_order::<Infallible>(
            &seen,
            max,
            |queue, key| Ok(self.flow.needs_admission(queue, key)),
            |queue, keys| Ok(self.flow.admission(queue, keys, now)),
        );
        let ids = ready
            .into_iter()
            .map(|i| candidates[i].1 .1 .1.as_str())
            .collect();
        (ids, skipped)
    }
}
