//! The work a turn (or a client) asks the store to create besides messages: activity tasks,
//! instances and callbacks.

use crate::{ActivityOptions, OpId, ParentLink, Payload, Timestamp};

/// An instance to create: by the client (`start`) or by a parent's turn (a child).
#[derive(Clone, Debug, PartialEq)]
pub struct NewInstance {
    /// The instance id.
    pub id: String,
    /// The workflow's registered name.
    pub name: String,
    /// The input.
    pub input: Payload,
    /// The parent, for an attached child.
    pub parent: Option<ParentLink>,
    /// The queue whose engines run its turns (a continue-as-new keeps it).
    pub queue: String,
    /// When it is created; its start message is visible from then.
    pub created_at: Timestamp,
}

/// An activity task to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    /// The instance that scheduled it.
    pub instance_id: String,
    /// The execution that scheduled it.
    pub execution: u32,
    /// The operation.
    pub op: OpId,
    /// The activity's registered name.
    pub name: String,
    /// The input.
    pub input: Payload,
    /// Retry and timeout options.
    pub options: ActivityOptions,
    /// When it was scheduled.
    pub scheduled_at: Timestamp,
}

/// A callback to open: an operation that an external party completes (or fails, or keeps
/// alive) by presenting `token`, outside the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCallback {
    /// The unguessable token the external party presents. Whoever holds it can resolve the
    /// callback, so it must come from a secure random source, never from the workflow's
    /// deterministic `uuid()`.
    pub token: String,
    /// The instance that waits for it.
    pub instance_id: String,
    /// The execution that waits for it.
    pub execution: u32,
    /// The operation it completes.
    pub op: OpId,
    /// Its name, for people.
    pub name: String,
    /// After this time it can no longer be resolved (it has timed out).
    pub timeout_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
}
