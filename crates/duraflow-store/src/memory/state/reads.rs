//! Reading and administering: `next_due`, instances, journals, listing, purging, stats.

use std::ops::Bound;

use duraflow_core::{Event, Timestamp};

use super::{JournalLog, State};
use crate::error::{StoreError, StoreResult};
use crate::management::{DepthTally, QueueDepth};
use crate::rules::journal_execution;
use crate::types::{
    InstanceInfo, InstanceStatus, ListFilter, ListOrder, MessageId, NextDue, Page, StoreStats,
    TaskId,
};

impl State {
    pub(in crate::memory) fn next_due(&self, now: Timestamp) -> NextDue {
        let after = Timestamp(now.0.saturating_add(1));
        NextDue {
            turn: self
                .due
                .first_from(&((after, MessageId(i64::MIN), 0), String::new()))
                .map(|((at, _, _), _)| *at),
            task: self
                .task_due
                .first_from(&(after, TaskId(i64::MIN)))
                .map(|(at, _)| *at),
        }
    }

    pub(in crate::memory) fn instance(&self, id: &str) -> Option<InstanceInfo> {
        self.instances.get(id).map(|inst| inst.info.clone())
    }

    /// The instance with its current execution's journal length and last event time.
    pub(in crate::memory) fn describe(&self, id: &str) -> Option<InstanceInfo> {
        self.instances.get(id).map(|inst| {
            let journal = inst.journals.get(&inst.info.execution);
            InstanceInfo {
                journal_len: Some(journal.map_or(0, JournalLog::len) as u64),
                last_event_at: journal.and_then(JournalLog::last).map(|e| e.at),
                ..inst.info.clone()
            }
        })
    }

    pub(in crate::memory) fn journal(
        &self,
        id: &str,
        execution: Option<u32>,
    ) -> StoreResult<Vec<Event>> {
        let inst = self
            .instances
            .get(id)
            .ok_or_else(|| StoreError::instance_not_found(id))?;
        let execution = journal_execution(id, execution, inst.info.execution)?;
        inst.journals
            .get(&execution)
            .map(JournalLog::to_vec)
            .ok_or_else(|| StoreError::execution_not_found(id, execution, inst.info.execution))
    }

    pub(in crate::memory) fn list(&self, filter: ListFilter) -> StoreResult<Page> {
        let size = filter.page_size();
        let cursor = filter.cursor()?;
        if filter.order() == ListOrder::Id {
            let start = match &cursor {
                Some(after) => Bound::Excluded(after.id.as_str()),
                None => Bound::Unbounded,
            };
            let instances = self
                .instances
                .range::<str, _>((start, Bound::Unbounded))
                .map(|(_, inst)| &inst.info)
                .filter(|info| filter.matches(info))
                .take(size + 1)
                .cloned()
                .collect();
            return Ok(Page::listed(instances, &filter));
        }
        // In time order: the matching instances sorted by (time, id), after the cursor.
        let key = |info: &InstanceInfo| (filter.sort_time(info), info.id.clone());
        let after = cursor.map(|c| (c.time, c.id));
        let mut matching: Vec<&InstanceInfo> = self
            .instances
            .values()
            .map(|inst| &inst.info)
            .filter(|info| filter.matches(info))
            .filter(|info| after.as_ref().is_none_or(|after| key(info) > *after))
            .collect();
        matching.sort_by_key(|info| key(info));
        let instances = matching.into_iter().take(size + 1).cloned().collect();
        Ok(Page::listed(instances, &filter))
    }

    pub(in crate::memory) fn purge(&mut self, id: &str) -> StoreResult<bool> {
        let Some(inst) = self.instances.get(id) else {
            return Ok(false);
        };
        if !inst.info.status.is_terminal() {
            return Err(StoreError::InstanceRunning(id.to_owned()));
        }
        self.forget_feed_mark(id);
        if let Some(inst) = self.instances.remove(id) {
            for task in inst.tasks {
                self.remove_task(task);
            }
            for token in inst.callbacks {
                self.callbacks.remove(&token);
            }
            if let Some(slot) = inst.due {
                self.due.remove(&slot);
            }
        }
        Ok(true)
    }

    pub(in crate::memory) fn stats(&self) -> StoreStats {
        // One pass over the instances.
        let mut counts = [0u64; InstanceStatus::ALL.len()];
        let mut messages = 0u64;
        for inst in self.instances.values() {
            messages += inst.inbox.len() as u64;
            if let Some(i) = InstanceStatus::ALL
                .iter()
                .position(|s| *s == inst.info.status)
            {
                counts[i] += 1;
            }
        }
        let instances = InstanceStatus::ALL.into_iter().zip(counts).collect();
        StoreStats {
            instances,
            messages,
            tasks: self.tasks.len() as u64,
            callbacks: self.open_callback_count(),
        }
    }

    pub(in crate::memory) fn queue_depths(&self, now: Timestamp) -> Vec<QueueDepth> {
        let mut depths = DepthTally::default();
        for inst in self.instances.values() {
            match inst.info.status {
                InstanceStatus::Pending if inst.started_at.is_none() => {
                    depths.of(&inst.info.queue).pending_instances += 1;
                }
                InstanceStatus::Pending | InstanceStatus::Running => {
                    depths.of(&inst.info.queue).running_instances += 1;
                }
                _ => {}
            }
        }
        for task in self.tasks.values() {
            let d = depths.of(&task.queue);
            match task.lease {
                Some(lease) if lease.live(now) => d.leased_tasks += 1,
                _ if task.due_at() <= now => d.ready_tasks += 1,
                _ => d.delayed_tasks += 1,
            }
        }
        depths.into_depths()
    }
}
