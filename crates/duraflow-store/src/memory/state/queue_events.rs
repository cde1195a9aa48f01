//! Queue-wide events: emitted by clients and turn commits, awaited by turn commits.

use std::collections::BTreeMap;

use duraflow_core::{EmitOutcome, NewAwait, NewEmit, OpId, Payload, StoredEvent, Timestamp};

use super::{State, Wake};
use crate::queue_events::{emit_result_message, queue_event_message};

/// A queue and an event name.
pub(super) type EventKey = (String, String);

/// An await not yet answered.
#[derive(Debug, Clone)]
pub(super) struct Waiter {
    instance_id: String,
    execution: u32,
    op: OpId,
}

/// The queue-wide events and their waiters.
#[derive(Debug, Default)]
pub(super) struct QueueEvents {
    /// The first emit of each name in each queue.
    stored: BTreeMap<EventKey, StoredEvent>,
    /// The waiters of each name in each queue, in registration order.
    waiters: BTreeMap<EventKey, Vec<Waiter>>,
}

impl State {
    /// Emits `name` in `queue` (see `Store::emit_event`).
    pub(in crate::memory) fn emit_event(
        &mut self,
        queue: &str,
        name: &str,
        data: Payload,
        now: Timestamp,
        wake: &mut Wake,
    ) -> EmitOutcome {
        let key = (queue.to_owned(), name.to_owned());
        if self.queue_events.stored.contains_key(&key) {
            return EmitOutcome::AlreadyEmitted;
        }
        let waiters = self.queue_events.waiters.remove(&key).unwrap_or_default();
        let woken = waiters.len() as u64;
        for w in waiters {
            if let Some(inst) = self.instances.get_mut(&w.instance_id) {
                inst.awaited.remove(&key);
            }
            let message = queue_event_message(w.execution, w.op, name, data.clone());
            self.deliver(&w.instance_id, message, now);
            wake.turns = true;
        }
        self.queue_events.stored.insert(
            key,
            StoredEvent {
                queue: queue.to_owned(),
                name: name.to_owned(),
                data,
                emitted_at: now,
            },
        );
        EmitOutcome::Emitted { woken }
    }

    /// The stored event `name` of `queue`.
    pub(in crate::memory) fn queue_event(&self, queue: &str, name: &str) -> Option<StoredEvent> {
        self.queue_events
            .stored
            .get(&(queue.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Applies a commit's emits (each sending its outcome to its operation), then its awaits.
    pub(super) fn apply_queue_events(
        &mut self,
        emits: Vec<NewEmit>,
        awaits: Vec<NewAwait>,
        now: Timestamp,
        wake: &mut Wake,
    ) {
        for emit in emits {
            let outcome = self.emit_event(&emit.queue, &emit.name, emit.data.clone(), now, wake);
            self.deliver(&emit.instance_id, emit_result_message(&emit, outcome), now);
        }
        for a in awaits {
            let key = (a.queue, a.name);
            if let Some(event) = self.queue_events.stored.get(&key) {
                let message = queue_event_message(a.execution, a.op, &key.1, event.data.clone());
                self.deliver(&a.instance_id, message, now);
                continue;
            }
            if let Some(inst) = self.instances.get_mut(&a.instance_id) {
                inst.awaited.insert(key.clone());
            }
            self.queue_events
                .waiters
                .entry(key)
                .or_default()
                .push(Waiter {
                    instance_id: a.instance_id,
                    execution: a.execution,
                    op: a.op,
                });
        }
    }

    /// Deletes the waiters of operations `ops` of `execution` of `instance_id`.
    pub(super) fn cancel_awaits(&mut self, instance_id: &str, execution: u32, ops: &[OpId]) {
        if !ops.is_empty() {
            self.remove_waiters(instance_id, |w| {
                w.execution == execution && ops.contains(&w.op)
            });
        }
    }

    /// Deletes the waiters of `instance_id` of executions before `before` (all when `None`).
    pub(super) fn drop_waiters(&mut self, instance_id: &str, before: Option<u32>) {
        self.remove_waiters(instance_id, |w| before.is_none_or(|b| w.execution < b));
    }

    /// Deletes the waiters of `instance_id` that `gone` picks.
    fn remove_waiters(&mut self, instance_id: &str, gone: impl Fn(&Waiter) -> bool) {
        let Some(inst) = self.instances.get_mut(instance_id) else {
            return;
        };
        let waiters = &mut self.queue_events.waiters;
        inst.awaited.retain(|key| {
            let Some(list) = waiters.get_mut(key) else {
                return false;
            };
            list.retain(|w| w.instance_id != instance_id || !gone(w));
            let kept = list.iter().any(|w| w.instance_id == instance_id);
            if list.is_empty() {
                waiters.remove(key);
            }
            kept
        });
    }
}
