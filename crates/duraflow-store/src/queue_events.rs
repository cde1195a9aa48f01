//! Queue-wide events in the store: the types a turn commit and a client hand over (defined in
//! `duraflow-core`, re-exported here), and the rules every store applies to them.
//!
//! Each store keeps, per queue, the first emit of each name (`queue_events`) and the awaits
//! not yet answered (`queue_event_waiters`: queue, name, instance, execution, operation). An
//! emit that stores an event sends a [`MessageKind::QueueEvent`] to every waiter of its queue
//! and name and deletes them, atomically with storing it; a commit that registers an await of
//! an event that is stored sends the message in the same commit instead of keeping a waiter.
//! A finished instance's waiters are deleted with the commit that finishes it, and a
//! continue-as-new deletes those of the executions before it.

pub use duraflow_core::{EmitOutcome, NewAwait, NewEmit, StoredEvent};

use duraflow_core::{check_queue_event_name, OpId, Payload};

use crate::error::{StoreError, StoreResult};
use crate::types::{MessageKind, TurnCommit};

/// Refuses a queue or event name no store can keep ([`StoreError::Invalid`]).
pub fn validate_queue_event(queue: &str, name: &str) -> StoreResult<()> {
    check_queue_event_name("a queue", queue)
        .and_then(|()| check_queue_event_name("a queue event's name", name))
        .map_err(StoreError::Invalid)
}

/// Refuses the emits and awaits of a commit that are not of its own instance and execution or
/// have names no store can keep (see [`crate::check_commit`]).
pub(crate) fn check_commit_queue_events(commit: &TurnCommit) -> StoreResult<()> {
    let ours = |instance_id: &str, execution: u32| {
        instance_id == commit.instance_id && execution == commit.execution
    };
    let mut found = Vec::new();
    for e in &commit.emits {
        found.push((
            "emits",
            &e.instance_id,
            e.execution,
            &e.op,
            &e.queue,
            &e.name,
        ));
    }
    for a in &commit.awaits {
        found.push((
            "awaits",
            &a.instance_id,
            a.execution,
            &a.op,
            &a.queue,
            &a.name,
        ));
    }
    for (verb, instance_id, execution, op, queue, name) in found {
        let wrong = if !ours(instance_id, execution) {
            format!(
                "it {verb} queue event {name:?} (operation {op}) for instance {instance_id:?}, \
                 execution {execution}, not its own execution {}",
                commit.execution
            )
        } else if let Err(StoreError::Invalid(why)) = validate_queue_event(queue, name) {
            format!("it {verb} a queue event (operation {op}) that no store can keep: {why}")
        } else {
            continue;
        };
        return Err(StoreError::Invalid(format!(
            "a turn of instance {:?} was refused: {wrong}. Nothing was written; this is a bug in \
             the engine that made the commit, please report it",
            commit.instance_id
        )));
    }
    Ok(())
}

/// The message that hands a waiter (operation `op` of `execution`) the event `name` with
/// `data`.
pub fn queue_event_message(execution: u32, op: OpId, name: &str, data: Payload) -> MessageKind {
    MessageKind::QueueEvent {
        execution,
        op,
        name: name.to_owned(),
        data,
    }
}

/// The message that tells an emitting operation what its emit did.
pub fn emit_result_message(emit: &NewEmit, outcome: EmitOutcome) -> MessageKind {
    MessageKind::EmitResult {
        execution: emit.execution,
        op: emit.op.clone(),
        outcome,
    }
}
