//! Continue-as-new.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::WorkflowError;
use crate::event::EventKind;
use crate::payload::{Payload, PayloadError};
use crate::replay::state::{lock, Shared};

/// Ends the execution and starts the next one. It never resolves unless the input cannot be
/// encoded: the run ends the execution as soon as it is awaited.
#[must_use = "continue-as-new happens only when awaited"]
pub struct ContinueAsNew<T> {
    state: Shared,
    input: Option<Result<Payload, PayloadError>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> ContinueAsNew<T> {
    pub(super) fn new(state: Shared, input: Result<Payload, PayloadError>) -> Self {
        ContinueAsNew {
            state,
            input: Some(input),
            _t: PhantomData,
        }
    }
}

impl<T> Future for ContinueAsNew<T> {
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.input.take() {
            Some(Ok(input)) => {
                let mut s = lock(&this.state);
                if s.issue(Cow::Owned(EventKind::ContinuedAsNew {
                    input: input.clone(),
                })) {
                    s.continue_as_new = Some(input);
                }
                Poll::Pending
            }
            Some(Err(e)) => Poll::Ready(Err(WorkflowError::Payload(format!(
                "cannot encode the input for continue-as-new: {e}"
            )))),
            None => Poll::Pending,
        }
    }
}
