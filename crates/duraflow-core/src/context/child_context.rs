//! Child contexts: a named scope whose result is journaled as one unit.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::WorkflowContext;
use crate::context::op::take_completion;
use crate::error::WorkflowError;
use crate::event::EventKind;
use crate::failure::Failure;
use crate::op_id::OpId;
use crate::payload::Payload;
use crate::primitive::context::REPLAYED_END;
use crate::replay::state::{lock, Completion, Slot};

/// The future of a child context (see [`WorkflowContext::run_in_child_context`]).
#[must_use = "a child context runs only when awaited"]
pub struct ChildContext<T, F, Fut> {
    parent: WorkflowContext,
    op: OpId,
    name: String,
    body: Option<F>,
    running: Option<Pin<Box<Fut>>>,
    issued: bool,
    finished: bool,
    /// The journal position of the context's end, once it has one.
    end_pos: Option<usize>,
    /// On replay, the recorded end of a context whose body is skipped, held until the replay
    /// cursor reaches that end.
    replayed_end: Option<Result<Payload, Failure>>,
    _output: PhantomData<fn() -> T>,
}

impl<T, F, Fut> ChildContext<T, F, Fut> {
    pub(super) fn new(parent: WorkflowContext, name: &str, body: F) -> Self {
        let op = parent.next_op();
        ChildContext {
            parent,
            op,
            name: name.to_owned(),
            body: Some(body),
            running: None,
            issued: false,
            finished: false,
            end_pos: None,
            replayed_end: None,
            _output: PhantomData,
        }
    }

    /// The context's operation id: the operations inside it get ids `<this>.0`, `<this>.1`...
    pub fn op_id(&self) -> &OpId {
        &self.op
    }

    /// The journal position of the context's end, once it has ended: the order in which
    /// contexts ended, the same live and on replay.
    pub(crate) fn end_position(&self) -> Option<usize> {
        self.end_pos
    }
}

impl<T, F, Fut> ChildContext<T, F, Fut>
where
    T: DeserializeOwned,
{
    fn decode(&self, end: Result<Payload, Failure>) -> Result<T, WorkflowError> {
        match end {
            Ok(output) => output.decode::<T>().map_err(|e| {
                WorkflowError::Payload(format!(
                    "child context {:?} (op {}) produced a value the workflow cannot decode: {e}",
                    self.name, self.op
                ))
            }),
            Err(failure) => Err(WorkflowError::Context(failure)),
        }
    }
}

impl<T, F, Fut> Future for ChildContext<T, F, Fut>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(WorkflowContext) -> Fut,
    Fut: Future<Output = Result<T, WorkflowError>>,
{
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Pending;
        }
        if !this.issued {
            let mut s = lock(&this.parent.state);
            if s.nondeterminism.is_some() || s.continue_as_new.is_some() {
                return Poll::Pending;
            }
            let replaying = s.is_replaying();
            let ev = EventKind::ContextStarted {
                op: this.op.clone(),
                name: this.name.clone(),
            };
            if !s.issue(Cow::Owned(ev)) {
                return Poll::Pending;
            }
            this.issued = true;
            if replaying {
                if let Some((pos, end)) = s.recorded_context_end(&this.op) {
                    this.end_pos = Some(pos);
                    // Completed before: its result is returned without running the body
                    // again, once replay has passed its end (the cursor passes over the
                    // body's events). Returning it before would let the code go on ahead of
                    // what was journaled between the context's start and its end (the
                    // operations of concurrent branches).
                    s.advance(&this.op, REPLAYED_END);
                    this.body = None;
                    s.skip_context(&this.op);
                    if s.pos > pos && s.replayed_ends_untaken == 0 {
                        drop(s);
                        this.finished = true;
                        return Poll::Ready(this.decode(end));
                    }
                    this.replayed_end = Some(end);
                    if s.pos > pos {
                        // Passed at once, but so were the ends of other contexts, which come
                        // first: they end in the next poll, and this one with them.
                        s.ops.set_slot(&this.op, Slot::Done(Completion::Fired));
                        s.replayed_ends_untaken += 1;
                        cx.waker().wake_by_ref();
                    } else {
                        s.ops
                            .set_slot(&this.op, Slot::Waiting(Some(cx.waker().clone())));
                    }
                    return Poll::Pending;
                }
            }
            drop(s);
            let child = WorkflowContext {
                state: this.parent.state.clone(),
                scope: Some(this.op.clone()),
                instance_id: this.parent.instance_id.clone(),
            };
            let Some(body) = this.body.take() else {
                return Poll::Pending;
            };
            this.running = Some(Box::pin(body(child)));
        }
        if this.replayed_end.is_some() {
            let mut s = lock(&this.parent.state);
            if take_completion(&mut s, &this.op, cx).is_none() {
                return Poll::Pending;
            }
            s.replayed_ends_untaken = s.replayed_ends_untaken.saturating_sub(1);
            drop(s);
            let Some(end) = this.replayed_end.take() else {
                return Poll::Pending;
            };
            this.finished = true;
            return Poll::Ready(this.decode(end));
        }
        let Some(running) = this.running.as_mut() else {
            return Poll::Pending;
        };
        let result = match running.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        // The body is over: drop what it still holds before journaling its end, as replay
        // (which skips it) has nothing of it either.
        this.running = None;
        let end = match result {
            Ok(value) => Payload::encode(&value).map_err(|e| {
                WorkflowError::Payload(format!(
                    "cannot encode the output of child context {:?}: {e}",
                    this.name
                ))
                .to_failure()
            }),
            Err(e) => Err(e.to_failure()),
        };
        let ev = match &end {
            Ok(output) => EventKind::ContextCompleted {
                op: this.op.clone(),
                output: output.clone(),
            },
            Err(failure) => EventKind::ContextFailed {
                op: this.op.clone(),
                failure: Box::new(failure.clone()),
            },
        };
        {
            let mut s = lock(&this.parent.state);
            if !s.issue(Cow::Owned(ev)) {
                return Poll::Pending;
            }
            this.end_pos = Some(s.pos - 1);
        }
        this.finished = true;
        Poll::Ready(this.decode(end))
    }
}

// The body closure is only ever moved out and called, never pinned, and the running body is
// boxed: nothing in a `ChildContext` relies on staying in place.
impl<T, F, Fut> Unpin for ChildContext<T, F, Fut> {}

impl<T, F, Fut> Drop for ChildContext<T, F, Fut> {
    fn drop(&mut self) {
        // Drop the body first: its operations take the state's lock as they are dropped.
        self.running = None;
        if self.issued && !self.finished {
            let mut s = lock(&self.parent.state);
            if self.replayed_end.is_some() && matches!(s.ops.slot(&self.op), Some(Slot::Done(_))) {
                // Its recorded end was passed but never taken.
                s.replayed_ends_untaken = s.replayed_ends_untaken.saturating_sub(1);
            }
            s.abandon(&self.op);
        }
    }
}
