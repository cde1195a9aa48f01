//! Scheduling an activity.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::op::{OpFuture, OpKind};
use super::WorkflowContext;
use crate::error::WorkflowError;
use crate::event::{ActivityOptions, EventKind};
use crate::payload::{Payload, PayloadError};
use crate::retry::RetryPolicy;

/// An activity about to be scheduled; set its options, then `.await` it for the output.
#[must_use = "an activity is scheduled only when awaited"]
pub struct ActivityCall<O> {
    ctx: WorkflowContext,
    name: String,
    input: Result<Payload, PayloadError>,
    options: ActivityOptions,
    _output: PhantomData<fn() -> O>,
}

impl<O> ActivityCall<O> {
    pub(super) fn new(
        ctx: WorkflowContext,
        name: &str,
        input: Result<Payload, PayloadError>,
    ) -> Self {
        ActivityCall {
            ctx,
            name: name.to_owned(),
            input,
            options: ActivityOptions::default(),
            _output: PhantomData,
        }
    }

    /// Sets how failed attempts are retried (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self
    }

    /// Fails an attempt that runs longer than `timeout`; the retry policy decides what follows.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.options.attempt_timeout = Some(timeout);
        self
    }

    /// Fails the activity for good if it has no result `timeout` after it was scheduled,
    /// retries included.
    pub fn schedule_to_close(mut self, timeout: Duration) -> Self {
        self.options.schedule_to_close = Some(timeout);
        self
    }

    /// Fails an attempt that goes `timeout` without a heartbeat (the activity calls
    /// `ActivityContext::heartbeat`; the attempt's start counts as one), with kind
    /// [`FailureKind::HeartbeatTimedOut`](crate::FailureKind::HeartbeatTimedOut) and code
    /// `heartbeat_timed_out`; the retry policy decides what follows. The worker also keeps the
    /// attempt's lease no longer than `timeout`, so that when its process dies another worker
    /// takes the task over soon after the heartbeats stopped.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.options.heartbeat_timeout = Some(timeout);
        self
    }

    /// Sends the activity's task to `queue` (default: [`crate::DEFAULT_QUEUE`]), to be run by an
    /// engine that serves that queue and has registered the activity.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        let queue = queue.into();
        // The default queue is recorded as no queue, so journals stay as they were.
        self.options.queue = (queue != crate::DEFAULT_QUEUE).then_some(queue);
        self
    }
}

impl<O: DeserializeOwned> IntoFuture for ActivityCall<O> {
    type Output = Result<O, WorkflowError>;
    type IntoFuture = OpFuture<O>;

    fn into_future(self) -> OpFuture<O> {
        let op = self.ctx.next_op();
        let label = format!("activity {:?}", self.name);
        let issue = self
            .input
            .map(|input| EventKind::ActivityScheduled {
                op: op.clone(),
                name: self.name.clone(),
                input,
                options: Box::new(self.options),
            })
            .map_err(|e| {
                WorkflowError::Payload(format!("cannot encode the input of {label}: {e}"))
            });
        OpFuture::new(self.ctx.state.clone(), op, OpKind::Activity, label, issue)
    }
}
