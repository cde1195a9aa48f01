//! The journal: the append-only list of events of one execution.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::attempt::AttemptStart;
use crate::failure::Failure;
use crate::op_id::OpId;
use crate::payload::Payload;
use crate::primitive::Primitive;
use crate::queue_event::EmitOutcome;
use crate::retry::RetryPolicy;
use crate::time::{serde_millis, Timestamp};

/// The version of the journal event format written by this build. Stores record it with every
/// event; a journal written by a newer format is refused instead of misread.
///
/// Version 2 added step attempts and retries (`step_started.attempt`, `step_retrying`) and
/// child contexts (`context_started`, `context_completed`, `context_failed`,
/// `event_raised.taken_by`), `child_cancelled` and callbacks (`callback_created`,
/// `callback_completed`, `callback_failed`, `callback_heartbeat`); every version-1 journal reads unchanged.
///
/// Version 3 added queue-wide events (`queue_event_emit_started`, `queue_event_emit_completed`,
/// `queue_event_await_started`, `queue_event_received`); every version-1 and version-2 journal
/// reads unchanged, and a build that reads up to version 2 refuses a version-3 journal as
/// written by a newer format instead of misreading it.
///
/// Version 4 added the binary encoding ([`Event::encode_binary`]): the events are those of
/// version 3, and a store may keep them as binary instead of JSON text. A build that reads
/// up to version 3 refuses a version-4 event as written by a newer format.
pub const JOURNAL_FORMAT_VERSION: u32 = 4;

/// The first journal format version whose events may be stored in the binary encoding.
pub const BINARY_FORMAT_VERSION: u32 = 4;

/// An event as a store reads it back: JSON text ([`Event::encode`], any format version) or
/// the binary encoding ([`Event::encode_binary`], from [`BINARY_FORMAT_VERSION`] on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventData<'a> {
    /// JSON text.
    Json(&'a str),
    /// The binary encoding.
    Binary(&'a [u8]),
}

/// One journal entry. Its position in the journal is its index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the event was appended (engine time).
    pub at: Timestamp,
    /// What happened.
    #[serde(rename = "event")]
    pub kind: EventKind,
}

/// Where a child instance reports back to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent instance.
    pub instance_id: String,
    /// The parent's execution that started the child.
    pub execution: u32,
    /// The parent's operation waiting for the child.
    pub op: OpId,
}

/// Options an activity was scheduled with; they travel with its task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ActivityOptions {
    /// How failed attempts are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// The longest one attempt may run before it counts as failed (and may be retried).
    #[serde(
        default,
        with = "serde_millis::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// The longest the activity may take from being scheduled to its final result, retries
    /// included.
    #[serde(
        default,
        with = "serde_millis::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub schedule_to_close: Option<Duration>,
    /// The queue its task goes to; `None` (and a journal written before queues, which has no
    /// such field) means [`DEFAULT_QUEUE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The longest an attempt may go without a heartbeat (`ActivityContext::heartbeat` in the
    /// runtime; the attempt's start counts as one) before it counts as failed, with kind
    /// [`FailureKind::HeartbeatTimedOut`](crate::FailureKind::HeartbeatTimedOut), and may be
    /// retried. `None` (and a journal or task written before heartbeat timeouts, which has no
    /// such field) means none.
    #[serde(
        default,
        with = "serde_millis::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat_timeout: Option<Duration>,
}

/// The queue of an instance or activity task for which none was chosen.
pub const DEFAULT_QUEUE: &str = "default";

impl ActivityOptions {
    /// The queue the activity's task goes to ([`DEFAULT_QUEUE`] unless one was chosen).
    pub fn queue_name(&self) -> &str {
        self.queue.as_deref().unwrap_or(DEFAULT_QUEUE)
    }
}

/// What a journal event records.
///
/// Events are of two sorts. *Issued* events record what the workflow code asked for (scheduling
/// an activity, starting a timer, finishing); on replay the code must ask for the same thing at the
/// same position. *Delivered* events record what arrived from outside (an activity's result, a
/// timer firing, an external event); on replay they are handed to the code again in the same order.
///
/// The large and rare parts (a failure, an activity's options, a parent link) are boxed: every
/// event is as large as the largest variant, and a cold turn moves and walks thousands of them
/// (216 bytes an event with them inline, 120 boxed; decoding a 20,002-event journal took 7.0–7.3
/// ms, then 5.6–5.8 ms). Boxing changes nothing in the stored JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Delivered: the execution started.
    WorkflowStarted {
        /// The workflow's registered name.
        name: String,
        /// The input.
        input: Payload,
        /// The parent, for a child workflow that reports back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<Box<ParentLink>>,
        /// The headers its start set (`ctx.headers()`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        /// For a new attempt of a workflow retried after a failure: the attempt and what
        /// earlier attempts completed (see [`crate::AttemptStart`]). `None` for attempt 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry: Option<Box<AttemptStart>>,
        /// The version the workflow was registered with by the engine that started this
        /// execution (`Workflow::VERSION`, `EngineBuilder::workflow_version`); `None` when it
        /// was registered without one, and in journals written before versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// Issued: an activity was scheduled.
    ActivityScheduled {
        /// The operation.
        op: OpId,
        /// The activity's registered name.
        name: String,
        /// The input.
        input: Payload,
        /// Retry and timeout options.
        options: Box<ActivityOptions>,
    },
    /// Delivered: an activity returned its output.
    ActivityCompleted {
        /// The operation.
        op: OpId,
        /// The output.
        output: Payload,
    },
    /// Delivered: an activity failed for good.
    ActivityFailed {
        /// The operation.
        op: OpId,
        /// Why.
        failure: Box<Failure>,
    },
    /// Issued: a durable timer was started.
    TimerCreated {
        /// The operation.
        op: OpId,
        /// When it fires.
        fire_at: Timestamp,
    },
    /// Delivered: a timer fired.
    TimerFired {
        /// The operation.
        op: OpId,
    },
    /// Issued: an attempt of an inline step began (attempt 1 when the step is first reached,
    /// then one more for each retry).
    StepStarted {
        /// The operation.
        op: OpId,
        /// The step's name.
        name: String,
        /// Which attempt (1 for the first; omitted from the journal when 1).
        #[serde(default = "first_attempt", skip_serializing_if = "is_first_attempt")]
        attempt: u32,
    },
    /// Delivered: an inline step returned its output.
    StepCompleted {
        /// The operation.
        op: OpId,
        /// The output.
        output: Payload,
    },
    /// Delivered: an inline step failed for good.
    StepFailed {
        /// The operation.
        op: OpId,
        /// Why.
        failure: Box<Failure>,
    },
    /// Delivered: an attempt of an inline step failed and its retry policy allows another at
    /// `retry_at` (the step waits on a durable timer of its own operation until then).
    StepRetrying {
        /// The operation.
        op: OpId,
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        failure: Box<Failure>,
        /// When the next attempt starts.
        retry_at: Timestamp,
    },
    /// Issued: the workflow began waiting for an external event.
    EventWaitStarted {
        /// The operation.
        op: OpId,
        /// The event name.
        name: String,
    },
    /// Delivered: an external event arrived (it is buffered until a wait takes it).
    EventRaised {
        /// The event name.
        name: String,
        /// The event's data.
        data: Payload,
        /// The wait inside a child context that took it on arrival, recorded so that replay,
        /// which does not run a completed context's body again, still knows the event was
        /// taken. Not recorded for waits outside child contexts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        taken_by: Option<OpId>,
    },
    /// Issued: a child workflow was started.
    ChildStarted {
        /// The operation.
        op: OpId,
        /// The child's workflow name.
        name: String,
        /// The child's instance id.
        instance_id: String,
        /// The child's input.
        input: Payload,
        /// A detached child does not report back and is not cancelled with its parent.
        #[serde(default)]
        detached: bool,
        /// The child's queue, when the workflow chose one; otherwise (and in journals written
        /// before queues) the child takes its parent's queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
    },
    /// Delivered: a child workflow completed.
    ChildCompleted {
        /// The operation.
        op: OpId,
        /// The child's output.
        output: Payload,
    },
    /// Delivered: a child workflow failed, was cancelled or terminated.
    ChildFailed {
        /// The operation.
        op: OpId,
        /// Why.
        failure: Box<Failure>,
    },
    /// Issued: a callback was opened: an operation that an external party completes, fails
    /// or keeps alive by presenting `token` (see `Client::complete_callback`).
    CallbackCreated {
        /// The operation.
        op: OpId,
        /// The callback's name.
        name: String,
        /// The unguessable token that identifies the instance, execution and operation.
        token: String,
        /// When it times out, if it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at: Option<Timestamp>,
        /// The longest it may go without a completion or a heartbeat, if limited.
        #[serde(
            default,
            with = "serde_millis::option",
            skip_serializing_if = "Option::is_none"
        )]
        heartbeat_timeout: Option<Duration>,
    },
    /// Delivered: an external party completed a callback.
    CallbackCompleted {
        /// The operation.
        op: OpId,
        /// The value it sent.
        output: Payload,
    },
    /// Delivered: a callback failed: the external party said so, or it timed out (kind
    /// `timeout`, code `callback_timed_out` or `callback_heartbeat_timed_out`).
    CallbackFailed {
        /// The operation.
        op: OpId,
        /// Why.
        failure: Box<Failure>,
    },
    /// Delivered: an external party reported that a callback's work is still going on; the
    /// heartbeat deadline moves to `next_deadline`.
    CallbackHeartbeat {
        /// The operation.
        op: OpId,
        /// The new heartbeat deadline (recorded by the run as it journals the heartbeat).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_deadline: Option<Timestamp>,
    },
    /// Issued: the workflow gave up on an attached child (an `invoke` that timed out): the
    /// child is sent a cancellation, and its result is no longer wanted.
    ChildCancelled {
        /// The child's operation.
        op: OpId,
        /// The child's instance id.
        instance_id: String,
        /// Why.
        reason: String,
    },
    /// Issued: the workflow emitted a queue-wide event (see `WorkflowContext::emit_event`);
    /// the turn's commit stores it in the instance's queue unless it is there already.
    QueueEventEmitStarted {
        /// The operation.
        op: OpId,
        /// The event name.
        name: String,
        /// The event's data.
        data: Payload,
    },
    /// Delivered: what an emit did (it stored the event, or the event had been emitted).
    QueueEventEmitCompleted {
        /// The operation.
        op: OpId,
        /// What the emit did.
        outcome: EmitOutcome,
    },
    /// Issued: the workflow began awaiting a queue-wide event (see
    /// `WorkflowContext::await_event`); with a timeout, a timer of this operation fires at
    /// `timeout_at` and, journaled as `timer_fired` before the event, times the await out.
    QueueEventAwaitStarted {
        /// The operation.
        op: OpId,
        /// The event name.
        name: String,
        /// When the await times out, if it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at: Option<Timestamp>,
    },
    /// Delivered: the queue-wide event an await waited for (its stored data).
    QueueEventReceived {
        /// The awaiting operation.
        op: OpId,
        /// The event's data.
        data: Payload,
    },
    /// Delivered: cancellation was requested; the execution ends as cancelled.
    CancelRequested {
        /// Why.
        reason: String,
    },
    /// Delivered: termination was requested; the execution ends as terminated.
    TerminateRequested {
        /// Why.
        reason: String,
    },
    /// Issued: a child context began (see `WorkflowContext::run_in_child_context`); the
    /// operations inside take ids in its scope.
    ContextStarted {
        /// The operation.
        op: OpId,
        /// The context's name.
        name: String,
    },
    /// Issued: a child context's body returned its output. Replay returns it without running
    /// the body again.
    ContextCompleted {
        /// The operation.
        op: OpId,
        /// The output.
        output: Payload,
    },
    /// Issued: a child context's body failed.
    ContextFailed {
        /// The operation.
        op: OpId,
        /// Why.
        failure: Box<Failure>,
    },
    /// Issued: the workflow returned its output.
    WorkflowCompleted {
        /// The output.
        output: Payload,
    },
    /// Issued: the workflow failed.
    WorkflowFailed {
        /// Why.
        failure: Box<Failure>,
    },
    /// Issued: the workflow continued as a new execution with this input.
    ContinuedAsNew {
        /// The next execution's input.
        input: Payload,
    },
}

impl EventKind {
    /// The primitive whose operation this issued event starts (`None` for delivered events and
    /// for the events that end an execution).
    pub fn issues(&self) -> Option<Primitive> {
        Some(match self {
            EventKind::ActivityScheduled { .. } => Primitive::Activity,
            EventKind::TimerCreated { .. } => Primitive::Timer,
            EventKind::StepStarted { .. } => Primitive::Step,
            EventKind::EventWaitStarted { .. } => Primitive::EventWait,
            EventKind::ChildStarted { .. } => Primitive::Child,
            EventKind::ContextStarted { .. } => Primitive::Context,
            EventKind::CallbackCreated { .. } => Primitive::Callback,
            EventKind::QueueEventEmitStarted { .. } => Primitive::QueueEventEmit,
            EventKind::QueueEventAwaitStarted { .. } => Primitive::QueueEventAwait,
            _ => return None,
        })
    }

    /// The primitive whose operation (named by [`EventKind::op`]) this delivered event
    /// completes, or `None` for an event that completes no particular operation.
    pub fn completes(&self) -> Option<Primitive> {
        Some(match self {
            EventKind::ActivityCompleted { .. } | EventKind::ActivityFailed { .. } => {
                Primitive::Activity
            }
            EventKind::TimerFired { .. } => Primitive::Timer,
            EventKind::StepCompleted { .. }
            | EventKind::StepFailed { .. }
            | EventKind::StepRetrying { .. } => Primitive::Step,
            EventKind::ChildCompleted { .. } | EventKind::ChildFailed { .. } => Primitive::Child,
            EventKind::CallbackCompleted { .. }
            | EventKind::CallbackFailed { .. }
            | EventKind::CallbackHeartbeat { .. } => Primitive::Callback,
            EventKind::QueueEventEmitCompleted { .. } => Primitive::QueueEventEmit,
            EventKind::QueueEventReceived { .. } => Primitive::QueueEventAwait,
            _ => return None,
        })
    }

    /// The primitive of the operation the event belongs to (issued, delivered, or ending it),
    /// or `None` for an event of no operation.
    pub fn primitive(&self) -> Option<Primitive> {
        self.issues().or_else(|| self.completes()).or(match self {
            EventKind::ChildCancelled { .. } => Some(Primitive::Child),
            EventKind::ContextCompleted { .. } | EventKind::ContextFailed { .. } => {
                Some(Primitive::Context)
            }
            _ => None,
        })
    }

    /// Whether the event records something the workflow code asked for (as opposed to something
    /// delivered to it).
    pub fn is_issued(&self) -> bool {
        matches!(
            self,
            EventKind::ActivityScheduled { .. }
                | EventKind::TimerCreated { .. }
                | EventKind::StepStarted { .. }
                | EventKind::EventWaitStarted { .. }
                | EventKind::ChildStarted { .. }
                | EventKind::ChildCancelled { .. }
                | EventKind::CallbackCreated { .. }
                | EventKind::QueueEventEmitStarted { .. }
                | EventKind::QueueEventAwaitStarted { .. }
                | EventKind::ContextStarted { .. }
                | EventKind::ContextCompleted { .. }
                | EventKind::ContextFailed { .. }
                | EventKind::WorkflowCompleted { .. }
                | EventKind::WorkflowFailed { .. }
                | EventKind::ContinuedAsNew { .. }
        )
    }

    /// Whether the event ends the execution.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::WorkflowCompleted { .. }
                | EventKind::WorkflowFailed { .. }
                | EventKind::ContinuedAsNew { .. }
                | EventKind::CancelRequested { .. }
                | EventKind::TerminateRequested { .. }
        )
    }

    /// The operation the event belongs to, if any.
    pub fn op(&self) -> Option<&OpId> {
        match self {
            EventKind::ActivityScheduled { op, .. }
            | EventKind::ActivityCompleted { op, .. }
            | EventKind::ActivityFailed { op, .. }
            | EventKind::TimerCreated { op, .. }
            | EventKind::TimerFired { op }
            | EventKind::StepStarted { op, .. }
            | EventKind::StepCompleted { op, .. }
            | EventKind::StepFailed { op, .. }
            | EventKind::StepRetrying { op, .. }
            | EventKind::EventWaitStarted { op, .. }
            | EventKind::ChildStarted { op, .. }
            | EventKind::ChildCompleted { op, .. }
            | EventKind::ChildFailed { op, .. }
            | EventKind::ChildCancelled { op, .. }
            | EventKind::CallbackCreated { op, .. }
            | EventKind::CallbackCompleted { op, .. }
            | EventKind::CallbackFailed { op, .. }
            | EventKind::CallbackHeartbeat { op, .. }
            | EventKind::QueueEventEmitStarted { op, .. }
            | EventKind::QueueEventEmitCompleted { op, .. }
            | EventKind::QueueEventAwaitStarted { op, .. }
            | EventKind::QueueEventReceived { op, .. }
            | EventKind::ContextStarted { op, .. }
            | EventKind::ContextCompleted { op, .. }
            | EventKind::ContextFailed { op, .. } => Some(op),
            _ => None,
        }
    }

    /// The event's type name as written in the journal (`activity_scheduled`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::WorkflowStarted { .. } => "workflow_started",
            EventKind::ActivityScheduled { .. } => "activity_scheduled",
            EventKind::ActivityCompleted { .. } => "activity_completed",
            EventKind::ActivityFailed { .. } => "activity_failed",
            EventKind::TimerCreated { .. } => "timer_created",
            EventKind::TimerFired { .. } => "timer_fired",
            EventKind::StepStarted { .. } => "step_started",
            EventKind::StepCompleted { .. } => "step_completed",
            EventKind::StepFailed { .. } => "step_failed",
            EventKind::StepRetrying { .. } => "step_retrying",
            EventKind::EventWaitStarted { .. } => "event_wait_started",
            EventKind::EventRaised { .. } => "event_raised",
            EventKind::ChildStarted { .. } => "child_started",
            EventKind::ChildCompleted { .. } => "child_completed",
            EventKind::ChildFailed { .. } => "child_failed",
            EventKind::ChildCancelled { .. } => "child_cancelled",
            EventKind::CallbackCreated { .. } => "callback_created",
            EventKind::CallbackCompleted { .. } => "callback_completed",
            EventKind::CallbackFailed { .. } => "callback_failed",
            EventKind::CallbackHeartbeat { .. } => "callback_heartbeat",
            EventKind::QueueEventEmitStarted { .. } => "queue_event_emit_started",
            EventKind::QueueEventEmitCompleted { .. } => "queue_event_emit_completed",
            EventKind::QueueEventAwaitStarted { .. } => "queue_event_await_started",
            EventKind::QueueEventReceived { .. } => "queue_event_received",
            EventKind::ContextStarted { .. } => "context_started",
            EventKind::ContextCompleted { .. } => "context_completed",
            EventKind::ContextFailed { .. } => "context_failed",
            EventKind::CancelRequested { .. } => "cancel_requested",
            EventKind::TerminateRequested { .. } => "terminate_requested",
            EventKind::WorkflowCompleted { .. } => "workflow_completed",
            EventKind::WorkflowFailed { .. } => "workflow_failed",
            EventKind::ContinuedAsNew { .. } => "continued_as_new",
        }
    }

    /// The name the event carries (activity, step, event or child workflow name), if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            EventKind::WorkflowStarted { name, .. }
            | EventKind::ActivityScheduled { name, .. }
            | EventKind::StepStarted { name, .. }
            | EventKind::EventWaitStarted { name, .. }
            | EventKind::EventRaised { name, .. }
            | EventKind::ChildStarted { name, .. }
            | EventKind::ContextStarted { name, .. }
            | EventKind::CallbackCreated { name, .. }
            | EventKind::QueueEventEmitStarted { name, .. }
            | EventKind::QueueEventAwaitStarted { name, .. } => Some(name),
            _ => None,
        }
    }

    /// A short description for error messages, such as `activity_scheduled "charge" (op 2)`.
    pub fn describe(&self) -> String {
        let mut s = self.type_name().to_owned();
        if let Some(name) = self.name() {
            s.push_str(&format!(" {name:?}"));
        }
        if let Some(op) = self.op() {
            s.push_str(&format!(" (op {op})"));
        }
        s
    }
}

fn first_attempt() -> u32 {
    1
}

fn is_first_attempt(attempt: &u32) -> bool {
    *attempt == 1
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A stored journal event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// The event was written by a newer journal format than this build understands.
    #[error(
        "journal event written in format version {found}, but this build reads up to version \
         {supported}: upgrade duraflow to read it"
    )]
    NewerFormat {
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The event's bytes are not a valid event.
    #[error("corrupt journal event: {0}")]
    Corrupt(String),
}

impl Event {
    /// Encodes the event as JSON for storage (with [`JOURNAL_FORMAT_VERSION`] kept beside it).
    pub fn encode(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("event encodes: {e}"))
    }

    /// Decodes a stored event written in `format_version`.
    pub fn decode(json: &str, format_version: u32) -> Result<Event, EventDecodeError> {
        check_format(format_version)?;
        serde_json::from_str(json).map_err(|e| EventDecodeError::Corrupt(e.to_string()))
    }

    /// Encodes the event in the journal's binary encoding, which a cold turn decodes several
    /// times faster than JSON: the common events field by field, the rest as JSON inside (see
    /// the `binary` module). Stored with [`JOURNAL_FORMAT_VERSION`] beside it.
    pub fn encode_binary(&self) -> Vec<u8> {
        binary::encode(self)
    }

    /// Encodes events stored together in one row (a commit's events of one execution) in the
    /// binary encoding, each behind its length; [`Event::decode_binary_run`] reads them back.
    pub fn encode_binary_run(events: &[Event]) -> Vec<u8> {
        binary::encode_run(events)
    }

    /// Decodes `count` events encoded by [`Event::encode_binary_run`] and written in
    /// `format_version`, appending them to `out`. On failure, the index in the run of the
    /// event that does not decode, and why; the events before it are appended.
    pub fn decode_binary_run(
        bytes: &[u8],
        count: usize,
        format_version: u32,
        out: &mut Vec<Event>,
    ) -> Result<(), (usize, EventDecodeError)> {
        check_format(format_version).map_err(|e| (0, e))?;
        if format_version < BINARY_FORMAT_VERSION {
            return Err((0, binary_too_old(format_version)));
        }
        binary::decode_run(bytes, count, out)
    }

    /// Decodes a stored event written in `format_version`, as JSON text or in the binary
    /// encoding. A binary event claiming a format from before [`BINARY_FORMAT_VERSION`] is
    /// corrupt.
    pub fn decode_stored(
        data: EventData<'_>,
        format_version: u32,
    ) -> Result<Event, EventDecodeError> {
        match data {
            EventData::Json(json) => Event::decode(json, format_version),
            EventData::Binary(bytes) => {
                check_format(format_version)?;
                if format_version < BINARY_FORMAT_VERSION {
                    return Err(binary_too_old(format_version));
                }
                binary::decode(bytes)
            }
        }
    }
}

/// A binary event that claims a format from before the binary encoding.
fn binary_too_old(format_version: u32) -> EventDecodeError {
    EventDecodeError::Corrupt(format!(
        "a binary event with format version {format_version}, from before the binary encoding \
         (version {BINARY_FORMAT_VERSION})"
    ))
}

/// Refuses an event written by a newer journal format than this build reads.
fn check_format(format_version: u32) -> Result<(), EventDecodeError> {
    if format_version > JOURNAL_FORMAT_VERSION {
        return Err(EventDecodeError::NewerFormat {
            found: format_version,
            supported: JOURNAL_FORMAT_VERSION,
        });
    }
    Ok(())
}

mod binary;

#[cfg(test)]
mod tests;
