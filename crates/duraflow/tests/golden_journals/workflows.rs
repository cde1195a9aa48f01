//! The workflows the golden journals were recorded with. Their code is frozen: a fixture is
//! the journal this code wrote, and the test proves that every later build replays it to the
//! same end. Change the engine freely; never change these (add a new workflow and fixture
//! instead).

use duraflow::prelude::*;
use futures::future::Either;

/// Every primitive of the first face in one workflow: a retried activity, a step, an event
/// with a timeout, a timer, a fan-out, a child, a detached child, and deterministic values.
pub(crate) async fn tour(
    ctx: WorkflowContext,
    order: String,
) -> Result<Vec<String>, WorkflowError> {
    let mut seen = Vec::new();
    let charged: String = ctx
        .activity("flaky-charge", &order)
        .retry(RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(3))
        .await?;
    seen.push(charged);
    let label: String = ctx
        .step("label", |_| async { Ok(String::from("label-1")) })
        .await?;
    seen.push(label);
    let approver: String = ctx
        .wait_for_event("approved")
        .timeout(Duration::from_secs(3600))
        .await?;
    seen.push(approver);
    ctx.sleep(Duration::from_secs(60)).await?;
    let packed: Vec<String> = ctx
        .join_all(["a", "b", "c"].map(|item| ctx.activity::<String>("pack", item)))
        .await?;
    seen.extend(packed);
    let tracking: String = ctx
        .child_workflow("ship", &order)
        .id(format!("{}-ship", ctx.instance_id()))
        .await?;
    seen.push(tracking);
    let audit = ctx
        .start_child("audit", &order)
        .id(format!("{}-audit", ctx.instance_id()))
        .await?;
    seen.push(audit);
    seen.push(ctx.uuid().to_string());
    seen.push(ctx.random_u64().to_string());
    seen.push(ctx.now().as_millis().to_string());
    Ok(seen)
}

/// Every primitive of the second face (journal format 2) in one workflow: a step retried on
/// its timer, an at-most-once step, a map under a concurrency limit, a callback, a
/// wait_for_condition and an invoke.
pub(crate) async fn functions(
    ctx: WorkflowContext,
    order: String,
) -> Result<Vec<String>, WorkflowError> {
    let mut seen = Vec::new();
    let quote: String = ctx
        .step("quote", move |step| {
            let order = order.clone();
            async move {
                if step.attempt() < 2 {
                    return Err(ActivityError::retryable("the quote service is busy"));
                }
                Ok(format!("quote for {order}"))
            }
        })
        .retry(RetryPolicy::fixed(Duration::from_secs(1)))
        .await?;
    seen.push(quote);
    let charged: String = ctx
        .step("charge", |_| async { Ok(String::from("charged once")) })
        .semantics(StepSemantics::AtMostOncePerRetry)
        .await?;
    seen.push(charged);
    let items: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let packed: BatchResult<String> = ctx
        .map(
            "pack",
            items,
            |c: WorkflowContext, item: String, _| async move {
                c.activity::<String>("pack", &item).await
            },
        )
        .max_concurrency(2)
        .await?;
    seen.extend(packed.results().into_iter().cloned());
    let approver: String = ctx
        .callback::<String>("approve")
        .timeout(Duration::from_secs(3600))
        .await?;
    seen.push(approver);
    let polls: u32 = ctx
        .wait_for_condition(
            "settled",
            0u32,
            |n: u32, _| async move {
                Ok(if n >= 1 {
                    duraflow::Condition::Done(n + 1)
                } else {
                    duraflow::Condition::Continue(n + 1)
                })
            },
            duraflow::WaitStrategy::fixed(Duration::from_secs(5)),
        )
        .await?;
    seen.push(format!("polled {polls} times"));
    let shipped: String = ctx.invoke("ship", &"order-9").await?;
    seen.push(shipped);
    Ok(seen)
}

/// The child of [`tour`].
pub(crate) async fn ship(ctx: WorkflowContext, order: String) -> Result<String, WorkflowError> {
    ctx.activity("pack", &format!("{order}-box")).await
}

/// The detached child of [`tour`]: waits for nothing and ends.
pub(crate) async fn audit(_ctx: WorkflowContext, order: String) -> Result<String, WorkflowError> {
    Ok(format!("audited {order}"))
}

/// An event against a timer, in a loop: the winner of each round is journaled.
pub(crate) async fn race(ctx: WorkflowContext, rounds: u32) -> Result<Vec<String>, WorkflowError> {
    let mut winners = Vec::new();
    for _ in 0..rounds {
        let winner = match ctx
            .select(
                ctx.wait_for_event::<String>("poke"),
                ctx.sleep(Duration::from_secs(10)),
            )
            .await
        {
            Either::Left(event) => event?,
            Either::Right(timer) => {
                timer?;
                "timer".to_owned()
            }
        };
        winners.push(winner);
    }
    Ok(winners)
}

/// Takes one event per execution and continues as new, carrying what it took.
pub(crate) async fn looper(
    ctx: WorkflowContext,
    taken: Vec<u32>,
) -> Result<Vec<u32>, WorkflowError> {
    if taken.len() == 3 {
        return Ok(taken);
    }
    let next: u32 = ctx.wait_for_event("e").await?;
    let mut taken = taken;
    taken.push(next);
    ctx.continue_as_new(&taken).await
}

/// Emits `opened` with `news`, then awaits `closing` for ten seconds (journal format 3).
pub(crate) async fn herald(
    ctx: WorkflowContext,
    news: String,
) -> Result<(EmitOutcome, Option<String>), WorkflowError> {
    let outcome = ctx.emit_event("opened", &news).await?;
    let closing = match ctx
        .await_event::<String>("closing")
        .timeout(Duration::from_secs(10))
        .await
    {
        Ok(word) => Some(word),
        Err(WorkflowError::Timeout(_)) => None,
        Err(e) => return Err(e),
    };
    Ok((outcome, closing))
}

/// Awaits `opened` and returns its data.
pub(crate) async fn gatherer(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.await_event("opened").await
}

/// Fails: its activity fails terminally.
pub(crate) async fn doomed(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    ctx.activity::<()>("refuse", &()).await
}

/// Succeeds on the second attempt.
pub(crate) async fn flaky_charge(
    ctx: ActivityContext,
    order: String,
) -> Result<String, ActivityError> {
    if ctx.attempt() < 2 {
        return Err(ActivityError::retryable("the card network timed out"));
    }
    Ok(format!("charged {order}"))
}

/// Packs an item.
pub(crate) async fn pack(_ctx: ActivityContext, item: String) -> Result<String, ActivityError> {
    Ok(format!("packed {item}"))
}

/// Always refuses.
pub(crate) async fn refuse(_ctx: ActivityContext, _: ()) -> Result<(), ActivityError> {
    Err(ActivityError::terminal("refused").with_code("no"))
}

/// An engine builder with every golden workflow and activity registered.
pub(crate) fn register(builder: EngineBuilder) -> EngineBuilder {
    builder
        .workflow("tour", tour)
        .workflow("ship", ship)
        .workflow("audit", audit)
        .workflow("race", race)
        .workflow("looper", looper)
        .workflow("doomed", doomed)
        .workflow("functions", functions)
        .workflow("herald", herald)
        .workflow("gatherer", gatherer)
        .activity("flaky-charge", flaky_charge)
        .activity("pack", pack)
        .activity("refuse", refuse)
}

/// The workflow function registered as `name`, for replaying without an engine.
pub(crate) fn by_name(name: &str) -> Option<duraflow::WorkflowFn> {
    use duraflow::workflow_fn;
    Some(match name {
        "tour" => workflow_fn(tour),
        "ship" => workflow_fn(ship),
        "audit" => workflow_fn(audit),
        "race" => workflow_fn(race),
        "looper" => workflow_fn(looper),
        "doomed" => workflow_fn(doomed),
        "functions" => workflow_fn(functions),
        "herald" => workflow_fn(herald),
        "gatherer" => workflow_fn(gatherer),
        _ => return None,
    })
}
