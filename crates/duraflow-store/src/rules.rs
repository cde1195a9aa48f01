//! Rules every store applies the same way to what it is asked to write, kept here once so that
//! each store only adds what its own data needs.

use duraflow_core::EventKind;

use crate::error::{StoreError, StoreResult};
use crate::types::{validate_instance_id, InstanceStatus, TurnCommit};

/// Refuses a checkpoint ([`TurnCommit::keep_lease`]) that would end the turn's execution: a
/// turn that keeps its lease goes on running, so it can neither finish nor continue as new.
fn check_checkpoint(commit: &TurnCommit) -> StoreResult<()> {
    if commit.keep_lease.is_none() {
        return Ok(());
    }
    let wrong = if commit.continue_as_new.is_some() {
        "continues as new".to_owned()
    } else if commit.status != InstanceStatus::Running {
        format!("sets the status {}", commit.status)
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid(format!(
        "a checkpoint (a commit with keep_lease) of instance {:?} {wrong}, but a checkpointed \
         turn goes on running: its status must stay running and it cannot continue as new. \
         Commit the end of the turn without keep_lease. Nothing was written",
        commit.instance_id
    )))
}

/// Checks what a turn commit would write, before anything of it is written: every execution's
/// journal begins with `workflow_started` and holds it nowhere else, the child instances it
/// creates have valid ids, and a checkpoint keeps its execution running. The commit's lease
/// and journal position are the store's to check (they need its data).
///
/// A commit that breaks the journal rule comes from a bug in the engine that made it; refusing
/// it keeps the journal replayable and makes the bug fail loudly (the turn is retried and
/// refused again, with this error in the engine's log) instead of stranding the instance.
pub fn check_commit(commit: &TurnCommit) -> StoreResult<()> {
    check_checkpoint(commit)?;
    for (i, event) in commit.new_events.iter().enumerate() {
        let position = commit.journal_base + i;
        let is_start = matches!(event.kind, EventKind::WorkflowStarted { .. });
        if is_start != (position == 0) {
            let found = event.kind.type_name();
            let wrong = if position == 0 {
                format!("would begin with `{found}` instead of `workflow_started`")
            } else {
                format!("would hold `workflow_started` again at position {position}")
            };
            return Err(StoreError::Invalid(format!(
                "a turn of instance {:?} was refused: the journal of execution {} {wrong}, \
                 and every execution's journal begins with its one `workflow_started`. Nothing \
                 was written; this is a bug in the engine that made the commit, please report it",
                commit.instance_id, commit.execution
            )));
        }
    }
    for child in &commit.new_instances {
        validate_instance_id(&child.id)?;
    }
    Ok(())
}
