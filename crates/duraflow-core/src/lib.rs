//! The sans-IO core of duraflow.
//!
//! This crate holds everything about durable execution that needs no runtime and no database:
//!
//! - the journal model ([`Event`], [`EventKind`]) and deterministic operation ids ([`OpId`]);
//! - the replay machine ([`WorkflowRun`]): a journal and newly delivered events go in, issued
//!   events (the journal delta) and an [`Outcome`] come out; a mismatch between code and journal
//!   is a [`Nondeterminism`] failure naming the position, the recorded event and the request;
//! - the API workflow code is written against ([`WorkflowContext`]) and its durable futures;
//! - turn planning ([`plan`]): the messages a turn takes become the events it delivers, and
//!   what the run did becomes the tasks, messages and instances the turn writes
//!   ([`TurnPlan`]); inbox messages ([`MessageKind`]) and new work ([`NewTask`],
//!   [`NewInstance`], [`NewEmit`], [`NewAwait`]) are core types, which the store keeps as
//!   they are;
//! - errors ([`WorkflowError`], [`ActivityError`], [`Failure`]) and [`RetryPolicy`];
//! - time as a value ([`Timestamp`]) and as an injected source ([`Clock`]).
//!
//! Nothing here touches a socket, a clock or a file; the `duraflow-runtime` crate drives it.

mod activity;
mod attempt;
pub mod batch;
pub mod context;
mod error;
mod event;
mod failure;
mod feed;
mod instance_options;
mod message;
mod new_work;
mod op_id;
mod payload;
pub mod plan;
pub mod primitive;
mod queue_event;
pub mod replay;
mod retry;
mod time;
mod workflow;

pub use activity::ActivitySignature;
pub use attempt::{attempt_record, recorded_ops, AttemptStart, RecordedOp};
pub use batch::{BatchResult, BatchTracker, CompletionConfig, CompletionReason, ItemBatcher};
pub use context::{StepContext, StepSemantics, WorkflowContext};
pub use error::{ActivityError, Mismatch, Nondeterminism, WorkflowError};
pub use event::{
    ActivityOptions, Event, EventData, EventDecodeError, EventKind, ParentLink,
    BINARY_FORMAT_VERSION, DEFAULT_QUEUE, JOURNAL_FORMAT_VERSION,
};
pub use failure::{Failure, FailureKind};
pub use feed::FeedRecord;
pub use instance_options::{CancellationPolicy, InstanceOptions};
pub use message::{MessageKind, NewMessage, OpResult};
pub use new_work::{NewCallback, NewInstance, NewTask};
pub use op_id::{OpId, OpIdParseError};
pub use payload::{Payload, PayloadError};
pub use plan::{TurnEnd, TurnPlan};
pub use primitive::Primitive;
pub use queue_event::{
    check_queue_event_name, EmitOutcome, NewAwait, NewEmit, StoredEvent, MAX_QUEUE_EVENT_NAME_LEN,
};
pub use replay::{check_replay, panic_message, Outcome, ReplayReport, WorkflowRun};
pub use retry::RetryPolicy;
pub use time::{duration_millis, duration_millis_ceil, serde_millis, Clock, Sleep, Timestamp};
pub use workflow::{typed_workflow_fn, workflow_fn, Workflow, WorkflowFn};
