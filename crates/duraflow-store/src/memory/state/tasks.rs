//! Activity tasks: fetching, completing, renewing and releasing.

use std::time::Duration;

use duraflow_core::Timestamp;

use super::{holds, Lease, State, Task, Wake};
use crate::error::{StoreError, StoreResult};
use crate::types::{
    LeaseToken, MessageKind, OpResult, TaskCompletion, TaskId, TaskRelease, TaskWork,
};

fn task_not_found(id: TaskId) -> StoreError {
    StoreError::NotFound(format!("task {}", id.0))
}

fn task_lease_lost(id: TaskId) -> StoreError {
    StoreError::LeaseLost {
        what: format!("task {}", id.0),
    }
}

impl State {
    pub(in crate::memory) fn fetch_tasks(
        &mut self,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> Vec<TaskWork> {
        let mut ready: Vec<(Timestamp, TaskId)> = self
            .tasks
            .values()
            .filter(|t| t.visible_at <= now && !t.lease.is_some_and(|l| l.live(now)))
            .map(|t| (t.visible_at, t.id))
            .collect();
        ready.sort_unstable();
        ready.truncate(max);

        let lease_until = now.plus(lease);
        let mut work = Vec::with_capacity(ready.len());
        for (_, id) in ready {
            let token = self.next_token();
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            task.attempt = task.attempt.saturating_add(1);
            task.lease = Some(Lease {
                token,
                until: lease_until,
            });
            work.push(TaskWork {
                id,
                instance_id: task.instance_id.clone(),
                execution: task.execution,
                op: task.op.clone(),
                name: task.name.clone(),
                input: task.input.clone(),
                options: task.options.clone(),
                attempt: task.attempt,
                scheduled_at: task.scheduled_at,
                token,
                lease_until,
                last_failure: task.last_failure.clone(),
            });
        }
        work
    }

    pub(in crate::memory) fn complete_task(
        &mut self,
        now: Timestamp,
        completion: TaskCompletion,
        wake: &mut Wake,
    ) -> StoreResult<()> {
        let TaskCompletion { id, token, result } = completion;
        let task = self.tasks.get(&id).ok_or_else(|| task_not_found(id))?;
        if !holds(task.lease, token, Some(now)) {
            return Err(task_lease_lost(id));
        }
        let Some(task) = self.tasks.remove(&id) else {
            return Err(task_not_found(id));
        };
        self.post_result(task, result, now, wake);
        Ok(())
    }

    /// Posts a finished task's result to its instance, unless the instance has finished.
    fn post_result(&mut self, task: Task, result: OpResult, now: Timestamp, wake: &mut Wake) {
        let open = self
            .instances
            .get(&task.instance_id)
            .is_some_and(|inst| !inst.info.status.is_terminal());
        if open {
            let kind = MessageKind::ActivityResult {
                execution: task.execution,
                op: task.op,
                result,
            };
            self.deliver(&task.instance_id, kind, now);
            wake.turns = true;
        }
    }

    pub(in crate::memory) fn renew_task(
        &mut self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp> {
        let task = self.tasks.get_mut(&id).ok_or_else(|| task_not_found(id))?;
        if !holds(task.lease, token, Some(now)) {
            return Err(task_lease_lost(id));
        }
        let until = now.plus(lease);
        task.lease = Some(Lease { token, until });
        Ok(until)
    }

    pub(in crate::memory) fn release_task(
        &mut self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
        wake: &mut Wake,
    ) -> StoreResult<()> {
        let task = self.tasks.get_mut(&id).ok_or_else(|| task_not_found(id))?;
        if !holds(task.lease, token, None) {
            return Err(task_lease_lost(id));
        }
        task.lease = None;
        match release {
            TaskRelease::Retry {
                visible_at,
                failure,
            } => {
                task.visible_at = visible_at;
                task.last_failure = Some(failure);
            }
            TaskRelease::HandBack => {
                task.attempt = task.attempt.saturating_sub(1);
            }
        }
        wake.tasks = true;
        Ok(())
    }
}
