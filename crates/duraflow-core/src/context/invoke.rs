//! `invoke`: run another registered workflow and get its result, within a time limit.

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, Either};
use serde::de::DeserializeOwned;

use super::child::{child_future_with_id, ChildCall};
use crate::error::WorkflowError;
use crate::event::EventKind;
use crate::replay::state::{lock, Shared};

/// A call of another workflow (see [`WorkflowContext::invoke`](crate::WorkflowContext::invoke)); `.await` it for the target's
/// output.
#[must_use = "the target starts only when awaited"]
pub struct Invoke<O> {
    call: ChildCall<O>,
    timeout: Option<Duration>,
}

impl<O> Invoke<O> {
    pub(super) fn new(call: ChildCall<O>) -> Self {
        Invoke {
            call,
            timeout: None,
        }
    }

    /// Fails the call with a timeout error if the target has not finished within `limit`
    /// (on a durable timer), and cancels the target.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Gives the target this instance id instead of one derived from the caller's. It must not
    /// be in use.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.call = self.call.id(id);
        self
    }
}

impl<O: DeserializeOwned + Send + 'static> IntoFuture for Invoke<O> {
    type Output = Result<O, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Result<O, WorkflowError>>;

    fn into_future(self) -> Self::IntoFuture {
        let ctx = self.call.ctx.clone();
        let name = self.call.name.clone();
        let (target, instance_id) = child_future_with_id(self.call, false);
        let Some(limit) = self.timeout else {
            return Box::pin(target);
        };
        Box::pin(async move {
            let op = target.op_id().clone();
            let timer = ctx.sleep(limit);
            match futures::future::select(target, timer).await {
                Either::Left((result, _timer)) => result,
                Either::Right((fired, target)) => {
                    fired?;
                    let reason = format!(
                        "invoke of workflow {name:?} ({instance_id}) timed out after {limit:?}"
                    );
                    Issue::new(
                        &ctx.state,
                        EventKind::ChildCancelled {
                            op,
                            instance_id,
                            reason: reason.clone(),
                        },
                    )
                    .await;
                    drop(target);
                    Err(WorkflowError::Timeout(reason))
                }
            }
        })
    }
}

/// Journals an issued event that no operation waits on, once.
struct Issue {
    state: Shared,
    event: Option<EventKind>,
}

impl Issue {
    fn new(state: &Shared, event: EventKind) -> Self {
        Issue {
            state: state.clone(),
            event: Some(event),
        }
    }
}

impl Future for Issue {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut s = lock(&this.state);
        if s.nondeterminism.is_some() || s.continue_as_new.is_some() {
            return Poll::Pending;
        }
        let Some(event) = this.event.take() else {
            return Poll::Ready(());
        };
        if s.issue(Cow::Owned(event)) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
