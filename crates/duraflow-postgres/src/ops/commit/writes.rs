//! The columns of a commit batch's write statement.

use std::collections::HashMap;

use duraflow_store::{checkpoint_lease, codec, InstanceStatus, TurnCommit};

use super::{DirectTask, Locked, WriteParts};
use crate::error::OpResult;
use crate::ops::Wake;

/// The columns of a commit batch's write statement, one array each.
#[derive(Default)]
pub(super) struct Writes {
    pub(super) ids: Vec<String>,
    pub(super) statuses: Vec<&'static str>,
    pub(super) outputs: Vec<Option<String>>,
    pub(super) failures: Vec<Option<String>>,
    pub(super) nows: Vec<i64>,
    pub(super) executions: Vec<i32>,
    pub(super) inputs: Vec<Option<String>>,
    pub(super) tokens: Vec<i64>,
    /// A checkpoint's new lease expiry (`None` for a commit that ends its turn).
    pub(super) keep_until: Vec<Option<i64>>,
    /// The attempt a new execution runs (`None` keeps the instance's).
    pub(super) attempts: Vec<Option<i32>>,
    /// When a new execution's start becomes visible (a retry's end of backoff), before which
    /// the instance is not due (`None` keeps it).
    pub(super) not_befores: Vec<Option<i64>>,
    /// Whether the commit begins its execution, so sets the instance's version.
    pub(super) starts: Vec<bool>,
    /// The version a beginning execution's `workflow_started` records.
    pub(super) versions: Vec<Option<String>>,
    pub(super) finished: Vec<bool>,
    pub(super) event_instances: Vec<String>,
    pub(super) event_executions: Vec<i32>,
    pub(super) event_positions: Vec<i32>,
    pub(super) event_data: Vec<Vec<u8>>,
    /// How many events each journal row holds (a commit's events of an instance share one).
    pub(super) event_spans: Vec<i32>,
    pub(super) consumed_instances: Vec<String>,
    pub(super) consumed_ids: Vec<i64>,
    pub(super) task_instances: Vec<String>,
    pub(super) task_executions: Vec<i32>,
    pub(super) task_ops: Vec<String>,
    pub(super) task_names: Vec<String>,
    pub(super) task_inputs: Vec<String>,
    pub(super) task_options: Vec<String>,
    /// Each task's queue, which the statement would otherwise parse out of its options.
    pub(super) task_queues: Vec<String>,
    pub(super) task_scheduled: Vec<i64>,
    pub(super) task_until: Vec<Option<i64>>,
    pub(super) message_instances: Vec<String>,
    pub(super) message_visible: Vec<i64>,
    pub(super) message_kinds: Vec<String>,
    pub(super) cancel_instances: Vec<String>,
    pub(super) cancel_executions: Vec<i32>,
    pub(super) cancel_ops: Vec<String>,
    /// Unclaimed tasks were added; an instance finished or continued as new.
    pub(super) wake: Wake,
}

impl Writes {
    /// The parts of the write statement these writes have rows for.
    pub(super) fn parts(&self) -> WriteParts {
        WriteParts {
            events: !self.event_instances.is_empty(),
            consumed: !self.consumed_ids.is_empty(),
            finished: self.finished.iter().any(|f| *f),
            cancelled: !self.cancel_ops.is_empty(),
            tasks: !self.task_instances.is_empty(),
            sent: !self.message_instances.is_empty(),
        }
    }

    /// Adds an accepted commit. `committing` holds the final status of every instance the batch
    /// commits; `locked`, the status of every other instance it writes to.
    pub(super) fn add(
        &mut self,
        c: &TurnCommit,
        committing: &HashMap<&str, InstanceStatus>,
        locked: &HashMap<String, Locked>,
        direct: Option<&DirectTask>,
    ) -> OpResult<()> {
        let id = &c.instance_id;
        let status = c.final_status();
        let finished = status.is_terminal();
        let execution = c.execution as i32;
        self.ids.push(id.clone());
        self.statuses.push(status.as_str());
        self.outputs
            .push(c.output.as_ref().map(|p| p.as_json().to_owned()));
        self.failures
            .push(c.failure.as_ref().map(codec::to_json).transpose()?);
        self.nows.push(c.now.0);
        self.attempts.push(
            c.new_attempt()
                .map(|attempt| i32::try_from(attempt).unwrap_or(i32::MAX)),
        );
        self.not_befores.push(c.next_execution_at().map(|at| at.0));
        let started = c.started_version();
        self.starts.push(started.is_some());
        self.versions.push(started.flatten().map(str::to_owned));
        match &c.continue_as_new {
            Some(input) => {
                self.executions.push(execution + 1);
                self.inputs.push(Some(input.as_json().to_owned()));
                self.wake.instance_changed(id);
            }
            None => {
                self.executions.push(execution);
                self.inputs.push(None);
            }
        }
        self.tokens.push(c.token.0);
        self.keep_until
            .push(checkpoint_lease(c).map(|until| until.0));
        self.finished.push(finished);
        if finished {
            self.wake.instance_changed(id);
        }

        // The commit's events of this instance, in one journal row.
        match c.new_events.as_slice() {
            [] => {}
            events => {
                self.event_instances.push(id.clone());
                self.event_executions.push(execution);
                self.event_positions.push(c.journal_base as i32);
                self.event_data.push(codec::journal_row_data(events));
                self.event_spans.push(events.len() as i32);
            }
        }
        if finished {
            // The inbox and tasks go; nothing is added to them.
            return self.add_messages(c, committing, locked);
        }
        for m in &c.consumed {
            self.consumed_instances.push(id.clone());
            self.consumed_ids.push(m.0);
        }
        let cancelled = c.cancelled_tasks.iter().map(ToString::to_string);
        // A direct turn's task goes as a cancelled one does: its result is in the new events.
        for op in cancelled.chain(direct.map(|task| task.op.clone())) {
            self.cancel_instances.push(id.clone());
            self.cancel_executions.push(execution);
            self.cancel_ops.push(op);
        }
        for (i, task) in c.tasks.iter().enumerate() {
            let claim = c.claim_tasks.filter(|claim| i < claim.max);
            let until = claim.map(|claim| c.now.plus(claim.lease).0);
            self.wake.tasks |= until.is_none();
            self.task_instances.push(task.instance_id.clone());
            self.task_executions.push(task.execution as i32);
            self.task_ops.push(task.op.to_string());
            self.task_names.push(task.name.clone());
            self.task_inputs.push(task.input.as_json().to_owned());
            self.task_options.push(codec::to_json(&task.options)?);
            self.task_queues.push(task.options.queue_name().to_owned());
            self.task_scheduled.push(task.scheduled_at.0);
            self.task_until.push(until);
        }
        self.add_messages(c, committing, locked)
    }

    /// Adds a commit's messages to open instances; those to unknown or finished instances (or
    /// to instances this batch finishes) are dropped.
    fn add_messages(
        &mut self,
        c: &TurnCommit,
        committing: &HashMap<&str, InstanceStatus>,
        locked: &HashMap<String, Locked>,
    ) -> OpResult<()> {
        for m in &c.messages {
            let to = m.instance_id.as_str();
            let open = match committing.get(to) {
                Some(status) => !status.is_terminal(),
                None => locked.get(to).is_some_and(|l| !l.status.is_terminal()),
            };
            if open {
                self.message_instances.push(m.instance_id.clone());
                self.message_visible.push(m.visible_at.0);
                self.message_kinds.push(codec::to_json(&m.kind)?);
            }
        }
        Ok(())
    }
}
