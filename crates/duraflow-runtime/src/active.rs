//! The activities running in this process, so a cancelled instance's activities can be told at
//! once rather than at their next lease renewal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use duraflow_core::OpId;
use duraflow_store::TaskId;
use tokio_util::sync::CancellationToken;

type ByInstance = HashMap<String, HashMap<TaskId, (OpId, CancellationToken)>>;

/// Running activities by instance. Clones share the same record.
#[derive(Clone, Default)]
pub(crate) struct ActiveActivities {
    by_instance: Arc<Mutex<ByInstance>>,
}

/// Removes an activity from [`ActiveActivities`] when its attempt ends.
pub(crate) struct ActiveGuard {
    by_instance: Arc<Mutex<ByInstance>>,
    instance_id: String,
    task: TaskId,
}

impl ActiveActivities {
    /// Records a running attempt.
    pub(crate) fn register(
        &self,
        instance_id: &str,
        task: TaskId,
        op: &OpId,
        token: CancellationToken,
    ) -> ActiveGuard {
        self.by_instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(instance_id.to_owned())
            .or_default()
            .insert(task, (op.clone(), token));
        ActiveGuard {
            by_instance: self.by_instance.clone(),
            instance_id: instance_id.to_owned(),
            task,
        }
    }

    /// Cancels every running activity of an instance.
    pub(crate) fn cancel_instance(&self, instance_id: &str) {
        let map = self
            .by_instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(tasks) = map.get(instance_id) {
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
        let map = self
            .by_instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(tasks) = map.get(instance_id) {
            for (op, token) in tasks.values() {
                if ops.contains(op) {
                    token.cancel();
                }
            }
        }
    }

    /// How many attempts are running.
    pub(crate) fn count(&self) -> usize {
        self.by_instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(HashMap::len)
            .sum()
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut map = self
            .by_instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(tasks) = map.get_mut(&self.instance_id) {
            tasks.remove(&self.task);
            if tasks.is_empty() {
                map.remove(&self.instance_id);
            }
        }
    }
}
