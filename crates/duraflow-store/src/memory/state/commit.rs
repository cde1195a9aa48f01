//! Committing, abandoning and renewing turns.

use std::time::Duration;

use duraflow_core::Timestamp;

use super::index::TurnIndex;
use super::{holds, refresh, DueKey, Instance, JournalLog, Lease, State, Task, Wake};
use crate::error::{StoreError, StoreResult};
use crate::rules::{check_direct_task, check_turn, FoundTask, FoundTurn};
use crate::types::{Committed, LeaseToken, NewTask, TaskId, TurnCommit};
use crate::wake::{checkpoint_lease, commit_wakes_turns};

impl State {
    /// Checks a commit against the instance without changing anything.
    fn check_commit(&self, commit: &TurnCommit) -> StoreResult<()> {
        let found = self
            .instances
            .get(&commit.instance_id)
            .map(|inst| FoundTurn {
                lease: inst.lease.map(|lease| (lease.token, lease.until)),
                execution: inst.info.execution,
                journal_len: Some(
                    inst.journals
                        .get(&inst.info.execution)
                        .map_or(0, JournalLog::len),
                ),
                commit_token: inst.committed_with,
            });
        check_turn(commit, found)?;
        if let Some(direct) = commit.direct {
            let task = self.tasks.get(&direct.task).map(|task| FoundTask {
                instance_id: &task.instance_id,
                execution: task.execution,
                lease: task.lease.map(|lease| (lease.token, lease.until)),
            });
            check_direct_task(commit, task)?;
        }
        self.check_new_callbacks(commit)
    }

    pub(in crate::memory) fn commit_turn(
        &mut self,
        commit: TurnCommit,
        wake: &mut Wake,
    ) -> StoreResult<Committed> {
        self.check_commit(&commit)?;
        let started_version = commit.started_version().map(|v| v.map(str::to_owned));
        let checkpoint = checkpoint_lease(&commit);
        let (status, attempt) = (commit.final_status(), commit.new_attempt());
        let next_execution_at = commit.next_execution_at();
        // From here on nothing can fail, so the commit applies in full.
        let TurnCommit {
            instance_id,
            token,
            execution,
            journal_base: _,
            new_events,
            consumed,
            messages,
            new_instances,
            tasks,
            status: _,
            output,
            failure,
            continue_as_new,
            next_attempt: _,
            claim_tasks,
            keep_lease: _,
            callbacks,
            closed_callbacks,
            cancelled_tasks,
            emits,
            awaits,
            cancelled_awaits,
            direct,
            feed,
            now,
        } = commit;

        // A direct turn's task: its result is in the new events.
        if let Some(task) = direct.and_then(|direct| self.remove_task(direct.task)) {
            if self.frees_task_slot(&task) {
                wake.tasks = true;
            }
        }

        for child in new_instances {
            if !self.instances.contains_key(&child.id) {
                self.insert_instance(child, wake);
            }
        }

        if let Some(inst) = self.instances.get_mut(&instance_id) {
            inst.journals
                .entry(execution)
                .or_default()
                .append(new_events);
            for id in consumed {
                inst.inbox.remove(&id);
            }
        }

        for message in messages {
            let open = self
                .instances
                .get(&message.instance_id)
                .is_some_and(|inst| !inst.info.status.is_terminal());
            if open {
                self.deliver(&message.instance_id, message.kind, message.visible_at);
                wake.turns = true;
            }
        }

        let mut committed = Committed::default();
        let mut claims = claim_tasks.map_or(0, |c| c.max);
        for task in tasks {
            let id = self.next_task_id();
            // A claim takes the first tasks in order, and stops at one of a queue with a task
            // limit: that one is left to a fetch, which enforces the limit.
            if !self.claimable_task(task.options.queue_name()) {
                claims = 0;
            }
            let claim = claim_tasks.filter(|_| claims > 0).map(|c| {
                claims -= 1;
                Lease {
                    token: self.next_token(),
                    until: now.plus(c.lease),
                }
            });
            self.insert_task(id, task, claim);
            match claim {
                Some(_) => {
                    if let Some(work) = self.tasks.get(&id).map(Task::work) {
                        committed.tasks.push(work);
                    }
                }
                None => wake.tasks = true,
            }
        }

        self.open_callbacks(callbacks);
        self.close_callbacks(&instance_id, execution, &closed_callbacks);
        if self.cancel_tasks(&instance_id, execution, &cancelled_tasks) {
            wake.tasks = true;
        }
        self.apply_queue_events(emits, awaits, now, wake);
        self.cancel_awaits(&instance_id, execution, &cancelled_awaits);
        self.append_feed(&instance_id, execution, feed, now, wake);

        // A checkpoint's journal is named by a token never issued to a lease: no cache holds
        // it as it is now (the turn's own run has moved on), so it is read again if the turn
        // dies.
        let checkpoint_token = checkpoint.map(|_| self.next_token());
        let Some(inst) = self.instances.get_mut(&instance_id) else {
            return Ok(committed);
        };
        inst.info.status = status;
        inst.info.output = output;
        inst.info.failure = failure;
        inst.info.updated_at = now;
        if let Some(version) = started_version {
            inst.info.version = version;
        }
        if let (Some(until), Some(named)) = (checkpoint, checkpoint_token) {
            // A checkpoint: the turn goes on under the same token.
            inst.lease = Some(Lease { token, until });
            inst.committed_with = named;
            refresh(&mut self.due, inst);
            return Ok(committed);
        }
        inst.lease = None;
        inst.redo = false;
        inst.committed_with = token;
        if let Some(input) = continue_as_new {
            inst.info.execution += 1;
            inst.info.input = input;
            inst.info.attempt = attempt.unwrap_or(inst.info.attempt);
            if let Some(at) = next_execution_at {
                inst.not_before = Some(at);
            }
            inst.journals
                .insert(inst.info.execution, JournalLog::default());
            wake.instance_changed(&instance_id);
        }
        let finished = inst.info.status.is_terminal();
        if finished {
            inst.inbox.clear();
            inst.not_before = None;
            wake.instance_changed(&instance_id);
            // A running instance finishing makes room in its queue or key: wake the fetchers
            // that held pending instances back.
            if inst.started_at.is_some() && self.flow.finished(&inst.info.queue, inst.key()) {
                wake.turns = true;
            }
        }
        refresh(&mut self.due, inst);
        if commit_wakes_turns(None, inst.due_at()) {
            wake.turns = true;
        }
        let execution = inst.info.execution;
        if finished {
            let tasks = std::mem::take(&mut inst.tasks);
            for id in tasks {
                if let Some(task) = self.remove_task(id) {
                    if self.frees_task_slot(&task) {
                        wake.tasks = true;
                    }
                }
            }
            committed.tasks.clear();
            self.drop_callbacks(&instance_id, None);
            self.drop_waiters(&instance_id, None);
        } else {
            // After a continue-as-new, the callbacks and waiters of the executions before it go.
            self.drop_callbacks(&instance_id, Some(execution));
            self.drop_waiters(&instance_id, Some(execution));
        }
        Ok(committed)
    }

    /// Inserts a new task, leased already when `lease` is given (its first attempt counted).
    fn insert_task(&mut self, id: TaskId, task: NewTask, lease: Option<Lease>) {
        let NewTask {
            instance_id,
            execution,
            op,
            name,
            input,
            options,
            scheduled_at,
        } = task;
        if let Some(inst) = self.instances.get_mut(&instance_id) {
            inst.tasks.insert(id);
        }
        let task = Task {
            id,
            instance_id,
            execution,
            op,
            name,
            queue: options.queue_name().to_owned(),
            input,
            options,
            scheduled_at,
            visible_at: scheduled_at,
            attempt: u32::from(lease.is_some()),
            lease,
            last_failure: None,
            heartbeat_details: None,
        };
        self.task_due.insert(&task.queue, (task.due_at(), id));
        self.tasks.insert(id, task);
    }

    /// Instance `id` and the due index, when `token` holds its lease (live at `now` if given).
    fn leased(
        &mut self,
        id: &str,
        token: LeaseToken,
        now: Option<Timestamp>,
    ) -> StoreResult<(&mut Instance, &mut TurnIndex<(DueKey, String)>)> {
        let inst = self
            .instances
            .get_mut(id)
            .ok_or_else(|| StoreError::instance_not_found(id))?;
        if !holds(inst.lease, token, now) {
            return Err(StoreError::instance_lease_lost(id));
        }
        Ok((inst, &mut self.due))
    }

    pub(in crate::memory) fn abandon_turn(
        &mut self,
        instance_id: &str,
        token: LeaseToken,
        retry_at: Timestamp,
        wake: &mut Wake,
    ) -> StoreResult<()> {
        let (inst, due) = self.leased(instance_id, token, None)?;
        inst.lease = None;
        inst.not_before = Some(retry_at);
        inst.redo = true;
        refresh(due, inst);
        wake.turns = true;
        Ok(())
    }

    pub(in crate::memory) fn renew_turn(
        &mut self,
        instance_id: &str,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp> {
        let (inst, due) = self.leased(instance_id, token, Some(now))?;
        let until = now.plus(lease);
        inst.lease = Some(Lease { token, until });
        refresh(due, inst);
        Ok(until)
    }
}
