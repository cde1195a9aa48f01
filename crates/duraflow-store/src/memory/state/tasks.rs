//! Activity tasks: fetching, completing, renewing and releasing.

use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{OpId, Payload, Timestamp};

use super::{holds, Lease, State, Task, Wake};
use crate::error::{StoreError, StoreResult};
use crate::journal_cache::JournalCache;
use crate::types::{
    Completed, FetchFilter, LeaseToken, MessageKind, OpResult, TaskCompletion, TaskId, TaskRelease,
    TaskWork,
};
use crate::wake::PostedResults;

impl Task {
    /// The task as handed to the worker holding its lease.
    pub(super) fn work(&self) -> TaskWork {
        let lease = self.lease.unwrap_or(Lease {
            token: LeaseToken(0),
            until: Timestamp(0),
        });
        TaskWork {
            id: self.id,
            instance_id: self.instance_id.clone(),
            execution: self.execution,
            op: self.op.clone(),
            name: self.name.clone(),
            input: self.input.clone(),
            options: self.options.clone(),
            attempt: self.attempt,
            scheduled_at: self.scheduled_at,
            token: lease.token,
            lease_until: lease.until,
            last_failure: self.last_failure.clone(),
            heartbeat_details: self.heartbeat_details.clone(),
        }
    }
}

impl State {
    /// Changes a task through `f`, keeping its place in the due index.
    fn update_task<T>(&mut self, id: TaskId, f: impl FnOnce(&mut Task) -> T) -> Option<T> {
        let task = self.tasks.get_mut(&id)?;
        self.task_due.remove(&task.queue, &(task.due_at(), id));
        let out = f(task);
        self.task_due.insert(&task.queue, (task.due_at(), id));
        Some(out)
    }

    /// How many more tasks of `queue` a fetch at `now` may lease: its task limit less the
    /// tasks of the queue whose lease is live (unbounded without a limit).
    fn task_quota(&self, queue: &str, now: Timestamp) -> usize {
        let Some(limit) = self.flow.task_limit(queue) else {
            return usize::MAX;
        };
        // A leased task's place in the index is its lease's expiry: the live ones are last.
        let running = self
            .task_due
            .of_queue(queue)
            .rev()
            .take_while(|(at, _)| *at > now)
            .filter(|(_, id)| self.tasks.get(id).is_some_and(|t| t.lease.is_some()))
            .count();
        (limit as usize).saturating_sub(running)
    }

    /// Whether deleting or releasing `task` frees a slot under its queue's task limit (so task
    /// fetchers must be woken).
    pub(super) fn frees_task_slot(&self, task: &Task) -> bool {
        task.lease.is_some() && self.flow.task_limit(&task.queue).is_some()
    }

    /// Whether a commit may claim (lease directly) a new task of `queue`: not when the queue
    /// has a task limit, which only fetches enforce.
    pub(super) fn claimable_task(&self, queue: &str) -> bool {
        self.flow.task_limit(queue).is_none()
    }

    /// Deletes the tasks of `ops` of an instance's execution (see `TurnCommit::cancelled_tasks`).
    /// Returns whether a slot under a queue's task limit was freed.
    pub(super) fn cancel_tasks(&mut self, instance_id: &str, execution: u32, ops: &[OpId]) -> bool {
        if ops.is_empty() {
            return false;
        }
        let doomed: Vec<TaskId> = self
            .instances
            .get(instance_id)
            .map(|inst| {
                inst.tasks
                    .iter()
                    .filter(|id| {
                        self.tasks
                            .get(id)
                            .is_some_and(|t| t.execution == execution && ops.contains(&t.op))
                    })
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let mut freed = false;
        for id in doomed {
            if let Some(task) = self.remove_task(id) {
                freed |= self.frees_task_slot(&task);
            }
        }
        freed
    }

    pub(super) fn remove_task(&mut self, id: TaskId) -> Option<Task> {
        let task = self.tasks.remove(&id)?;
        self.task_due.remove(&task.queue, &(task.due_at(), id));
        if let Some(inst) = self.instances.get_mut(&task.instance_id) {
            inst.tasks.remove(&id);
        }
        Some(task)
    }

    pub(in crate::memory) fn fetch_tasks(
        &mut self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> Vec<TaskWork> {
        let ready: Vec<TaskId> = self
            .task_due
            .select(
                filter,
                max,
                |(at, _)| *at <= now,
                |(_, id)| {
                    self.tasks
                        .get(id)
                        .is_some_and(|t| filter.matches(&t.queue, &t.name))
                },
                |queue| self.task_quota(queue, now),
            )
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let until = now.plus(lease);
        let mut work = Vec::with_capacity(ready.len());
        for id in ready {
            let token = self.next_token();
            let leased = self.update_task(id, |task| {
                task.attempt = task.attempt.saturating_add(1);
                task.lease = Some(Lease { token, until });
                task.work()
            });
            work.extend(leased);
        }
        work
    }

    pub(in crate::memory) fn complete_tasks(
        &mut self,
        filter: &FetchFilter,
        now: Timestamp,
        completions: Vec<TaskCompletion>,
        cache: Option<&Arc<dyn JournalCache>>,
        wake: &mut Wake,
    ) -> Vec<StoreResult<Completed>> {
        let mut claims: Vec<(usize, String, Duration)> = Vec::new();
        // Instances that got a result, so a turn to run.
        let mut posted = PostedResults::default();
        let mut results: Vec<StoreResult<Completed>> = completions
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let claim = c.claim_turn;
                let (instance_id, freed) = self.complete_task(now, c)?;
                if freed {
                    wake.tasks = true;
                }
                if let Some(instance_id) = instance_id {
                    if let Some(lease) = claim {
                        if !claims.iter().any(|(_, id, _)| *id == instance_id) {
                            claims.push((i, instance_id.clone(), lease));
                        }
                    }
                    posted.posted(instance_id);
                }
                Ok(Completed::default())
            })
            .collect();
        // Claims come after every result of the batch is in the inbox, so the claimed turn
        // sees them all.
        for (i, instance_id, lease) in claims {
            if self.claimable(&instance_id, filter, now) {
                let turn = self.lease_turn(&instance_id, now, lease, cache);
                if turn.is_some() {
                    posted.claimed(&instance_id);
                }
                if let Some(Ok(completed)) = results.get_mut(i) {
                    completed.turn = turn;
                }
            }
        }
        // The turns claimed here need nobody else: wake the dispatchers only for the rest.
        posted.wake(wake);
        results
    }

    /// Completes one task; returns the instance its result was posted to (none when the
    /// instance has finished), and whether a slot under a task limit was freed.
    fn complete_task(
        &mut self,
        now: Timestamp,
        completion: TaskCompletion,
    ) -> StoreResult<(Option<String>, bool)> {
        let TaskCompletion {
            id, token, result, ..
        } = completion;
        let task = self
            .tasks
            .get(&id)
            .ok_or_else(|| StoreError::task_not_found(id))?;
        if !holds(task.lease, token, Some(now)) {
            return Err(StoreError::task_lease_lost(id));
        }
        let task = self
            .remove_task(id)
            .ok_or_else(|| StoreError::task_not_found(id))?;
        let freed = self.frees_task_slot(&task);
        Ok((self.post_result(task, result, now), freed))
    }

    /// Posts a finished task's result to its instance, unless the instance has finished.
    /// Returns the instance it was posted to.
    fn post_result(&mut self, task: Task, result: OpResult, now: Timestamp) -> Option<String> {
        let open = self
            .instances
            .get(&task.instance_id)
            .is_some_and(|inst| !inst.info.status.is_terminal());
        if !open {
            return None;
        }
        let kind = MessageKind::ActivityResult {
            execution: task.execution,
            op: task.op,
            result,
        };
        self.deliver(&task.instance_id, kind, now);
        Some(task.instance_id)
    }

    pub(in crate::memory) fn renew_task(
        &mut self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
        details: Option<Payload>,
    ) -> StoreResult<Timestamp> {
        let task = self
            .tasks
            .get(&id)
            .ok_or_else(|| StoreError::task_not_found(id))?;
        if !holds(task.lease, token, Some(now)) {
            return Err(StoreError::task_lease_lost(id));
        }
        let until = now.plus(lease);
        self.update_task(id, |task| {
            task.lease = Some(Lease { token, until });
            if details.is_some() {
                task.heartbeat_details = details;
            }
        });
        Ok(until)
    }

    pub(in crate::memory) fn release_task(
        &mut self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
        wake: &mut Wake,
    ) -> StoreResult<()> {
        let task = self
            .tasks
            .get(&id)
            .ok_or_else(|| StoreError::task_not_found(id))?;
        if !holds(task.lease, token, None) {
            return Err(StoreError::task_lease_lost(id));
        }
        self.update_task(id, |task| {
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
        });
        wake.tasks = true;
        Ok(())
    }
}
