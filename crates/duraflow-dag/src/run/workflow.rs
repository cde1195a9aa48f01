//! The interpreter workflow: resolves the template once, checks the input, and runs the
//! steps as activities as the run machine says.

use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{ActivityError, RetryPolicy, WorkflowContext, WorkflowError};
use duraflow_runtime::EngineBuilder;
use futures::future::BoxFuture;
use serde_json::Value;

use super::in_flight::InFlight;
use super::lifecycle::Published;
use super::machine::{Launch, RunMachine};
use super::{DagReport, DagStart, TemplateSource, TEMPLATE_STEP, WORKFLOW_NAME};
use crate::registry::{Registered, Registry, RegistryError};
use crate::template::{Backoff, RetrySpec, StepKind, Template};

/// Registers the interpreter workflow under [`WORKFLOW_NAME`] on `builder`, resolving named
/// templates in `registry`. Register each template's handlers (and batch workers) as
/// activities on the same builder.
pub fn register(builder: EngineBuilder, registry: Arc<Registry>) -> EngineBuilder {
    builder.workflow(WORKFLOW_NAME, interpreter(registry))
}

/// The interpreter workflow as a function, for [`register`] and for replaying a run's journal
/// with `duraflow_core::check_replay(workflow_fn(interpreter(registry)), ..)`.
pub fn interpreter(
    registry: Arc<Registry>,
) -> impl Fn(WorkflowContext, DagStart) -> BoxFuture<'static, Result<DagReport, WorkflowError>>
       + Send
       + Sync
       + 'static {
    move |ctx, start| Box::pin(run(ctx, start, registry.clone()))
}

async fn run(
    ctx: WorkflowContext,
    start: DagStart,
    registry: Arc<Registry>,
) -> Result<DagReport, WorkflowError> {
    let source = Arc::new(start.template);
    let template: Template = ctx
        .step(TEMPLATE_STEP, move |_| {
            let resolved = resolve(&registry, &source);
            async move { resolved }
        })
        .await?;
    let registered = prepare(&template, &start.input)
        .map_err(|e| WorkflowError::application_with_code(e, "dag_invalid_start"))?;
    let (mut machine, first) = RunMachine::new(&registered, start.input, ctx.now().as_millis());
    let mut published = Published::default();
    published.publish(&ctx, &machine)?;
    let mut in_flight = InFlight::default();
    launch(&ctx, registered.template(), first, &mut in_flight);
    while !machine.is_finished() {
        let Some((seq, result)) = in_flight.next().await else {
            return Err(WorkflowError::application(
                "the DAG interpreter has nothing in flight and the run is not finished",
            ));
        };
        let at = ctx.now().as_millis();
        let next = match result {
            Ok(output) => machine.succeeded(seq, output, at),
            Err(e @ WorkflowError::Nondeterminism(_)) => return Err(e),
            Err(e) => {
                let attempts = match &e {
                    WorkflowError::Activity(failure) => failure.attempts,
                    _ => None,
                };
                machine.failed(seq, &e.to_string(), attempts, at)
            }
        };
        published.publish(&ctx, &machine)?;
        match next {
            Ok(launches) => launch(&ctx, registered.template(), launches, &mut in_flight),
            // Returning drops `in_flight`: the steps still running are cancelled.
            Err(failed) => {
                return Err(WorkflowError::application_with_code(
                    failed.message,
                    "dag_step_failed",
                ))
            }
        }
    }
    Ok(machine.report())
}

/// The template a start names (or carries), as the template step records it.
fn resolve(registry: &Registry, source: &TemplateSource) -> Result<Template, ActivityError> {
    match source {
        TemplateSource::Inline(template) => Ok(template.clone()),
        TemplateSource::Named(r) => registry
            .get(&r.namespace, &r.name, r.version.as_deref())
            .map(|found| found.template().clone())
            .map_err(|e| ActivityError::terminal(e).with_code("dag_template_not_found")),
    }
}

/// Validates `template` (its handlers are taken as known: the engine's registrations decide)
/// and checks `input` against its input schema. Pure, so replay repeats it.
pub(crate) fn prepare(
    template: &Template,
    input: &Value,
) -> Result<Arc<Registered>, RegistryError> {
    let handlers = template.steps.iter().flat_map(|s| {
        let worker = match &s.kind {
            StepKind::Batch { worker, .. } => Some(worker.clone()),
            _ => None,
        };
        std::iter::once(s.handler.clone()).chain(worker)
    });
    let registered = Registry::new(handlers).register(template.clone())?;
    registered.check_input(input)?;
    Ok(registered)
}

fn launch(ctx: &WorkflowContext, template: &Template, launches: Vec<Launch>, to: &mut InFlight) {
    for l in launches {
        let Some(step) = template.steps.get(l.step) else {
            continue;
        };
        let mut call = ctx
            .activity::<Value>(&l.handler, &l.input)
            .retry(retry_policy(&step.retry));
        if let Some(ms) = step.timeout_ms {
            call = call.attempt_timeout(Duration::from_millis(ms));
        }
        if let Some(queue) = &step.queue {
            call = call.queue(queue);
        }
        // Converting now takes the operation id, so ids follow launch order.
        to.push(l.seq, std::future::IntoFuture::into_future(call));
    }
}

/// A template's retry spec as the engine's activity retry policy.
pub fn retry_policy(spec: &RetrySpec) -> RetryPolicy {
    let interval = Duration::from_millis(spec.interval_ms);
    let policy = match spec.backoff {
        Backoff::Fixed => RetryPolicy::fixed(interval),
        Backoff::Exponential => RetryPolicy::exponential(interval),
    };
    policy
        .max_attempts(spec.max_attempts)
        .max_interval(Duration::from_millis(spec.max_interval_ms))
}
