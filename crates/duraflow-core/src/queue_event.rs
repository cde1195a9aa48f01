//! Queue-wide events: what `ctx.emit_event` / `Client::emit_event` and `ctx.await_event` ask
//! the store for, and what an emit reports.
//!
//! An event of a name is emitted once per queue: the first emit of `(queue, name)` is stored
//! with its data and wakes every instance of that queue awaiting it; later emits change nothing
//! and report [`EmitOutcome::AlreadyEmitted`]. An await registered after the event was stored
//! is answered at once with the stored data.

use serde::{Deserialize, Serialize};

use crate::{OpId, Payload, Timestamp};

/// What an emit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmitOutcome {
    /// The event was stored (the first emit of its name in its queue), and this many awaiting
    /// operations were sent its data.
    Emitted {
        /// How many awaits (across instances of the queue) the emit answered.
        woken: u64,
    },
    /// The event had been emitted before in this queue: nothing changed, and the data of the
    /// first emit stays.
    AlreadyEmitted,
}

impl EmitOutcome {
    /// Whether this emit was the one that stored the event.
    pub fn is_emitted(self) -> bool {
        matches!(self, EmitOutcome::Emitted { .. })
    }
}

/// An emit a turn makes (from `queue_event_emit_started`): the store stores the event unless
/// its queue has it already, sends its data to every await of `(queue, name)`, and sends the
/// emitting operation the [`EmitOutcome`], all in the turn's commit.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEmit {
    /// The instance that emits (the committing one).
    pub instance_id: String,
    /// Its execution.
    pub execution: u32,
    /// The emitting operation, which the outcome is sent to.
    pub op: OpId,
    /// The queue the event is emitted in (the instance's own).
    pub queue: String,
    /// The event's name.
    pub name: String,
    /// The event's data.
    pub data: Payload,
}

/// An await a turn registers (from `queue_event_await_started`): when `(queue, name)` has been
/// emitted already, the store sends the stored data to the operation in the turn's commit;
/// otherwise it keeps the await until an emit answers it or the instance finishes.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAwait {
    /// The instance that awaits (the committing one).
    pub instance_id: String,
    /// Its execution.
    pub execution: u32,
    /// The awaiting operation.
    pub op: OpId,
    /// The queue it awaits in (the instance's own).
    pub queue: String,
    /// The event's name.
    pub name: String,
}

/// A queue-wide event as stored: the first emit of its name in its queue.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Its queue.
    pub queue: String,
    /// Its name.
    pub name: String,
    /// The data of the emit that stored it.
    pub data: Payload,
    /// When it was stored.
    pub emitted_at: Timestamp,
}

/// The longest queue-wide event name (in bytes) a store keeps.
pub const MAX_QUEUE_EVENT_NAME_LEN: usize = 1024;

/// Checks a queue-wide event's name (or a queue's): not empty, at most
/// [`MAX_QUEUE_EVENT_NAME_LEN`] bytes, and without NUL characters (which databases cannot keep
/// in text). The error says what is wrong, for the caller to wrap.
pub fn check_queue_event_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if name.len() > MAX_QUEUE_EVENT_NAME_LEN {
        return Err(format!(
            "{what} of {} bytes is longer than the {MAX_QUEUE_EVENT_NAME_LEN} bytes allowed",
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err(format!("{what} {name:?} holds a NUL character"));
    }
    Ok(())
}
