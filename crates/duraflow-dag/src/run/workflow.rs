//! The interpreter workflow: resolves the template once, checks the input, and runs the
//! steps as activities as the run machine says: each attempt one activity call, each retry
//! backoff a durable timer, and operator actions heard at all times.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use duraflow_core::{ActivityError, RetryPolicy, Timestamp, WorkflowContext, WorkflowError};
use duraflow_runtime::EngineBuilder;
use futures::future::BoxFuture;
use serde_json::Value;

use super::in_flight::{Ended, InFlight};
use super::lifecycle::Published;
use super::machine::{Order, RunMachine};
use super::operator::{OperatorAction, OPERATOR_EVENT};
use super::retry::{self, AttemptFailure};
use super::{DagReport, DagStart, TemplateSource, TEMPLATE_STEP, WORKFLOW_NAME};
use crate::registry::{Registered, Registry, RegistryError};
use crate::template::{StepKind, Template};

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
    let seed = retry::seed(ctx.instance_id());
    let (mut machine, first) =
        RunMachine::new(&registered, start.input, seed, ctx.now().as_millis());
    let mut published = Published::default();
    published.publish(&ctx, &machine)?;
    let mut in_flight = InFlight::default();
    issue(&ctx, registered.template(), first, &mut in_flight);
    let mut operator = listen(&ctx);
    while !machine.is_finished() {
        let next = futures::future::poll_fn(|cx| {
            if let Poll::Ready(action) = operator.as_mut().poll(cx) {
                return Poll::Ready(Some(Next::Operator(action)));
            }
            in_flight.poll_next(cx).map(|ended| ended.map(Next::Ended))
        });
        let next = match next.await {
            Some(next) => next,
            // Nothing in flight: a held run waits for its operator.
            None if machine.is_held() => Next::Operator(operator.as_mut().await),
            None => {
                return Err(WorkflowError::application(
                    "the DAG interpreter has nothing in flight and the run is not finished",
                ))
            }
        };
        let at = ctx.now().as_millis();
        let orders = match next {
            Next::Operator(action) => {
                operator = listen(&ctx);
                match action {
                    Ok(action) => machine.act(&action, at),
                    // An event that is not an action (it did not decode): nothing to do.
                    Err(WorkflowError::Payload(_)) => Ok(Vec::new()),
                    // The wait itself failed (the instance is ending): so does the run.
                    Err(e) => return Err(e),
                }
            }
            Next::Ended(Ended::Timer(seq, Ok(()))) => machine.timer_fired(seq, at),
            // A timer only fails when the instance itself is ending (cancelled, or a journal
            // it does not match): so does the run.
            Next::Ended(Ended::Timer(_, Err(e))) => return Err(e),
            Next::Ended(Ended::Attempt(seq, Ok(output))) => machine.succeeded(seq, output, at),
            Next::Ended(Ended::Attempt(_, Err(e @ WorkflowError::Nondeterminism(_)))) => {
                return Err(e)
            }
            Next::Ended(Ended::Attempt(seq, Err(e))) => {
                machine.failed(seq, &AttemptFailure::from_error(&e), at)
            }
        };
        published.publish(&ctx, &machine)?;
        match orders {
            Ok(orders) => issue(&ctx, registered.template(), orders, &mut in_flight),
            // Returning drops `in_flight`: the steps still running are cancelled.
            Err(ended) => {
                return Err(WorkflowError::application_with_code(
                    ended.message,
                    ended.code,
                ))
            }
        }
    }
    Ok(machine.report())
}

/// What the interpreter heard of next.
enum Next {
    Operator(Result<OperatorAction, WorkflowError>),
    Ended(Ended),
}

/// A wait for the next operator action.
fn listen(
    ctx: &WorkflowContext,
) -> Pin<Box<dyn Future<Output = Result<OperatorAction, WorkflowError>> + Send>> {
    Box::pin(
        ctx.wait_for_event::<OperatorAction>(OPERATOR_EVENT)
            .into_future(),
    )
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

fn issue(ctx: &WorkflowContext, template: &Template, orders: Vec<Order>, to: &mut InFlight) {
    for order in orders {
        match order {
            Order::Launch(l) => {
                let Some(step) = template.steps.get(l.step) else {
                    continue;
                };
                // One attempt per call: the interpreter schedules the retries itself.
                let mut call = ctx
                    .activity::<Value>(&l.handler, &l.input)
                    .retry(RetryPolicy::none());
                if let Some(ms) = step.timeout_ms {
                    call = call.attempt_timeout(Duration::from_millis(ms));
                }
                if let Some(queue) = &step.queue {
                    call = call.queue(queue);
                }
                // Converting now takes the operation id, so ids follow order numbers.
                to.push_attempt(l.seq, std::future::IntoFuture::into_future(call));
            }
            Order::Sleep { seq, until } => {
                to.push_timer(seq, ctx.sleep_until(Timestamp::from_millis(until)));
            }
        }
    }
}
