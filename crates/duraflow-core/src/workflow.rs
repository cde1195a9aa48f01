//! Workflow functions: plain `async fn`s and the typed [`Workflow`] trait, type-erased for the
//! registry.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::WorkflowContext;
use crate::error::WorkflowError;
use crate::payload::Payload;

/// A workflow with its input and output types erased: what the engine's registry holds.
pub type WorkflowFn = Arc<
    dyn Fn(WorkflowContext, Payload) -> BoxFuture<'static, Result<Payload, WorkflowError>>
        + Send
        + Sync,
>;

/// Wraps `async fn(WorkflowContext, I) -> Result<O, WorkflowError>` for the registry. An input
/// that does not decode as `I` fails the instance with a payload error naming the type.
pub fn workflow_fn<F, Fut, I, O>(f: F) -> WorkflowFn
where
    F: Fn(WorkflowContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, WorkflowError>> + Send + 'static,
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
{
    Arc::new(move |ctx: WorkflowContext, input: Payload| {
        let name = ctx.workflow_name();
        match input.decode::<I>() {
            Ok(input) => {
                let fut = f(ctx, input);
                async move {
                    let out = fut.await?;
                    Payload::encode(&out).map_err(|e| {
                        WorkflowError::Payload(format!(
                            "cannot encode the output of workflow {name:?}: {e}"
                        ))
                    })
                }
                .boxed()
            }
            Err(e) => {
                let err = WorkflowError::Payload(format!(
                    "the input of workflow {name:?} is invalid: {e}"
                ));
                async move { Err(err) }.boxed()
            }
        }
    })
}

/// A workflow as a type: its registered name, input and output types, and its code.
///
/// Registering a `Workflow` lets the client check types when starting it and waiting for it
/// (`client.start_typed::<MyWorkflow>(&input)`), and other workflows start it by type
/// ([`WorkflowContext::child`], [`WorkflowContext::invoke_typed`]) with the output's type
/// inferred.
///
/// ```
/// use duraflow_core::{Workflow, WorkflowContext, WorkflowError};
///
/// struct Greet;
///
/// impl Workflow for Greet {
///     const NAME: &'static str = "greet";
///     type Input = String;
///     type Output = String;
///
///     async fn run(&self, ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
///         ctx.activity("format-greeting", &name).await
///     }
/// }
/// ```
pub trait Workflow: Send + Sync + 'static {
    /// The name it is registered and started under.
    const NAME: &'static str;
    /// The input type.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The output type.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Its default queue: typed starts (`client.start_typed::<W>`, `ctx.child::<W>`,
    /// `ctx.invoke_typed::<W>`, `ctx.start_child_typed::<W>`) put the instance there unless
    /// they name another, and an engine that registers it by type serves that queue too.
    /// `None` (the default): a client's start uses [`crate::DEFAULT_QUEUE`], a child its
    /// parent's queue.
    const QUEUE: Option<&'static str> = None;
    /// The version of its code, recorded when an instance starts: the engine that runs an
    /// execution's first turn writes the version it registered into the journal's
    /// `workflow_started` and the instance's row (`InstanceInfo::version`), so status, lists
    /// and history show which code started it. `None` (the default) records no version.
    /// Closures registered by name take one with `EngineBuilder::workflow_version`.
    const VERSION: Option<&'static str> = None;

    /// The workflow's code.
    fn run(
        &self,
        ctx: WorkflowContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, WorkflowError>> + Send;
}

/// Type-erases a [`Workflow`] for the registry.
pub fn typed_workflow_fn<W: Workflow>(workflow: W) -> WorkflowFn {
    let workflow = Arc::new(workflow);
    workflow_fn(move |ctx: WorkflowContext, input: W::Input| {
        let workflow = workflow.clone();
        async move { workflow.run(ctx, input).await }
    })
}
