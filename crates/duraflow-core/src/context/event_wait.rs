//! Waiting for an external event, with an optional timeout.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::op::{OpFuture, OpKind};
use super::WorkflowContext;
use crate::error::WorkflowError;
use crate::event::EventKind;

/// A wait for an external event; optionally give it a timeout, then `.await` it for the data.
#[must_use = "the wait starts only when awaited"]
pub struct EventWait<T> {
    ctx: WorkflowContext,
    name: String,
    timeout: Option<Duration>,
    _data: PhantomData<fn() -> T>,
}

impl<T> EventWait<T> {
    pub(super) fn new(ctx: WorkflowContext, name: &str) -> Self {
        EventWait {
            ctx,
            name: name.to_owned(),
            timeout: None,
            _data: PhantomData,
        }
    }

    /// Gives up after `timeout` of workflow time with [`WorkflowError::Timeout`]. An event that
    /// arrives later stays buffered for the next wait.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The future of an [`EventWait`].
#[must_use = "futures do nothing unless awaited"]
pub struct EventWaitFuture<T> {
    wait: OpFuture<T>,
    timer: Option<(OpFuture<()>, String)>,
}

impl<T: DeserializeOwned> IntoFuture for EventWait<T> {
    type Output = Result<T, WorkflowError>;
    type IntoFuture = EventWaitFuture<T>;

    fn into_future(self) -> EventWaitFuture<T> {
        let op = self.ctx.next_op();
        let issue = EventKind::EventWaitStarted {
            op: op.clone(),
            name: self.name.clone(),
        };
        let label = format!("event {:?}", self.name);
        let wait = OpFuture::new(self.ctx.state.clone(), op, OpKind::Event, label, Ok(issue));
        let timer = self.timeout.map(|t| {
            let message = format!("no event {:?} arrived within {t:?}", self.name);
            (self.ctx.sleep(t), message)
        });
        EventWaitFuture { wait, timer }
    }
}

impl<T: DeserializeOwned> Future for EventWaitFuture<T> {
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(out) = Pin::new(&mut this.wait).poll(cx) {
            return Poll::Ready(out);
        }
        if let Some((timer, message)) = &mut this.timer {
            if let Poll::Ready(fired) = Pin::new(timer).poll(cx) {
                return Poll::Ready(fired.and(Err(WorkflowError::Timeout(message.clone()))));
            }
        }
        Poll::Pending
    }
}
