//! Rules every store applies the same way to what it is asked to write, kept here once so that
//! each store only adds what its own data needs.

use duraflow_core::EventKind;

use crate::error::{StoreError, StoreResult};
use crate::types::{validate_instance_id, TurnCommit};

/// Checks what a turn commit would write, before anything of it is written: every execution's
/// journal begins with `workflow_started` and holds it nowhere else, and the child instances it
/// creates have valid ids. The commit's lease and journal position are the store's to check
/// (they need its data).
///
/// A commit that breaks the journal rule comes from a bug in the engine that made it; refusing
/// it keeps the journal replayable and makes the bug fail loudly (the turn is retried and
/// refused again, with this error in the engine's log) instead of stranding the instance.
pub fn check_commit(commit: &TurnCommit) -> StoreResult<()> {
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
