//! Building a turn's commit: an empty one, and the plan moved into it.

use duraflow_core::{Timestamp, TurnEnd, TurnPlan};
use duraflow_store::{
    CallbackStatus, InstanceInfo, InstanceStatus, LeaseToken, MessageId, NextAttempt, TurnCommit,
};

/// An empty commit of a turn of `instance` leased with `token`, at `now`, consuming
/// `consumed`.
pub(super) fn empty_commit(
    instance: &InstanceInfo,
    token: LeaseToken,
    consumed: Vec<MessageId>,
    now: Timestamp,
) -> TurnCommit {
    let mut commit = TurnCommit::unchanged(instance, token, now);
    commit.consumed = consumed;
    commit
}

/// Moves `plan` into `commit`. Returns whether the instance finished.
pub(super) fn fill_commit(commit: &mut TurnCommit, plan: TurnPlan) -> bool {
    let TurnPlan {
        tasks,
        messages,
        instances,
        callbacks,
        timed_out_callbacks,
        emits,
        awaits,
        end,
    } = plan;
    commit.emits = emits;
    commit.awaits = awaits;
    commit.tasks = tasks;
    commit.messages = messages;
    commit.new_instances = instances;
    commit.callbacks = callbacks;
    commit.closed_callbacks = timed_out_callbacks
        .into_iter()
        .map(|op| (op, CallbackStatus::TimedOut))
        .collect();
    let finished = end.is_finished();
    commit.status = match end {
        TurnEnd::Running => InstanceStatus::Running,
        TurnEnd::ContinuedAsNew(input) => {
            commit.continue_as_new = Some(input);
            InstanceStatus::Running
        }
        TurnEnd::Retrying {
            input,
            attempt,
            start_at,
        } => {
            commit.continue_as_new = Some(input);
            commit.next_attempt = Some(NextAttempt { attempt, start_at });
            InstanceStatus::Running
        }
        TurnEnd::Completed(output) => {
            commit.output = Some(output);
            InstanceStatus::Completed
        }
        TurnEnd::Failed(failure) => {
            commit.failure = Some(failure);
            InstanceStatus::Failed
        }
        TurnEnd::Cancelled(failure) => {
            commit.failure = Some(failure);
            InstanceStatus::Cancelled
        }
        TurnEnd::Terminated(failure) => {
            commit.failure = Some(failure);
            InstanceStatus::Terminated
        }
    };
    finished
}
