//! Queue-wide events: emitting one in the instance's queue, and awaiting one there.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::op::{OpFuture, OpKind};
use super::WorkflowContext;
use crate::error::WorkflowError;
use crate::event::EventKind;
use crate::payload::Payload;
use crate::queue_event::{check_queue_event_name, EmitOutcome};
use crate::replay::state::lock;

impl WorkflowContext {
    /// Emits the queue-wide event `name` with `data` in this instance's queue: the first emit
    /// of a name in a queue stores it and wakes every instance of the queue awaiting it
    /// ([`WorkflowContext::await_event`]); a later one changes nothing. Awaiting the returned
    /// future gives what the emit did ([`EmitOutcome::Emitted`] with the number of awaits it
    /// answered, or [`EmitOutcome::AlreadyEmitted`]).
    ///
    /// The emit is durable: it is journaled, carried out by the commit of the turn that
    /// journals it, and its outcome is journaled when it comes back, so replay never emits
    /// again. The event does not belong to this instance: it stays in the queue after the
    /// instance has finished. Data that cannot be encoded fails the future with
    /// [`WorkflowError::Payload`], and a name that is empty, longer than
    /// [`crate::MAX_QUEUE_EVENT_NAME_LEN`] bytes or holds a NUL character with an application
    /// error of code `invalid_queue_event_name`; nothing is emitted then.
    pub fn emit_event(
        &self,
        name: &str,
        data: &(impl Serialize + ?Sized),
    ) -> OpFuture<EmitOutcome> {
        let op = self.next_op();
        let issue = check_name(name).and_then(|()| {
            Payload::encode(data)
                .map(|data| EventKind::QueueEventEmitStarted {
                    op: op.clone(),
                    name: name.to_owned(),
                    data,
                })
                .map_err(|e| {
                    WorkflowError::Payload(format!(
                        "the data of queue event {name:?} cannot be encoded: {}",
                        e.0
                    ))
                })
        });
        OpFuture::new(
            self.state.clone(),
            op,
            OpKind::QueueEmit,
            format!("emit of queue event {name:?}"),
            issue,
        )
    }

    /// Awaits the queue-wide event `name` in this instance's queue (see
    /// [`WorkflowContext::emit_event`]) and decodes its data. An event emitted before the await
    /// is returned at once, with the data of its first emit; every await of the name gets the
    /// same data. Give it a limit with [`QueueEventAwait::timeout`]. A name no store can keep
    /// fails the await as it fails [`WorkflowContext::emit_event`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use duraflow_core::{EmitOutcome, WorkflowContext, WorkflowError};
    ///
    /// /// Publishes a build; every deploy of the queue waiting for it wakes.
    /// async fn build(ctx: WorkflowContext, version: String) -> Result<bool, WorkflowError> {
    ///     let outcome = ctx.emit_event("artifact-ready", &version).await?;
    ///     Ok(outcome != EmitOutcome::AlreadyEmitted)
    /// }
    ///
    /// /// Waits up to an hour for the build (at once if it was published before).
    /// async fn deploy(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ///     let version: String = ctx
    ///         .await_event("artifact-ready")
    ///         .timeout(Duration::from_secs(3600))
    ///         .await?;
    ///     Ok(format!("deployed {version}"))
    /// }
    /// ```
    pub fn await_event<T>(&self, name: &str) -> QueueEventAwait<T> {
        QueueEventAwait {
            ctx: self.clone(),
            name: name.to_owned(),
            timeout: None,
            _data: PhantomData,
        }
    }
}

/// Refuses a name no store can keep, before anything is journaled.
fn check_name(name: &str) -> Result<(), WorkflowError> {
    check_queue_event_name("a queue event's name", name).map_err(|message| {
        WorkflowError::Application {
            message,
            code: Some("invalid_queue_event_name".to_owned()),
        }
    })
}

/// An await of a queue-wide event (see [`WorkflowContext::await_event`]); optionally give it a
/// timeout, then `.await` it for the data.
#[must_use = "the await starts only when awaited"]
pub struct QueueEventAwait<T> {
    ctx: WorkflowContext,
    name: String,
    timeout: Option<Duration>,
    _data: PhantomData<fn() -> T>,
}

impl<T> QueueEventAwait<T> {
    /// Gives up after `timeout` of workflow time with [`WorkflowError::Timeout`] (failure kind
    /// `timeout` when it fails the workflow). The timeout is a durable timer of the await's own
    /// operation: whichever of the event and the timer is journaled first decides the await, on
    /// every replay. An event emitted later stays in the queue for the next await.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The future of a [`QueueEventAwait`].
#[must_use = "futures do nothing unless awaited"]
pub struct QueueEventAwaitFuture<T> {
    wait: OpFuture<T>,
}

impl<T: DeserializeOwned> IntoFuture for QueueEventAwait<T> {
    type Output = Result<T, WorkflowError>;
    type IntoFuture = QueueEventAwaitFuture<T>;

    fn into_future(self) -> QueueEventAwaitFuture<T> {
        let (op, timeout_at) = {
            let mut s = lock(&self.ctx.state);
            let op = s.next_op_id(self.ctx.scope.as_ref());
            (op, self.timeout.map(|t| s.timer_start().plus_ceil(t)))
        };
        let issue = check_name(&self.name).map(|()| EventKind::QueueEventAwaitStarted {
            op: op.clone(),
            name: self.name.clone(),
            timeout_at,
        });
        let label = format!("queue event {:?}", self.name);
        QueueEventAwaitFuture {
            wait: OpFuture::new(self.ctx.state.clone(), op, OpKind::QueueAwait, label, issue),
        }
    }
}

impl<T: DeserializeOwned> Future for QueueEventAwaitFuture<T> {
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().wait).poll(cx)
    }
}
