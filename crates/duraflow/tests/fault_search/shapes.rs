//! The workflow shapes the search runs (events, timers, activities, children,
//! continue-as-new, select), and the activities they call.

use duraflow::prelude::*;
use duraflow::{workflow_fn, EngineBuilder, WorkflowFn};
use futures::future::Either;

/// The one external event name every shape waits for.
pub(crate) const EVENT: &str = "e";

/// A workflow shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Continue-as-new per event until its input reaches 2 (the stranded-instance repro).
    Looper,
    /// A timer, an activity, another timer.
    Sleeper,
    /// A fan-out of activities, then one that fails its first attempt and is retried.
    Fan,
    /// Two children raced against an event.
    Parent,
    /// An event raced against a timer, an event wait with a timeout, continue-as-new once.
    Racer,
}

impl Shape {
    /// Every shape.
    pub(crate) const ALL: [Shape; 5] = [
        Shape::Looper,
        Shape::Sleeper,
        Shape::Fan,
        Shape::Parent,
        Shape::Racer,
    ];

    /// The name it is registered under.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Shape::Looper => "looper",
            Shape::Sleeper => "sleeper",
            Shape::Fan => "fan",
            Shape::Parent => "parent",
            Shape::Racer => "racer",
        }
    }

    /// The shape registered under `name`.
    pub(crate) fn from_name(name: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The workflow function, for replaying journals.
    pub(crate) fn workflow(self) -> WorkflowFn {
        match self {
            Shape::Looper => workflow_fn(looper),
            Shape::Sleeper => workflow_fn(sleeper),
            Shape::Fan => workflow_fn(fan),
            Shape::Parent => workflow_fn(parent),
            Shape::Racer => workflow_fn(racer),
        }
    }
}

/// Registers every shape and activity.
pub(crate) fn register(builder: EngineBuilder) -> EngineBuilder {
    Shape::ALL
        .into_iter()
        .fold(builder, |b, shape| b.workflow_fn(shape))
        .activity("work", work)
        .activity("flaky", flaky)
}

/// Registering a shape by its [`Shape`].
trait RegisterShape {
    fn workflow_fn(self, shape: Shape) -> Self;
}

impl RegisterShape for EngineBuilder {
    fn workflow_fn(self, shape: Shape) -> Self {
        match shape {
            Shape::Looper => self.workflow(shape.name(), looper),
            Shape::Sleeper => self.workflow(shape.name(), sleeper),
            Shape::Fan => self.workflow(shape.name(), fan),
            Shape::Parent => self.workflow(shape.name(), parent),
            Shape::Racer => self.workflow(shape.name(), racer),
        }
    }
}

async fn looper(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    if n >= 2 {
        return Ok(n);
    }
    let _: u64 = ctx.wait_for_event(EVENT).await?;
    ctx.continue_as_new(&(n + 1)).await
}

async fn sleeper(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    ctx.sleep(Duration::from_secs(u64::from(n % 20 + 1)))
        .await?;
    let out: u32 = ctx.activity("work", &n).await?;
    ctx.sleep(Duration::from_secs(5)).await?;
    Ok(out)
}

async fn fan(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let outs: Vec<u32> = ctx
        .join_all((0..n % 4 + 2).map(|i| ctx.activity::<u32>("work", &i)))
        .await?;
    let retried: u32 = ctx
        .activity("flaky", &n)
        .retry(RetryPolicy::fixed(Duration::from_secs(3)).max_attempts(20))
        .await?;
    Ok(outs.iter().sum::<u32>() + retried)
}

async fn parent(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let children = ctx.join_all([
        ctx.child_workflow::<u32>("sleeper", &n),
        ctx.child_workflow::<u32>("fan", &(n + 1)),
    ]);
    match ctx.select(children, ctx.wait_for_event::<u64>(EVENT)).await {
        Either::Left(outs) => Ok(outs?.iter().sum()),
        // The event won: the children still open are cancelled as this instance completes.
        Either::Right(event) => event.map(|_| 0),
    }
}

async fn racer(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut won = 0u32;
    match ctx
        .select(
            ctx.wait_for_event::<u64>(EVENT),
            ctx.sleep(Duration::from_secs(15)),
        )
        .await
    {
        Either::Left(event) => {
            event?;
            won += 1;
            let _: u32 = ctx.activity("work", &won).await?;
        }
        Either::Right(fired) => fired?,
    }
    match ctx
        .wait_for_event::<u64>(EVENT)
        .timeout(Duration::from_secs(10))
        .await
    {
        Ok(_) => won += 1,
        Err(WorkflowError::Timeout(_)) => {}
        Err(e) => return Err(e),
    }
    if n == 0 {
        return ctx.continue_as_new(&1u32).await;
    }
    Ok(won)
}

async fn work(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n * 2)
}

async fn flaky(ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    if ctx.attempt() == 1 {
        return Err(ActivityError::retryable("the first attempt always fails"));
    }
    Ok(n)
}
