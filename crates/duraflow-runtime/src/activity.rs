//! Activities: what they see ([`ActivityContext`]) and how they are registered.

use std::future::Future;
use std::sync::Arc;

use duraflow_core::{ActivityError, ActivitySignature, Failure, OpId, Payload, PayloadError};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::heartbeat::Heartbeats;

/// What an activity knows about the attempt it is running.
#[derive(Clone, Debug)]
pub struct ActivityContext {
    pub(crate) instance_id: String,
    pub(crate) execution: u32,
    pub(crate) op: OpId,
    pub(crate) name: String,
    pub(crate) attempt: u32,
    pub(crate) last_failure: Option<Failure>,
    pub(crate) cancel: CancellationToken,
    /// This attempt's heartbeats.
    pub(crate) beats: Arc<Heartbeats>,
    /// The details of the latest heartbeat of an earlier attempt.
    pub(crate) heartbeat_details: Option<Payload>,
}

impl ActivityContext {
    /// The instance that scheduled the activity.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The execution that scheduled it.
    pub fn execution(&self) -> u32 {
        self.execution
    }

    /// The operation id within the workflow; with the instance id and execution it names this
    /// activity uniquely, which makes it a good idempotency key for side effects.
    pub fn op_id(&self) -> &OpId {
        &self.op
    }

    /// The activity's registered name.
    pub fn activity_name(&self) -> &str {
        &self.name
    }

    /// Which attempt this is (1 for the first). Attempts that ended without a report (their
    /// worker died, or their lease expired) count too.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Why the last attempt that reported a failure failed, on a retry. An attempt that ended
    /// without a report (its lease expired) leaves nothing here, so after one this is an
    /// earlier attempt's failure, or `None`; `attempt()` still counts the lost one.
    pub fn last_failure(&self) -> Option<&Failure> {
        self.last_failure.as_ref()
    }

    /// Whether the activity should stop: its instance was cancelled or finished, its lease was
    /// lost, its heartbeat timed out, or the engine is shutting down past its grace period.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the activity should stop (see [`ActivityContext::is_cancelled`]).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Reports that the activity is alive and how far it got: `details` (any serializable
    /// progress, such as the last item processed) become the task's heartbeat details, which
    /// the next attempt of this activity reads with [`ActivityContext::heartbeat_details`] (after
    /// a failure, a lost lease, a crash), so it can resume instead of starting over.
    ///
    /// Cheap to call often: it records in memory and returns at once. The worker writes the
    /// latest details with its next lease renewal (every third of the lease, or of the
    /// activity's heartbeat timeout if shorter) and before the attempt gives its task back
    /// without a result, so an attempt that fails or is handed back leaves its latest details;
    /// one whose process dies leaves those of its last renewal. Every call replaces the details
    /// (pass the same ones again to only say that the activity is alive).
    ///
    /// An activity scheduled with a heartbeat timeout (`ctx.activity(..).heartbeat_timeout(d)`)
    /// must call this at least every `d`, or the attempt fails with kind
    /// [`FailureKind::HeartbeatTimedOut`](duraflow_core::FailureKind::HeartbeatTimedOut) and is
    /// retried under its policy.
    ///
    /// Returns [`ActivityError::Cancelled`] once the activity should stop (see
    /// [`ActivityContext::is_cancelled`]: its lease was lost, its heartbeat timed out, its
    /// instance finished or was cancelled, the engine is stopping), so that `?` ends it, and a
    /// terminal error with code `payload` when `details` cannot be encoded; neither records
    /// anything.
    ///
    /// ```
    /// use duraflow_core::ActivityError;
    /// use duraflow_runtime::ActivityContext;
    ///
    /// async fn import(ctx: ActivityContext, rows: Vec<String>) -> Result<usize, ActivityError> {
    ///     // Resume after the last row an earlier attempt reported.
    ///     let start = ctx.heartbeat_details::<usize>()?.map_or(0, |done| done + 1);
    ///     for (i, row) in rows.iter().enumerate().skip(start) {
    ///         let _ = row; // ... import the row ...
    ///         ctx.heartbeat(&i)?;
    ///     }
    ///     Ok(rows.len())
    /// }
    /// ```
    pub fn heartbeat<T: Serialize + ?Sized>(&self, details: &T) -> Result<(), ActivityError> {
        if self.cancel.is_cancelled() {
            return Err(ActivityError::Cancelled);
        }
        let details = Payload::encode(details).map_err(|e| {
            ActivityError::terminal(format!(
                "cannot encode the heartbeat details of activity {:?}: {e}",
                self.name
            ))
            .with_code("payload")
        })?;
        self.beats.beat(details);
        Ok(())
    }

    /// The details of the latest heartbeat an earlier attempt of this activity recorded (see
    /// [`ActivityContext::heartbeat`]), decoded as `T`; `Ok(None)` on the first attempt and
    /// when no attempt has sent any. The attempt's own heartbeats do not change what this
    /// returns. An error when the recorded details do not decode as `T`.
    pub fn heartbeat_details<T: DeserializeOwned>(&self) -> Result<Option<T>, PayloadError> {
        self.heartbeat_details
            .as_ref()
            .map(Payload::decode)
            .transpose()
    }
}

/// An activity's failure as the worker sees it: its own error, or a payload that did not
/// encode or decode.
#[derive(Debug)]
pub(crate) enum AttemptError {
    Activity(ActivityError),
    Payload(String),
}

/// An activity with its types erased: what the registry holds.
pub(crate) type ActivityFn = Arc<
    dyn Fn(ActivityContext, Payload) -> BoxFuture<'static, Result<Payload, AttemptError>>
        + Send
        + Sync,
>;

/// Wraps `async fn(ActivityContext, I) -> Result<O, ActivityError>` for the registry.
pub(crate) fn activity_fn<F, Fut, I, O>(f: F) -> ActivityFn
where
    F: Fn(ActivityContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ActivityError>> + Send + 'static,
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
{
    Arc::new(move |ctx: ActivityContext, input: Payload| {
        let name = ctx.name.clone();
        match input.decode::<I>() {
            Ok(input) => {
                let fut = f(ctx, input);
                async move {
                    let out = fut.await.map_err(AttemptError::Activity)?;
                    Payload::encode(&out).map_err(|e| {
                        AttemptError::Payload(format!(
                            "cannot encode the output of activity {name:?}: {e}"
                        ))
                    })
                }
                .boxed()
            }
            Err(e) => {
                let err = AttemptError::Payload(format!(
                    "the input of activity {name:?} is invalid: {e}"
                ));
                async move { Err(err) }.boxed()
            }
        }
    })
}

/// An activity as a type: the code that runs it, for a type whose [`ActivitySignature`]
/// (registered name, input and output types) workflow code schedules it by.
///
/// The signature is a separate trait of `duraflow-core`, so that workflow code can name the
/// activity (`ctx.call::<Charge>(&cents)`) without depending on the runtime. Code written
/// when the name and types were declared in this trait moves them into an
/// `impl ActivitySignature` beside the `impl Activity`.
///
/// ```
/// use duraflow_core::{ActivityError, ActivitySignature};
/// use duraflow_runtime::{Activity, ActivityContext};
///
/// struct Charge;
///
/// impl ActivitySignature for Charge {
///     const NAME: &'static str = "charge";
///     type Input = u64;
///     type Output = String;
/// }
///
/// impl Activity for Charge {
///     async fn run(&self, _ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
///         Ok(format!("receipt for {cents} cents"))
///     }
/// }
/// ```
pub trait Activity: ActivitySignature + Send + Sync {
    /// The activity's code.
    fn run(
        &self,
        ctx: ActivityContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ActivityError>> + Send;
}

/// The code of an activity as a function: `async fn(ActivityContext, I) -> Result<O,
/// ActivityError>`, or a closure like it. Implemented for every such function; it lets
/// [`EngineBuilder::activity_for`](crate::EngineBuilder::activity_for) take the input and
/// output types from a signature.
pub trait ActivityHandler<I, O>: Send + Sync + 'static {
    /// The future of one attempt.
    type Future: Future<Output = Result<O, ActivityError>> + Send + 'static;

    /// Runs one attempt.
    fn call(&self, ctx: ActivityContext, input: I) -> Self::Future;
}

impl<F, Fut, I, O> ActivityHandler<I, O> for F
where
    F: Fn(ActivityContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ActivityError>> + Send + 'static,
{
    type Future = Fut;

    fn call(&self, ctx: ActivityContext, input: I) -> Fut {
        self(ctx, input)
    }
}

/// Type-erases an [`Activity`] for the registry.
pub(crate) fn typed_activity_fn<A: Activity>(activity: A) -> ActivityFn {
    let activity = Arc::new(activity);
    activity_fn(move |ctx: ActivityContext, input: A::Input| {
        let activity = activity.clone();
        async move { activity.run(ctx, input).await }
    })
}
