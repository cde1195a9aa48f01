//! The future behind every durable operation that waits for a completion.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;

use crate::error::WorkflowError;
use crate::event::EventKind;
use crate::op_id::OpId;
use crate::payload::Payload;
use crate::replay::state::{lock, Completion, Shared, Slot, State};

/// What an operation is, for registering it and for reporting its failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Activity,
    Timer,
    Event,
    Child,
    DetachedChild,
    /// An emit of a queue-wide event.
    QueueEmit,
    /// An await of a queue-wide event: a fired timer of its operation is its timeout.
    QueueAwait,
}

/// A durable operation the workflow awaits: it records (or, on replay, matches) its issued event
/// on first poll, then waits for its completion to be delivered.
///
/// Dropping it before it completes abandons the operation: a completion that arrives later is
/// ignored.
#[must_use = "a durable operation does nothing unless awaited"]
pub struct OpFuture<T> {
    state: Shared,
    op: OpId,
    kind: OpKind,
    label: String,
    issue: Option<EventKind>,
    error: Option<WorkflowError>,
    finished: bool,
    _output: PhantomData<fn() -> T>,
}

impl<T> OpFuture<T> {
    pub(crate) fn new(
        state: Shared,
        op: OpId,
        kind: OpKind,
        label: String,
        issue: Result<EventKind, WorkflowError>,
    ) -> Self {
        let (issue, error) = match issue {
            Ok(ev) => (Some(ev), None),
            Err(e) => (None, Some(e)),
        };
        OpFuture {
            state,
            op,
            kind,
            label,
            issue,
            error,
            finished: false,
            _output: PhantomData,
        }
    }

    /// The operation's id.
    pub fn op_id(&self) -> &OpId {
        &self.op
    }
}

/// Registers an issued operation so that its completion finds it.
pub(crate) fn register(state: &mut State, kind: OpKind, op: &OpId, event: &EventKind) {
    match (kind, event) {
        (OpKind::Event, EventKind::EventWaitStarted { name, .. }) => {
            state.wait_for_event(op.clone(), name)
        }
        (OpKind::DetachedChild, EventKind::ChildStarted { instance_id, .. }) => {
            state.advance(op, "detached");
            state
                .ops
                .set_slot(op, Slot::Done(Completion::Started(instance_id.clone())));
        }
        (OpKind::Child, EventKind::ChildStarted { instance_id, .. }) => {
            state.open_children.insert(op.clone(), instance_id.clone());
            state.ops.set_slot(op, Slot::Waiting(None));
        }
        _ => {
            state.ops.set_slot(op, Slot::Waiting(None));
        }
    }
}

/// Takes the completion of `op` if it has one, or leaves the waker to be woken when it does.
pub(crate) fn take_completion(
    state: &mut State,
    op: &OpId,
    cx: &Context<'_>,
) -> Option<Completion> {
    let mut taken = None;
    state.ops.update(op, None, |slot| match slot {
        Some(Slot::Done(_)) => {
            if let Some(Slot::Done(c)) = slot.take() {
                taken = Some(c);
            }
        }
        Some(Slot::Waiting(waker)) => match waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        },
        Some(Slot::Abandoned) | None => {}
    });
    taken
}

/// Turns a completion into the typed result the workflow sees.
pub(crate) fn decode_completion<T: DeserializeOwned>(
    kind: OpKind,
    label: &str,
    op: &OpId,
    completion: Completion,
) -> Result<T, WorkflowError> {
    let payload = match completion {
        Completion::Ok(p) => p,
        Completion::Fired if kind == OpKind::QueueAwait => {
            return Err(WorkflowError::Timeout(format!(
                "{label} (op {op}) was not emitted before the await's timeout"
            )))
        }
        Completion::Fired => Payload::null(),
        Completion::Started(id) => Payload::encode(&id).map_err(|e| WorkflowError::Payload(e.0))?,
        Completion::Retrying => {
            return Err(WorkflowError::Payload(format!(
                "{label} (op {op}) received a step's retry, which only a step takes"
            )))
        }
        Completion::Err(failure) => {
            return Err(match kind {
                OpKind::Activity => WorkflowError::Activity(failure),
                OpKind::Child | OpKind::DetachedChild => WorkflowError::Child(failure),
                OpKind::Timer | OpKind::Event | OpKind::QueueEmit | OpKind::QueueAwait => {
                    WorkflowError::Application {
                        message: failure.message,
                        code: failure.code,
                    }
                }
            })
        }
    };
    payload.decode::<T>().map_err(|e| {
        WorkflowError::Payload(format!(
            "{label} (op {op}) produced a value the workflow cannot decode: {e}"
        ))
    })
}

impl<T: DeserializeOwned> Future for OpFuture<T> {
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Pending;
        }
        if let Some(e) = this.error.take() {
            this.finished = true;
            return Poll::Ready(Err(e));
        }
        let completion = {
            let mut s = lock(&this.state);
            if s.nondeterminism.is_some() || s.continue_as_new.is_some() {
                return Poll::Pending;
            }
            if let Some(ev) = this.issue.take() {
                if let Some(recorded) = s.take_recorded(&ev) {
                    drop(s);
                    this.finished = true;
                    return Poll::Ready(decode_completion(
                        this.kind,
                        &this.label,
                        &this.op,
                        recorded,
                    ));
                }
                if !s.issue(Cow::Borrowed(&ev)) {
                    return Poll::Pending;
                }
                register(&mut s, this.kind, &this.op, &ev);
            }
            match take_completion(&mut s, &this.op, cx) {
                Some(c) => c,
                None => return Poll::Pending,
            }
        };
        this.finished = true;
        Poll::Ready(decode_completion(
            this.kind,
            &this.label,
            &this.op,
            completion,
        ))
    }
}

impl<T> Drop for OpFuture<T> {
    fn drop(&mut self) {
        if !self.finished && self.issue.is_none() && self.error.is_none() {
            lock(&self.state).abandon(&self.op);
        }
    }
}
