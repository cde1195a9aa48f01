//! The activities running in this process, so a cancelled instance's activities can be told at
//! once rather than at their next lease renewal.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use duraflow_core::OpId;
use duraflow_store::TaskId;
use tokio_util::sync::CancellationToken;

/// How many recent cancellations are remembered for attempts that register after them.
const REMEMBERED_CANCELLATIONS: usize = 4_096;

#[derive(Default)]
struct Running {
    by_instance: HashMap<String, HashMap<TaskId, (OpId, CancellationToken)>>,
    /// The operations whose tasks were cancelled lately, by instance: an attempt whose task
    /// was fetched or claimed before its cancellation but that registers after it (it waited
    /// for a permit) is cancelled as it registers, rather than when its next lease renewal
    /// finds the task gone. (An instance that finished is not remembered: its id may be
    /// started again once purged.)
    cancelled: HashMap<String, HashSet<OpId>>,
    /// The same cancellations, oldest first, to forget the oldest beyond
    /// [`REMEMBERED_CANCELLATIONS`].
    order: VecDeque<(String, OpId)>,
}

impl Running {
    fn remember(&mut self, instance_id: &str, op: &OpId) {
        if self.order.len() == REMEMBERED_CANCELLATIONS {
            if let Some((id, old)) = self.order.pop_front() {
                if let Some(ops) = self.cancelled.get_mut(&id) {
                    ops.remove(&old);
                    if ops.is_empty() {
                        self.cancelled.remove(&id);
                    }
                }
            }
        }
        self.cancelled
            .entry(instance_id.to_owned())
            .or_default()
            .insert(op.clone());
        self.order.push_back((instance_id.to_owned(), op.clone()));
    }

    fn was_cancelled(&self, instance_id: &str, op: &OpId) -> bool {
        self.cancelled
            .get(instance_id)
            .is_some_and(|ops| ops.contains(op))
    }
}

/// Running activities by instance. Clones share the same record.
#[derive(Clone, Default)]
pub(crate) struct ActiveActivities {
    running: Arc<Mutex<Running>>,
}

/// Removes an activity from [`ActiveActivities`] when its attempt ends.
pub(crate) struct ActiveGuard {
    running: Arc<Mutex<Running>>,
    instance_id: String,
    task: TaskId,
}

impl ActiveActivities {
    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a running attempt; one whose operation was cancelled since its task was taken
    /// is cancelled at once.
    pub(crate) fn register(
        &self,
        instance_id: &str,
        task: TaskId,
        op: &OpId,
        token: CancellationToken,
    ) -> ActiveGuard {
        let mut running = self.lock();
        if running.was_cancelled(instance_id, op) {
            token.cancel();
        }
        running
            .by_instance
            .entry(instance_id.to_owned())
            .or_default()
            .insert(task, (op.clone(), token));
        ActiveGuard {
            running: self.running.clone(),
            instance_id: instance_id.to_owned(),
            task,
        }
    }

    /// Cancels every running activity of an instance.
    pub(crate) fn cancel_instance(&self, instance_id: &str) {
        let running = self.lock();
        if let Some(tasks) = running.by_instance.get(instance_id) {
            for (_, token) in tasks.values() {
                token.cancel();
            }
        }
    }

    /// Cancels the running activities of an instance's operations `ops` (their tasks were
    /// cancelled: the workflow no longer wants them).
    pub(crate) fn cancel_ops(&self, instance_id: &str, ops: &[OpId]) {
        if ops.is_empty() {
            return;
        }
        let mut running = self.lock();
        for op in ops {
            running.remember(instance_id, op);
        }
        if let Some(tasks) = running.by_instance.get(instance_id) {
            for (op, token) in tasks.values() {
                if ops.contains(op) {
                    token.cancel();
                }
            }
        }
    }

    /// How many attempts are running.
    pub(crate) fn count(&self) -> usize {
        self.lock().by_instance.values().map(HashMap::len).sum()
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tasks) = running.by_instance.get_mut(&self.instance_id) {
            tasks.remove(&self.task);
            if tasks.is_empty() {
                running.by_instance.remove(&self.instance_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_registered_after_its_cancellation_is_cancelled() {
        let active = ActiveActivities::default();
        let (op1, op2) = (OpId::new(None, 1), OpId::new(None, 2));
        let running = CancellationToken::new();
        let _r = active.register("wf", TaskId(1), &op1, running.clone());
        active.cancel_ops("wf", std::slice::from_ref(&op1));
        assert!(running.is_cancelled());

        // Taken before the cancellation, registered after it.
        let late = CancellationToken::new();
        let _l = active.register("wf", TaskId(2), &op1, late.clone());
        assert!(late.is_cancelled());
        // Other operations and instances are left alone.
        let other = CancellationToken::new();
        let _o = active.register("wf", TaskId(3), &op2, other.clone());
        let elsewhere = CancellationToken::new();
        let _e = active.register("wf-2", TaskId(4), &op1, elsewhere.clone());
        assert!(!other.is_cancelled() && !elsewhere.is_cancelled());
    }

    #[test]
    fn old_cancellations_are_forgotten() {
        let active = ActiveActivities::default();
        for seq in 0..=REMEMBERED_CANCELLATIONS as u32 {
            active.cancel_ops("wf", &[OpId::new(None, seq)]);
        }
        let first = CancellationToken::new();
        let _f = active.register("wf", TaskId(1), &OpId::new(None, 0), first.clone());
        assert!(
            !first.is_cancelled(),
            "the oldest cancellation is forgotten"
        );
        let last = CancellationToken::new();
        let _l = active.register(
            "wf",
            TaskId(2),
            &OpId::new(None, REMEMBERED_CANCELLATIONS as u32),
            last.clone(),
        );
        assert!(last.is_cancelled());
        assert_eq!(active.lock().order.len(), REMEMBERED_CANCELLATIONS);
    }
}
