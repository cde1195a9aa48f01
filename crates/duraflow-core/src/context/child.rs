//! Starting child workflows.

use std::future::IntoFuture;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use super::op::{OpFuture, OpKind};
use super::WorkflowContext;
use crate::error::WorkflowError;
use crate::event::EventKind;
use crate::op_id::OpId;
use crate::payload::{Payload, PayloadError};

/// A child workflow to start and wait for; `.await` it for the child's output.
#[must_use = "the child starts only when awaited"]
pub struct ChildCall<O> {
    pub(super) ctx: WorkflowContext,
    pub(super) name: String,
    input: Result<Payload, PayloadError>,
    id: Option<String>,
    queue: Option<String>,
    _output: PhantomData<fn() -> O>,
}

impl<O> ChildCall<O> {
    pub(super) fn new(
        ctx: WorkflowContext,
        name: &str,
        input: Result<Payload, PayloadError>,
    ) -> Self {
        ChildCall {
            ctx,
            name: name.to_owned(),
            input,
            id: None,
            queue: None,
            _output: PhantomData,
        }
    }

    /// Gives the child this instance id instead of one derived from the parent's id. It must not
    /// be in use.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Starts the child in `queue` instead of its parent's queue, to be run by an engine that
    /// serves that queue and has registered the child's workflow.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
}

/// A detached child workflow to start; `.await` it for the child's instance id.
#[must_use = "the child starts only when awaited"]
pub struct StartChild {
    inner: ChildCall<String>,
}

impl StartChild {
    pub(super) fn new(
        ctx: WorkflowContext,
        name: &str,
        input: Result<Payload, PayloadError>,
    ) -> Self {
        StartChild {
            inner: ChildCall::new(ctx, name, input),
        }
    }

    /// Gives the child this instance id. It must not be in use.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.inner.id = Some(id.into());
        self
    }

    /// Starts the child in `queue` instead of its parent's queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.inner.queue = Some(queue.into());
        self
    }
}

/// The default id of a child: the parent's id, the execution when it is not the first, and the
/// operation id, so it is unique and the same on every replay.
fn default_child_id(ctx: &WorkflowContext, op: &OpId) -> String {
    let (parent, execution) = {
        let s = crate::replay::state::lock(&ctx.state);
        (s.instance_id.clone(), s.execution)
    };
    if execution <= 1 {
        format!("{parent}:child:{op}")
    } else {
        format!("{parent}:{execution}:child:{op}")
    }
}

/// The future of a child, with the child's instance id.
pub(super) fn child_future_with_id<O>(call: ChildCall<O>, detached: bool) -> (OpFuture<O>, String) {
    let op = call.ctx.next_op();
    let instance_id = call.id.unwrap_or_else(|| default_child_id(&call.ctx, &op));
    let child_id = instance_id.clone();
    let label = format!("child workflow {:?} ({instance_id})", call.name);
    let issue = call
        .input
        .map(|input| EventKind::ChildStarted {
            op: op.clone(),
            name: call.name.clone(),
            instance_id,
            input,
            detached,
            queue: call.queue,
        })
        .map_err(|e| WorkflowError::Payload(format!("cannot encode the input of {label}: {e}")));
    let kind = if detached {
        OpKind::DetachedChild
    } else {
        OpKind::Child
    };
    (
        OpFuture::new(call.ctx.state.clone(), op, kind, label, issue),
        child_id,
    )
}

fn child_future<O>(call: ChildCall<O>, detached: bool) -> OpFuture<O> {
    child_future_with_id(call, detached).0
}

impl<O: DeserializeOwned> IntoFuture for ChildCall<O> {
    type Output = Result<O, WorkflowError>;
    type IntoFuture = OpFuture<O>;

    fn into_future(self) -> OpFuture<O> {
        child_future(self, false)
    }
}

impl IntoFuture for StartChild {
    type Output = Result<String, WorkflowError>;
    type IntoFuture = OpFuture<String>;

    fn into_future(self) -> OpFuture<String> {
        child_future(self.inner, true)
    }
}
