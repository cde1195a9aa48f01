//! The work a turn (or a client) asks the store to create besides messages: activity tasks and
//! instances.

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
