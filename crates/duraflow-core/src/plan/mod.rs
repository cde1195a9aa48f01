//! Turn planning: what a turn delivers to the workflow, and what it must write besides the
//! journal. Pure functions with no I/O, so that the runtime only fetches, runs and commits.
//!
//! A turn uses the planner twice:
//!
//! 1. before it runs the workflow, [`deliveries`] turns the messages it took into the events
//!    to deliver, in order;
//! 2. after, a [`TurnPlan`] is built from what the run did: [`TurnPlan::schedule`] turns the new
//!    issued events into tasks, timer messages and child instances, and [`TurnPlan::end`]
//!    records how the execution ended (status, the result for a parent, cancellations of open
//!    children, the next execution's start).
//!
//! The one thing a plan needs from the store, whether a child's instance id is already used by
//! another instance, is an input ([`ExistingInstance`]); [`started_children`] names the ids to
//! look up.

mod cancellation;
mod deliveries;
mod effects;
mod outcome;
mod retry;
mod unknown;

pub use cancellation::pending_too_long;
pub use deliveries::{deliveries, Deliveries};
pub use effects::{started_children, ExistingInstance};
pub use retry::{workflow_retry, AttemptRecord, WorkflowRetry};
pub use unknown::unknown_workflow;

use crate::{
    Failure, InstanceOptions, NewAwait, NewCallback, NewEmit, NewInstance, NewMessage, NewTask,
    OpId, ParentLink, Payload, Timestamp,
};

/// The instance a turn runs, as the planner needs it.
#[derive(Clone, Copy, Debug)]
pub struct TurnInstance<'a> {
    /// The instance id.
    pub id: &'a str,
    /// The current execution.
    pub execution: u32,
    /// The workflow's registered name.
    pub name: &'a str,
    /// The current execution's input.
    pub input: &'a Payload,
    /// The parent, for an attached child.
    pub parent: Option<&'a ParentLink>,
    /// The instance's queue, which its children inherit.
    pub queue: &'a str,
    /// What its start set besides the input.
    pub options: &'a InstanceOptions,
}

/// What a turn writes besides its journal events: the side effects of what the workflow did
/// and how its execution ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TurnPlan {
    /// Activity tasks to create, one per `activity_scheduled`, in journal order.
    pub tasks: Vec<NewTask>,
    /// Messages to send, in this order: timer firings to the instance itself and refusals of
    /// child ids already in use (in journal order), then the result for the parent, the
    /// cancellations or terminations of open children, or the next execution's start.
    pub messages: Vec<NewMessage>,
    /// Child instances to create, one per `child_started` whose id is free.
    pub instances: Vec<NewInstance>,
    /// Callbacks to open (register their tokens), one per `callback_created`.
    pub callbacks: Vec<NewCallback>,
    /// Callbacks that timed out in this turn: their tokens are refused from now on.
    pub timed_out_callbacks: Vec<OpId>,
    /// Queue-wide events to emit, one per `queue_event_emit_started`, in journal order.
    pub emits: Vec<NewEmit>,
    /// Awaits of queue-wide events to register, one per `queue_event_await_started`.
    pub awaits: Vec<NewAwait>,
    /// How the execution stands after the turn.
    pub end: TurnEnd,
}

/// How the execution stands after a turn.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum TurnEnd {
    /// It goes on.
    #[default]
    Running,
    /// It continued as new: the next execution starts with this input.
    ContinuedAsNew(Payload),
    /// The attempt failed and the workflow is retried: the next execution, attempt `attempt`,
    /// starts with the same `input` at `start_at`.
    Retrying {
        /// The input, unchanged.
        input: Payload,
        /// The next attempt.
        attempt: u32,
        /// When it starts.
        start_at: Timestamp,
    },
    /// The instance completed with this output.
    Completed(Payload),
    /// The instance failed.
    Failed(Failure),
    /// The instance was cancelled (the failure says why, kind `cancelled`).
    Cancelled(Failure),
    /// The instance was terminated (the failure says why, kind `terminated`).
    Terminated(Failure),
}

impl TurnEnd {
    /// Whether the instance has finished for good with this turn.
    pub fn is_finished(&self) -> bool {
        !matches!(
            self,
            TurnEnd::Running | TurnEnd::ContinuedAsNew(_) | TurnEnd::Retrying { .. }
        )
    }
}

impl TurnPlan {
    /// An empty plan: nothing to write, the execution goes on.
    pub fn new() -> Self {
        TurnPlan::default()
    }
}
