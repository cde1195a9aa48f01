//! Inline steps: work run in the workflow's own process, with the result journaled.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::op::take_completion;
use super::WorkflowContext;
use crate::error::{ActivityError, WorkflowError};
use crate::event::EventKind;
use crate::failure::{Failure, FailureKind};
use crate::op_id::OpId;
use crate::payload::Payload;
use crate::replay::panic_message;
use crate::replay::state::{lock, Completion, Shared, Slot};

type StepFn<'a, Fut> = Box<dyn FnOnce() -> Fut + Send + 'a>;

/// The future of an inline step (see [`WorkflowContext::step`]).
#[must_use = "a step runs only when awaited"]
pub struct StepFuture<'a, T, Fut> {
    state: Shared,
    op: OpId,
    name: String,
    issued: bool,
    f: Option<StepFn<'a, Fut>>,
    running: Option<Pin<Box<Fut>>>,
    finished: bool,
    _output: PhantomData<fn() -> T>,
}

impl<'a, T, Fut> StepFuture<'a, T, Fut> {
    pub(super) fn new<F>(ctx: WorkflowContext, name: &str, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'a,
    {
        let op = ctx.next_op();
        StepFuture {
            state: ctx.state,
            op,
            name: name.to_owned(),
            issued: false,
            f: Some(Box::new(f)),
            running: None,
            finished: false,
            _output: PhantomData,
        }
    }
}

/// How a step's own error is recorded.
pub(crate) fn step_failure(name: &str, op: &OpId, e: &ActivityError) -> Failure {
    let kind = match e {
        ActivityError::Cancelled => FailureKind::Cancelled,
        _ => FailureKind::Application,
    };
    Failure::new(kind, e.message())
        .with_code(e.code().map(str::to_owned))
        .at(format!("step {name:?}"), op)
}

impl<T, Fut> Future for StepFuture<'_, T, Fut>
where
    T: Serialize + DeserializeOwned,
    Fut: Future<Output = Result<T, ActivityError>>,
{
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Pending;
        }
        let mut start_panic = None;
        {
            let mut s = lock(&this.state);
            if s.nondeterminism.is_some() || s.continue_as_new.is_some() {
                return Poll::Pending;
            }
            if !this.issued {
                let ev = EventKind::StepStarted {
                    op: this.op.clone(),
                    name: this.name.clone(),
                };
                if !s.issue(ev) {
                    return Poll::Pending;
                }
                s.ops.insert(this.op.clone(), Slot::Waiting(None));
                this.issued = true;
            }
            if let Some(c) = take_completion(&mut s, &this.op, cx) {
                drop(s);
                return Poll::Ready(this.finish(c));
            }
            if this.running.is_none() {
                // Replay waits for the recorded result; only a live run executes the step.
                if !s.live || s.is_replaying() {
                    return Poll::Pending;
                }
                let Some(f) = this.f.take() else {
                    return Poll::Pending;
                };
                s.steps_running += 1;
                drop(s);
                // A panic in the step's own code is the step's failure (as for an activity): it
                // is journaled like any result, so replay, which never runs the step, agrees.
                match catch_unwind(AssertUnwindSafe(f)) {
                    Ok(fut) => this.running = Some(Box::pin(fut)),
                    Err(panic) => start_panic = Some(panic),
                }
            }
        }
        let result = match start_panic {
            Some(panic) => Err(panic),
            None => {
                let Some(running) = this.running.as_mut() else {
                    return Poll::Pending;
                };
                match catch_unwind(AssertUnwindSafe(|| running.as_mut().poll(cx))) {
                    Ok(Poll::Ready(r)) => Ok(r),
                    Ok(Poll::Pending) => return Poll::Pending,
                    Err(panic) => Err(panic),
                }
            }
        };
        this.running = None;
        let kind = match result.map(|r| r.map(|v| Payload::encode(&v))) {
            Err(panic) => EventKind::StepFailed {
                op: this.op.clone(),
                failure: Failure::new(
                    FailureKind::Panic,
                    format!("step {:?} panicked: {}", this.name, panic_message(&*panic)),
                )
                .at(format!("step {:?}", this.name), &this.op),
            },
            Ok(Ok(Ok(output))) => EventKind::StepCompleted {
                op: this.op.clone(),
                output,
            },
            Ok(Ok(Err(e))) => EventKind::StepFailed {
                op: this.op.clone(),
                failure: Failure::new(
                    FailureKind::Payload,
                    format!("cannot encode the output of step {:?}: {e}", this.name),
                )
                .at(format!("step {:?}", this.name), &this.op),
            },
            Ok(Err(e)) => EventKind::StepFailed {
                op: this.op.clone(),
                failure: step_failure(&this.name, &this.op, &e),
            },
        };
        // The result is not handed over at once: the run journals it and delivers it once the
        // workflow waits, as replay does with the recorded result. Handing it over here would let
        // the code see it earlier than on replay (before operations issued later in this poll).
        let mut s = lock(&this.state);
        s.steps_running = s.steps_running.saturating_sub(1);
        s.finished_steps.push_back(kind);
        Poll::Pending
    }
}

impl<T: DeserializeOwned, Fut> StepFuture<'_, T, Fut> {
    fn finish(&mut self, c: Completion) -> Result<T, WorkflowError> {
        self.finished = true;
        match c {
            Completion::Ok(p) => p.decode::<T>().map_err(|e| {
                WorkflowError::Payload(format!(
                    "step {:?} (op {}) produced a value the workflow cannot decode: {e}",
                    self.name, self.op
                ))
            }),
            Completion::Err(f) => Err(WorkflowError::Step(f)),
            Completion::Fired | Completion::Started(_) => Err(WorkflowError::Payload(format!(
                "step {:?} (op {}) received a completion of another kind",
                self.name, self.op
            ))),
        }
    }
}

impl<T, Fut> Drop for StepFuture<'_, T, Fut> {
    fn drop(&mut self) {
        if self.finished || !self.issued {
            return;
        }
        // Drop the user's future before taking the lock: its own drop may use the context.
        let was_running = self.running.take().is_some();
        let mut s = lock(&self.state);
        if was_running {
            s.steps_running = s.steps_running.saturating_sub(1);
        }
        s.abandon(&self.op);
    }
}
