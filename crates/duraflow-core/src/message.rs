//! Inbox messages: what instances are sent (starts, results, timer firings, callback results,
//! external events, cancellations), as the store keeps them and a turn plans them. A turn
//! turns the messages it takes into delivered journal events (see [`crate::plan`]).

use serde::{Deserialize, Serialize};

use crate::{AttemptStart, EmitOutcome, Failure, OpId, Payload, Timestamp};

/// The result of an activity, a step or a child, as it travels between instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResult {
    /// The output.
    Ok(Payload),
    /// The failure.
    Err(Failure),
}

/// What an inbox message says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageKind {
    /// Start the given execution. Its turn begins the execution's journal with
    /// `workflow_started`, whatever else the inbox holds, and delivers `carried` right after it.
    Start {
        /// The execution to start.
        execution: u32,
        /// Messages for the instance that the previous execution left untaken (external events
        /// it never waited for, and events, cancellations and terminations that arrived as it
        /// continued as new), oldest first. They travel inside the start so that they reach
        /// the new execution before anything sent to the instance later, in the order they were
        /// sent, even when later messages were queued ahead of the start.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        carried: Vec<MessageKind>,
        /// For a new attempt of a workflow retried after a failure: the attempt and what
        /// earlier attempts completed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry: Option<Box<AttemptStart>>,
    },
    /// An activity's final result.
    ActivityResult {
        /// The execution that scheduled it.
        execution: u32,
        /// The operation.
        op: OpId,
        /// The result.
        result: OpResult,
    },
    /// A timer is due.
    TimerFired {
        /// The execution that started it.
        execution: u32,
        /// The operation.
        op: OpId,
    },
    /// A child workflow finished.
    ChildResult {
        /// The parent's execution that started it.
        execution: u32,
        /// The parent's operation.
        op: OpId,
        /// The result.
        result: OpResult,
    },
    /// An external party completed or failed a callback (see `NewCallback`).
    CallbackResult {
        /// The execution that opened it.
        execution: u32,
        /// The operation.
        op: OpId,
        /// The result.
        result: OpResult,
    },
    /// An external party reported that a callback's work is still going on.
    CallbackHeartbeat {
        /// The execution that opened it.
        execution: u32,
        /// The operation.
        op: OpId,
    },
    /// An external event.
    Event {
        /// The event name.
        name: String,
        /// Its data.
        data: Payload,
    },
    /// A queue-wide event for an await of the instance (see `crate::NewAwait`): sent by the
    /// emit that stored it, or by the commit that registered the await when it was stored
    /// already.
    QueueEvent {
        /// The execution that awaits it.
        execution: u32,
        /// The awaiting operation.
        op: OpId,
        /// The event name.
        name: String,
        /// The event's data.
        data: Payload,
    },
    /// What an emit of the instance did (see `crate::NewEmit`).
    EmitResult {
        /// The execution that emitted.
        execution: u32,
        /// The emitting operation.
        op: OpId,
        /// What the emit did.
        outcome: EmitOutcome,
    },
    /// Cancel the instance.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Terminate the instance.
    Terminate {
        /// Why.
        reason: String,
    },
}

impl MessageKind {
    /// The message that starts `execution` with nothing carried over.
    pub fn start(execution: u32) -> Self {
        MessageKind::Start {
            execution,
            carried: Vec::new(),
            retry: None,
        }
    }
}

/// A message to put in an instance's inbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    /// The addressee.
    pub instance_id: String,
    /// What it says.
    pub kind: MessageKind,
    /// It is not delivered before this time.
    pub visible_at: Timestamp,
}
