//! The future of an inline step: issues each attempt's start, runs the closure when the run
//! is live, and turns its result into `step_completed`, `step_failed` or `step_retrying`.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{StepContext, StepSemantics};
use crate::context::op::take_completion;
use crate::context::WorkflowContext;
use crate::error::{ActivityError, WorkflowError};
use crate::event::EventKind;
use crate::failure::{Failure, FailureKind};
use crate::op_id::OpId;
use crate::payload::Payload;
use crate::replay::panic_message;
use crate::replay::state::{lock, Completion, FinishedStep, Shared, Slot, State};
use crate::retry::RetryPolicy;

/// The future of an inline step (see [`WorkflowContext::step`]). Set its durability with
/// [`StepFuture::semantics`] and its retries with [`StepFuture::retry`] before awaiting it.
#[must_use = "a step runs only when awaited"]
pub struct StepFuture<T, F, Fut> {
    ctx: WorkflowContext,
    op: OpId,
    /// The current attempt's `step_started` (which holds the step's name): replay compares it
    /// with the journal without building it again, and only a live run copies it.
    started: EventKind,
    f: F,
    semantics: StepSemantics,
    retry: RetryPolicy,
    /// The attempt under way (or next to start).
    attempt: u32,
    /// Whether the current attempt's `step_started` is journaled.
    issued: bool,
    /// The journal position of the current attempt's `step_started`.
    start_pos: usize,
    running: Option<Pin<Box<Fut>>>,
    /// Whether the current attempt's result has been handed to the run to journal.
    reported: bool,
    finished: bool,
    _output: PhantomData<fn() -> T>,
}

impl<T, F, Fut> StepFuture<T, F, Fut> {
    pub(crate) fn new(ctx: WorkflowContext, name: &str, f: F) -> Self {
        let op = ctx.next_op();
        StepFuture {
            ctx,
            started: EventKind::StepStarted {
                op: op.clone(),
                name: name.to_owned(),
                attempt: 1,
            },
            op,
            f,
            semantics: StepSemantics::default(),
            retry: RetryPolicy::none(),
            attempt: 1,
            issued: false,
            start_pos: 0,
            running: None,
            reported: false,
            finished: false,
            _output: PhantomData,
        }
    }

    /// Sets when the step's records are made durable (default
    /// [`StepSemantics::AtLeastOncePerRetry`]).
    pub fn semantics(mut self, semantics: StepSemantics) -> Self {
        self.semantics = semantics;
        self
    }

    /// Retries failed attempts under `policy`, waiting on durable timers between them (a crash
    /// during a wait resumes it). A terminal error ([`ActivityError::terminal`]) or a code the
    /// policy lists as non-retryable is not retried. Without it a step makes one attempt.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The step's operation id.
    pub fn op_id(&self) -> &OpId {
        &self.op
    }

    fn state(&self) -> &Shared {
        &self.ctx.state
    }

    /// The step's name.
    fn name(&self) -> &str {
        match &self.started {
            EventKind::StepStarted { name, .. } => name,
            _ => "",
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
        .with_retry_after(e.retry_after_hint())
        .at(format!("step {name:?}"), op)
}

/// How one attempt ended.
enum AttemptEnd {
    Output(Payload),
    /// Failed; `retryable` says whether the policy may try again.
    Failed {
        failure: Failure,
        retryable: bool,
    },
}

impl<T, F, Fut> StepFuture<T, F, Fut>
where
    F: Fn(StepContext) -> Fut,
{
    fn step_context(&self, s: &State) -> StepContext {
        StepContext {
            state: self.ctx.state.clone(),
            instance_id: Arc::from(self.ctx.instance_id()),
            execution: s.execution,
            op: self.op.clone(),
            name: Arc::from(self.name()),
            attempt: self.attempt,
        }
    }

    /// The event that records how the current attempt ended: its result, a final failure, or
    /// a retry at a time the policy sets.
    fn attempt_event(&self, s: &State, end: AttemptEnd) -> EventKind {
        let op = self.op.clone();
        let (failure, retryable) = match end {
            AttemptEnd::Output(output) => return EventKind::StepCompleted { op, output },
            AttemptEnd::Failed { failure, retryable } => (failure, retryable),
        };
        let retryable = retryable && self.retry.retries_code(failure.code.as_deref());
        let delay = retryable
            .then(|| self.retry.delay_after(self.attempt, self.jitter_sample(s)))
            .flatten()
            // A wait the step asked for (a `Retry-After`) replaces the policy's backoff.
            .map(|d| failure.retry_after().unwrap_or(d));
        match delay {
            Some(delay) => EventKind::StepRetrying {
                op,
                attempt: self.attempt,
                failure: Box::new(failure),
                retry_at: s.timer_start().plus_ceil(delay),
            },
            None if retryable && self.attempt > 1 => EventKind::StepFailed {
                failure: Box::new(Failure {
                    kind: FailureKind::RetriesExhausted,
                    message: format!(
                        "step {:?} failed on all {} attempts; the last: {}",
                        self.name(),
                        self.attempt,
                        failure.message
                    ),
                    ..failure
                }),
                op,
            },
            None => EventKind::StepFailed {
                op,
                failure: Box::new(failure),
            },
        }
    }

    /// A number in `[0, 1)` for the retry jitter, the same on every replay.
    fn jitter_sample(&self, s: &State) -> f64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s
            .instance_id
            .bytes()
            .chain(self.op.to_string().into_bytes())
            .chain(self.attempt.to_le_bytes())
        {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    fn report(&mut self, s: &mut State, end: AttemptEnd) {
        let kind = self.attempt_event(s, end);
        self.reported = true;
        s.finished_steps.push_back(FinishedStep {
            kind,
            durable_first: self.semantics.result_durable_first(),
        });
    }

    fn label(&self) -> String {
        format!("step {:?}", self.name())
    }
}

impl<T, F, Fut> Future for StepFuture<T, F, Fut>
where
    T: Serialize + DeserializeOwned,
    F: Fn(StepContext) -> Fut,
    Fut: Future<Output = Result<T, ActivityError>>,
{
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Pending;
        }
        let state = this.state().clone();
        let mut s = lock(&state);
        loop {
            if s.nondeterminism.is_some() || s.continue_as_new.is_some() {
                return Poll::Pending;
            }
            if !this.issued {
                if let EventKind::StepStarted { attempt, .. } = &mut this.started {
                    *attempt = this.attempt;
                }
                if let Some(recorded) = s.take_recorded(&this.started) {
                    drop(s);
                    return Poll::Ready(this.finish(recorded));
                }
                if !s.issue(Cow::Borrowed(&this.started)) {
                    return Poll::Pending;
                }
                this.start_pos = s.pos - 1;
                // Nothing can have completed it yet: it waits, with this task's waker.
                s.ops
                    .set_slot(&this.op, Slot::Waiting(Some(cx.waker().clone())));
                this.issued = true;
                this.reported = false;
                break;
            }
            match take_completion(&mut s, &this.op, cx) {
                Some(Completion::Retrying) => {
                    // The attempt failed: wait for the step's backoff timer. Its end is
                    // recorded, whether this run reported it or replay read it back, so the
                    // attempt must not run (or be found interrupted) again while the wait
                    // lasts, however often the future is woken.
                    this.reported = true;
                    s.ops
                        .set_slot(&this.op, Slot::Waiting(Some(cx.waker().clone())));
                    return Poll::Pending;
                }
                Some(Completion::Fired) => {
                    // The backoff is over: start the next attempt.
                    this.attempt += 1;
                    this.issued = false;
                    continue;
                }
                Some(c) => {
                    drop(s);
                    return Poll::Ready(this.finish(c));
                }
                None => break,
            }
        }
        if this.reported {
            return Poll::Pending;
        }
        if this.running.is_none() {
            // Replay waits for the recorded result; only a live run executes the step.
            if !s.live || s.is_replaying() {
                return Poll::Pending;
            }
            let started_before = this.start_pos < s.recorded_len;
            match this.semantics {
                StepSemantics::AtMostOncePerRetry if started_before => {
                    // A journaled start with no result: the attempt may have run. It is not
                    // run again; it counts as failed.
                    let failure = Failure::new(
                        FailureKind::StepInterrupted,
                        format!(
                            "attempt {} of step {:?} was interrupted (the process stopped while \
                             it ran) and, being at most once, is not run again",
                            this.attempt,
                            this.name()
                        ),
                    )
                    .at(this.label(), &this.op);
                    this.report(
                        &mut s,
                        AttemptEnd::Failed {
                            failure,
                            retryable: true,
                        },
                    );
                    return Poll::Pending;
                }
                StepSemantics::AtMostOncePerRetry if this.start_pos >= s.durable_len => {
                    // Its start must be stored before the closure runs.
                    s.wait_for_checkpoint(cx.waker());
                    return Poll::Pending;
                }
                _ => {}
            }
            let step = this.step_context(&s);
            s.steps_running += 1;
            drop(s);
            // A panic in the step's own code is the step's failure (as for an activity): it is
            // journaled like any result, so replay, which never runs the step, agrees.
            match catch_unwind(AssertUnwindSafe(|| (this.f)(step))) {
                Ok(fut) => this.running = Some(Box::pin(fut)),
                Err(panic) => return this.attempt_over(Err(panic)),
            }
        } else {
            drop(s);
        }
        let Some(running) = this.running.as_mut() else {
            return Poll::Pending;
        };
        match catch_unwind(AssertUnwindSafe(|| running.as_mut().poll(cx))) {
            Ok(Poll::Ready(r)) => this.attempt_over(Ok(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => this.attempt_over(Err(panic)),
        }
    }
}

impl<T, F, Fut> StepFuture<T, F, Fut>
where
    T: Serialize,
    F: Fn(StepContext) -> Fut,
{
    /// Hands the end of the running attempt to the run. The result is not handed to the
    /// workflow at once: the run journals it and delivers it once the workflow waits, as replay
    /// does with the recorded result (and, for a durable step, once it is stored). Handing it
    /// over here would let the code see it earlier than on replay.
    fn attempt_over(
        &mut self,
        result: Result<Result<T, ActivityError>, Box<dyn std::any::Any + Send>>,
    ) -> Poll<Result<T, WorkflowError>> {
        self.running = None;
        let end = match result {
            Err(panic) => AttemptEnd::Failed {
                failure: Failure::new(
                    FailureKind::Panic,
                    format!(
                        "step {:?} panicked: {}",
                        self.name(),
                        panic_message(&*panic)
                    ),
                )
                .at(self.label(), &self.op),
                retryable: false,
            },
            Ok(Ok(value)) => match Payload::encode(&value) {
                Ok(output) => AttemptEnd::Output(output),
                Err(e) => AttemptEnd::Failed {
                    failure: Failure::new(
                        FailureKind::Payload,
                        format!("cannot encode the output of step {:?}: {e}", self.name()),
                    )
                    .at(self.label(), &self.op),
                    retryable: false,
                },
            },
            Ok(Err(e)) => AttemptEnd::Failed {
                failure: step_failure(self.name(), &self.op, &e),
                retryable: e.is_retryable(),
            },
        };
        let state = self.ctx.state.clone();
        let mut s = lock(&state);
        s.steps_running = s.steps_running.saturating_sub(1);
        self.report(&mut s, end);
        Poll::Pending
    }
}

impl<T: DeserializeOwned, F, Fut> StepFuture<T, F, Fut> {
    fn finish(&mut self, c: Completion) -> Result<T, WorkflowError> {
        self.finished = true;
        match c {
            Completion::Ok(p) => p.decode::<T>().map_err(|e| {
                WorkflowError::Payload(format!(
                    "step {:?} (op {}) produced a value the workflow cannot decode: {e}",
                    self.name(),
                    self.op
                ))
            }),
            Completion::Err(f) => Err(WorkflowError::Step(f)),
            Completion::Fired | Completion::Started(_) | Completion::Retrying => {
                Err(WorkflowError::Payload(format!(
                    "step {:?} (op {}) received a completion of another kind",
                    self.name(),
                    self.op
                )))
            }
        }
    }
}

// The closure is only ever called by reference, never pinned, and the running attempt is
// boxed: nothing in a `StepFuture` relies on staying in place.
impl<T, F, Fut> Unpin for StepFuture<T, F, Fut> {}

impl<T, F, Fut> Drop for StepFuture<T, F, Fut> {
    fn drop(&mut self) {
        if self.finished || !self.issued {
            return;
        }
        // Drop the user's future before taking the lock: its own drop may use the context.
        let was_running = self.running.take().is_some();
        let mut s = lock(&self.ctx.state);
        if was_running {
            s.steps_running = s.steps_running.saturating_sub(1);
        }
        s.abandon(&self.op);
    }
}
