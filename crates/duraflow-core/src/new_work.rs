//! The work a turn (or a client) asks the store to create besides messages: activity tasks,
//! instances and callbacks.

use crate::{ActivityOptions, InstanceOptions, OpId, ParentLink, Payload, Timestamp};

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
    /// When it is created.
    pub created_at: Timestamp,
    /// When its start message becomes visible (its first turn may run): `None` for
    /// `created_at`, a later time for a delayed start.
    pub start_at: Option<Timestamp>,
    /// Priority, concurrency key, headers, retry and cancellation policies.
    pub options: InstanceOptions,
}

impl NewInstance {
    /// When its start message becomes visible.
    pub fn due_at(&self) -> Timestamp {
        self.start_at
            .unwrap_or(self.created_at)
            .max(self.created_at)
    }
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
