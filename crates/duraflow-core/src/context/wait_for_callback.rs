//! `wait_for_callback`: open a callback, hand its token out in a step, wait for it.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{StepContext, WorkflowContext};
use crate::error::{ActivityError, WorkflowError};
use crate::retry::RetryPolicy;

/// A wait for a callback whose token a submitter step hands out (see
/// [`WorkflowContext::wait_for_callback`]); `.await` it for the callback's value.
#[must_use = "the wait does nothing unless awaited"]
pub struct WaitForCallback<T, F> {
    ctx: WorkflowContext,
    name: String,
    submit: F,
    timeout: Option<Duration>,
    heartbeat_timeout: Option<Duration>,
    submitter_retry: RetryPolicy,
    _output: PhantomData<fn() -> T>,
}

impl<T, F> WaitForCallback<T, F> {
    pub(super) fn new(ctx: WorkflowContext, name: &str, submit: F) -> Self {
        WaitForCallback {
            ctx,
            name: name.to_owned(),
            submit,
            timeout: None,
            heartbeat_timeout: None,
            submitter_retry: RetryPolicy::none(),
            _output: PhantomData,
        }
    }

    /// Fails the callback if it is not completed within `limit` (see
    /// [`crate::context::Callback::timeout`]).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Fails the callback if `limit` passes without a completion or a heartbeat (see
    /// [`crate::context::Callback::heartbeat_timeout`]).
    pub fn heartbeat_timeout(mut self, limit: Duration) -> Self {
        self.heartbeat_timeout = Some(limit);
        self
    }

    /// Retries the submitter step under `policy` (it makes one attempt by default).
    pub fn submitter_retry(mut self, policy: RetryPolicy) -> Self {
        self.submitter_retry = policy;
        self
    }
}

impl<T, F, Fut> IntoFuture for WaitForCallback<T, F>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(String, StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ActivityError>> + Send + 'static,
{
    type Output = Result<T, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Result<T, WorkflowError>>;

    fn into_future(self) -> Self::IntoFuture {
        let WaitForCallback {
            ctx,
            name,
            submit,
            timeout,
            heartbeat_timeout,
            submitter_retry,
            ..
        } = self;
        let submit = Arc::new(submit);
        let label = name.clone();
        Box::pin(
            ctx.run_in_child_context(&name, move |ctx: WorkflowContext| async move {
                let mut cb = ctx.callback::<T>(&label);
                if let Some(t) = timeout {
                    cb = cb.timeout(t);
                }
                if let Some(h) = heartbeat_timeout {
                    cb = cb.heartbeat_timeout(h);
                }
                let token = cb.token();
                ctx.step("submit", move |step| submit(token.clone(), step))
                    .retry(submitter_retry)
                    .await?;
                cb.await
            }),
        )
    }
}
