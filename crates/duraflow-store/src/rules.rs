//! Rules every store applies the same way to what it is asked to write, kept here once so that
//! each store only adds what its own data needs.

use std::collections::HashSet;

use duraflow_core::{EventKind, OpId, Timestamp};

use crate::error::{StoreError, StoreResult};
use crate::types::{
    validate_instance_id, CallbackResolution, CallbackStatus, InstanceStatus, LeaseToken,
    MessageKind, NewCallback, OpResult, TurnCommit,
};

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

/// Refuses a [`TurnCommit::next_attempt`] without a continue-as-new: only a new execution can
/// be a new attempt.
fn check_next_attempt(commit: &TurnCommit) -> StoreResult<()> {
    if commit.next_attempt.is_none() || commit.continue_as_new.is_some() {
        return Ok(());
    }
    Err(StoreError::Invalid(format!(
        "a commit of instance {:?} names a next attempt but does not continue as new: a \
         workflow's retry starts a new execution, so set continue_as_new too. Nothing was written",
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
    check_next_attempt(commit)?;
    for record in &commit.feed {
        crate::feed::validate_topic(&record.topic)?;
    }
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
    crate::queue_events::check_commit_queue_events(commit)?;
    check_callbacks(commit)
}

/// What a store found of the instance a turn commits to, for [`check_turn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundTurn {
    /// The instance's lease (its token and when it runs out), if a turn holds one.
    pub lease: Option<(LeaseToken, Timestamp)>,
    /// The instance's current execution.
    pub execution: u32,
    /// How many events the journal of its current execution holds (`None` when the store
    /// could not count them, which refuses the commit as a lost lease).
    pub journal_len: Option<usize>,
    /// The token that names the instance's last commit (what a direct turn continues).
    pub commit_token: LeaseToken,
}

/// What a store found of the task a direct turn ([`TurnCommit::direct`]) delivers, for
/// [`check_direct_task`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundTask<'a> {
    /// The instance that scheduled it.
    pub instance_id: &'a str,
    /// The execution that scheduled it.
    pub execution: u32,
    /// Its lease (token and expiry), if leased.
    pub lease: Option<(LeaseToken, Timestamp)>,
}

/// Checks the task of a direct turn against what the store `found` of it (`None`: no such
/// task): it must belong to the commit's instance and execution, and the commit's task token
/// must hold its live lease. `Ok` for a commit that is not a direct turn.
pub fn check_direct_task(commit: &TurnCommit, found: Option<FoundTask<'_>>) -> StoreResult<()> {
    let Some(direct) = commit.direct else {
        return Ok(());
    };
    let Some(task) = found else {
        return Err(StoreError::task_not_found(direct.task));
    };
    if task.instance_id != commit.instance_id || task.execution != commit.execution {
        return Err(StoreError::Invalid(format!(
            "a direct turn of instance {:?}, execution {}, delivers task {} of instance {:?},              execution {}: a direct turn delivers a task of its own execution. Nothing was              written; this is a bug in the engine that made the commit, please report it",
            commit.instance_id, commit.execution, direct.task.0, task.instance_id, task.execution
        )));
    }
    if !holds_lease(task.lease, direct.task_token, Some(commit.now)) {
        return Err(StoreError::task_lease_lost(direct.task));
    }
    Ok(())
}

/// Whether `lease` (the token it was granted with and when it runs out; `None` when nothing
/// holds it) is held with `token`, and still live at `now` if given: a lease runs out at its
/// time, not after. Without `now` an expired lease that nobody took over still counts, which
/// lets its holder give it back (abandon a turn, release a task).
pub fn holds_lease(
    lease: Option<(LeaseToken, Timestamp)>,
    token: LeaseToken,
    now: Option<Timestamp>,
) -> bool {
    lease.is_some_and(|(held, until)| held == token && now.is_none_or(|now| until > now))
}

/// Checks a turn commit against what the store `found` of its instance (`None`: no such
/// instance), then what it would write ([`check_commit`]): the commit's token must hold the
/// instance's live lease, it must commit to the current execution, and its journal base must be
/// the journal's length (a journal that grew since the turn read it means another turn has
/// the instance: the lease is lost). Nothing is written when it refuses.
pub fn check_turn(commit: &TurnCommit, found: Option<FoundTurn>) -> StoreResult<()> {
    let id = &commit.instance_id;
    let Some(found) = found else {
        return Err(StoreError::instance_not_found(id));
    };
    let held = match commit.direct {
        None => holds_lease(found.lease, commit.token, Some(commit.now)),
        // A direct turn holds no lease: nobody may hold one now, and nothing may have been
        // committed since the commit whose journal it continued.
        Some(_) => {
            found.lease.is_none_or(|(_, until)| until <= commit.now)
                && found.commit_token == commit.token
        }
    };
    if !held {
        return Err(StoreError::instance_lease_lost(id));
    }
    if commit.execution != found.execution {
        return Err(StoreError::Invalid(format!(
            "a turn of instance {id:?} commits to execution {} but the current execution is {}",
            commit.execution, found.execution
        )));
    }
    if found.journal_len != Some(commit.journal_base) {
        // Someone else extended the journal since this turn read it.
        return Err(StoreError::instance_lease_lost(id));
    }
    check_commit(commit)
}

/// Refuses callbacks a commit cannot open or close: one for another instance or execution, one
/// without a token, a token used twice, or a "closing" to `Open`.
fn check_callbacks(commit: &TurnCommit) -> StoreResult<()> {
    let refuse = |what: String| {
        Err(StoreError::Invalid(format!(
            "a turn of instance {:?} was refused: {what}. Nothing was written; this is a bug in \
             the engine that made the commit, please report it",
            commit.instance_id
        )))
    };
    let mut tokens = HashSet::new();
    for cb in &commit.callbacks {
        if cb.instance_id != commit.instance_id || cb.execution != commit.execution {
            return refuse(format!(
                "it opens callback {:?} (operation {}) for instance {:?}, execution {}, not its own \
                 execution {}",
                cb.name, cb.op, cb.instance_id, cb.execution, commit.execution
            ));
        }
        if cb.token.trim().is_empty() {
            return refuse(format!(
                "callback {:?} (operation {}) has no token",
                cb.name, cb.op
            ));
        }
        if !tokens.insert(cb.token.as_str()) {
            return refuse(format!("two callbacks share a token (operation {})", cb.op));
        }
    }
    if let Some((op, _)) = commit
        .closed_callbacks
        .iter()
        .find(|(_, status)| *status == CallbackStatus::Open)
    {
        return refuse(format!("it closes the callback of operation {op} as open"));
    }
    Ok(())
}

/// What resolving an open callback of `execution`'s operation `op` does: its new status and the
/// message that goes to its instance's inbox.
pub fn callback_outcome(
    execution: u32,
    op: OpId,
    resolution: CallbackResolution,
) -> (CallbackStatus, MessageKind) {
    let (status, result) = match resolution {
        CallbackResolution::Complete(value) => (CallbackStatus::Completed, OpResult::Ok(value)),
        CallbackResolution::Fail(failure) => (CallbackStatus::Failed, OpResult::Err(failure)),
        CallbackResolution::Heartbeat => {
            return (
                CallbackStatus::Open,
                MessageKind::CallbackHeartbeat { execution, op },
            )
        }
    };
    let message = MessageKind::CallbackResult {
        execution,
        op,
        result,
    };
    (status, message)
}

/// The execution whose journal a read of instance `id` names (`asked`; its current one,
/// `current`, by default), or [`StoreError::NotFound`] when the instance has no such
/// execution (executions count from 1).
pub fn journal_execution(id: &str, asked: Option<u32>, current: u32) -> StoreResult<u32> {
    let execution = asked.unwrap_or(current);
    if execution == 0 || execution > current {
        return Err(StoreError::execution_not_found(id, execution, current));
    }
    Ok(execution)
}

/// Whether a callback can take a resolution ([`callback_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackState {
    /// It is open and its instance waits for it: the resolution applies.
    Open,
    /// Its timeout has passed while it was open: the store records it as timed out (and keeps
    /// that even though the resolution is refused), then refuses with this error.
    TimedOut(StoreError),
    /// Refused, and nothing changes: its instance no longer waits for it
    /// ([`StoreError::CallbackNotFound`]), or it was closed already
    /// ([`StoreError::CallbackClosed`]).
    Refused(StoreError),
}

/// Whether a callback with `status` and `timeout_at` can take a resolution at `now`; `live`
/// says whether its instance still waits for it (the instance has not finished and is still
/// in the callback's execution).
pub fn callback_state(
    live: bool,
    status: CallbackStatus,
    timeout_at: Option<Timestamp>,
    now: Timestamp,
) -> CallbackState {
    if !live {
        return CallbackState::Refused(StoreError::CallbackNotFound);
    }
    if status != CallbackStatus::Open {
        return CallbackState::Refused(StoreError::CallbackClosed { status });
    }
    if timeout_at.is_some_and(|at| at <= now) {
        return CallbackState::TimedOut(StoreError::CallbackClosed {
            status: CallbackStatus::TimedOut,
        });
    }
    CallbackState::Open
}

/// The refusal of a commit that opens a callback whose token another callback holds (each
/// store checks this against its own data).
pub fn callback_token_taken(instance_id: &str, cb: &NewCallback) -> StoreError {
    StoreError::Invalid(format!(
        "a turn of instance {instance_id:?} was refused: the token of its callback {:?} \
         (operation {}) is taken by another callback. Tokens must be unguessable and unique; \
         nothing was written",
        cb.name, cb.op
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_takes_a_resolution_only_while_open_live_and_in_time() {
        let (now, later) = (Timestamp(10), Some(Timestamp(11)));
        let open = CallbackStatus::Open;
        assert_eq!(callback_state(true, open, later, now), CallbackState::Open);
        assert_eq!(callback_state(true, open, None, now), CallbackState::Open);
        assert_eq!(
            callback_state(false, CallbackStatus::Completed, later, now),
            CallbackState::Refused(StoreError::CallbackNotFound)
        );
        assert_eq!(
            callback_state(true, CallbackStatus::Failed, Some(now), now),
            CallbackState::Refused(StoreError::CallbackClosed {
                status: CallbackStatus::Failed
            })
        );
        assert_eq!(
            callback_state(true, open, Some(now), now),
            CallbackState::TimedOut(StoreError::CallbackClosed {
                status: CallbackStatus::TimedOut
            })
        );
    }
}
