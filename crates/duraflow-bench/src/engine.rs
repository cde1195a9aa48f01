//! The workflows and activities the workloads run, the engine that runs them, and helpers to
//! start many workflows and wait for them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use duraflow::prelude::*;
use duraflow::{EngineOptions, InstanceInfo, Store, Timestamp};
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::report::Figures;
use crate::Result;

/// Workflow: three sequential no-op activities.
pub(crate) const THREE_ACTIVITIES: &str = "three-activities";
/// Workflow: `n` sequential no-op activities.
pub(crate) const SEQUENTIAL_ACTIVITIES: &str = "sequential-activities";
/// Workflow: `n` sequential inline steps.
pub(crate) const SEQUENTIAL_STEPS: &str = "sequential-steps";
/// Workflow: returns at once.
pub(crate) const EMPTY: &str = "empty";
/// Workflow: `n` no-op activities at once, joined.
pub(crate) const FAN_OUT: &str = "fan-out";
/// Workflow: sleeps on a durable timer and reports when it woke.
pub(crate) const SLEEPER: &str = "sleeper";
/// Workflow: `k` sequential inline steps, then waits for the event [`GO`] (`replay`).
pub(crate) const STEPS_THEN_WAIT: &str = "steps-then-wait";
/// Workflow: waits for the event [`WAKE`] and returns its data (`parked`).
pub(crate) const PARKED: &str = "parked";
/// Workflow: `n` sequential inline steps with the given semantics (`steps`).
pub(crate) const STEPS_WITH: &str = "steps-with";
/// Workflow: maps `n` items, 100 at a time, each item running one inline step (`map`).
pub(crate) const MAP_ITEMS: &str = "map-items";
/// The concurrency limit of a [`MAP_ITEMS`] workflow's map.
pub(crate) const MAP_CONCURRENCY: usize = 100;
/// Activity: does nothing.
pub(crate) const NOOP: &str = "noop";
/// Activity: does nothing, with any JSON input (the steps of the DAG workloads).
pub(crate) const DAG_NOOP: &str = "dag-noop";
/// The event a [`STEPS_THEN_WAIT`] workflow waits for.
pub(crate) const GO: &str = "go";
/// The event a [`PARKED`] workflow waits for.
pub(crate) const WAKE: &str = "wake";

/// How many client starts are in flight at once when a workload starts many workflows.
pub(crate) const START_CONCURRENCY: usize = 64;

/// How long any wait for workflows may take before the workload fails.
pub(crate) const WAIT_LIMIT: Duration = Duration::from_secs(600);

async fn noop(_ctx: ActivityContext, _i: u64) -> Result<(), ActivityError> {
    Ok(())
}

async fn dag_noop(
    _ctx: ActivityContext,
    _input: serde_json::Value,
) -> Result<serde_json::Value, ActivityError> {
    Ok(serde_json::Value::Null)
}

async fn three_activities(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    for i in 0..3u64 {
        ctx.activity::<()>(NOOP, &i).await?;
    }
    Ok(())
}

async fn sequential_activities(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    for i in 0..n {
        ctx.activity::<()>(NOOP, &i).await?;
    }
    Ok(n)
}

async fn sequential_steps(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let mut sum = 0;
    for i in 0..n {
        sum += ctx.step("add", move |_| async move { Ok(i) }).await?;
    }
    Ok(sum)
}

/// The durability of the steps of a [`STEPS_WITH`] workflow, as the workload names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Semantics {
    /// [`StepSemantics::AtLeastOncePerRetry`]: the result is checkpointed before the workflow
    /// goes on.
    AtLeastOnce,
    /// [`StepSemantics::AtMostOncePerRetry`]: the start is checkpointed before the closure
    /// runs (and the result, as for at-least-once).
    AtMostOnce,
    /// [`StepSemantics::AtLeastOnceWithTurn`]: no checkpoint of its own.
    WithTurn,
}

impl Semantics {
    /// Every kind, in the order the `steps` workload measures them.
    pub(crate) const ALL: [Semantics; 3] = [
        Semantics::AtLeastOnce,
        Semantics::AtMostOnce,
        Semantics::WithTurn,
    ];

    /// The engine's step semantics.
    pub(crate) fn engine(self) -> StepSemantics {
        match self {
            Semantics::AtLeastOnce => StepSemantics::AtLeastOncePerRetry,
            Semantics::AtMostOnce => StepSemantics::AtMostOncePerRetry,
            Semantics::WithTurn => StepSemantics::AtLeastOnceWithTurn,
        }
    }

    /// The short name used in figure names (`alo`, `amo`, `turn`).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Semantics::AtLeastOnce => "alo",
            Semantics::AtMostOnce => "amo",
            Semantics::WithTurn => "turn",
        }
    }
}

/// `n` sequential inline steps with `semantics`; returns the sum of their results
/// (`0 + 1 + .. + n-1`).
async fn steps_with(
    ctx: WorkflowContext,
    (n, semantics): (u64, Semantics),
) -> Result<u64, WorkflowError> {
    let mut sum = 0;
    for i in 0..n {
        sum += ctx
            .step("add", move |_| async move { Ok(i) })
            .semantics(semantics.engine())
            .await?;
    }
    Ok(sum)
}

/// Maps `n` items, [`MAP_CONCURRENCY`] at a time; each item runs one (at-least-once) inline
/// step returning its index. Returns how many items succeeded, failing unless every item
/// succeeded in index order.
async fn map_items(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let items: Vec<u64> = (0..n).collect();
    let batch = ctx
        .map("items", items, |child, item: u64, _index| async move {
            child.step("item", move |_| async move { Ok(item) }).await
        })
        .max_concurrency(MAP_CONCURRENCY)
        .await?;
    let results = batch.into_result().map_err(WorkflowError::Context)?;
    if results.iter().copied().ne(0..n) {
        return Err(WorkflowError::application(
            "the map's results are not the items in index order",
        ));
    }
    Ok(results.len() as u64)
}

async fn empty(_ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    Ok(())
}

async fn fan_out(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let done: Vec<()> = ctx
        .join_all((0..n).map(|i| ctx.activity::<()>(NOOP, &i)))
        .await?;
    Ok(done.len() as u64)
}

/// `k` inline steps (two journal events each), then a wait for [`GO`]; returns the sum of
/// the steps' results (`0 + 1 + .. + k-1`) plus the event's data.
async fn steps_then_wait(ctx: WorkflowContext, k: u64) -> Result<u64, WorkflowError> {
    let mut sum = 0;
    for i in 0..k {
        sum += ctx.step("op", move |_| async move { Ok(i) }).await?;
    }
    let go: u64 = ctx.wait_for_event(GO).await?;
    Ok(sum + go)
}

/// What a [`STEPS_THEN_WAIT`] workflow of `k` steps returns when raised `go`.
pub(crate) fn steps_then_wait_output(k: u64, go: u64) -> u64 {
    k * k.saturating_sub(1) / 2 + go
}

/// Waits for [`WAKE`] and returns its data.
async fn parked(ctx: WorkflowContext, _: ()) -> Result<u64, WorkflowError> {
    ctx.wait_for_event(WAKE).await
}

/// When a sleeper's timer was due and when the workflow saw it fire.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Woke {
    /// The timer's fire time (ms since the epoch): the workflow's `now()` when it went to
    /// sleep plus the sleep.
    pub(crate) fire_at_ms: i64,
    /// The workflow's `now()` after the sleep (the time the timer's delivery was recorded).
    pub(crate) now_after_ms: i64,
    /// The system time (µs since the epoch) read by an inline step right after the sleep, in
    /// the turn that delivered the timer.
    pub(crate) observed_us: i64,
}

async fn sleeper(ctx: WorkflowContext, sleep_ms: u64) -> Result<Woke, WorkflowError> {
    let fire_at = ctx.now().plus(Duration::from_millis(sleep_ms));
    ctx.sleep_until(fire_at).await?;
    let now_after: Timestamp = ctx.now();
    let observed_us: i64 = ctx
        .step("observe", |_| async {
            let since_epoch = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| ActivityError::terminal(format!("the clock is before 1970: {e}")))?;
            Ok(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
        })
        .await?;
    Ok(Woke {
        fire_at_ms: fire_at.as_millis(),
        now_after_ms: now_after.as_millis(),
        observed_us,
    })
}

/// The engine options of this process's workloads: the defaults, but for what the command line
/// set (`--warm-instances`).
static OPTIONS: std::sync::OnceLock<EngineOptions> = std::sync::OnceLock::new();

/// Sets the engine options every workload of this process runs with (once, at start-up).
pub(crate) fn configure(warm_instances: Option<usize>) {
    let mut options = EngineOptions::default();
    if let Some(n) = warm_instances {
        options.warm_instances = n;
    }
    let _ = OPTIONS.set(options);
}

/// The engine options the workloads run with.
pub(crate) fn options() -> EngineOptions {
    OPTIONS.get().cloned().unwrap_or_default()
}

/// An engine on `store` with every workload's workflows and the no-op activity registered,
/// the DAG interpreter (`duraflow.dag`, with no registered template: inline templates whose
/// steps run [`DAG_NOOP`]), with [`options`] and the system clock.
pub(crate) async fn start_engine(store: Arc<dyn Store>) -> Result<Engine> {
    start_engine_with(store, Arc::new(duraflow::dag::Registry::new([DAG_NOOP]))).await
}

/// [`start_engine`] with the DAG templates of `registry` (for runs that name a template).
pub(crate) async fn start_engine_with(
    store: Arc<dyn Store>,
    registry: Arc<duraflow::dag::Registry>,
) -> Result<Engine> {
    let engine = duraflow::dag::run::register(Engine::builder(), registry)
        .shared_store(store)
        .workflow(THREE_ACTIVITIES, three_activities)
        .workflow(SEQUENTIAL_ACTIVITIES, sequential_activities)
        .workflow(SEQUENTIAL_STEPS, sequential_steps)
        .workflow(EMPTY, empty)
        .workflow(FAN_OUT, fan_out)
        .workflow(SLEEPER, sleeper)
        .workflow(STEPS_THEN_WAIT, steps_then_wait)
        .workflow(PARKED, parked)
        .workflow(STEPS_WITH, steps_with)
        .workflow(MAP_ITEMS, map_items)
        .activity(NOOP, noop)
        .activity(DAG_NOOP, dag_noop)
        .options(options())
        .start()
        .await?;
    Ok(engine)
}

/// The engine options every workload runs with, for the results.
pub(crate) fn settings() -> Figures {
    let o = options();
    let mut s = Figures::new();
    s.int("workflow_concurrency", o.workflow_concurrency as u64)
        .int("activity_concurrency", o.activity_concurrency as u64)
        .int("fetch_batch", o.fetch_batch as u64)
        .int("commit_batch", o.commit_batch as u64)
        .int("poll_interval_ms", o.poll_interval.as_millis() as u64)
        .int("warm_instances", o.warm_instances as u64);
    s
}

/// Starts `workflow` once per `(id, input)`, [`START_CONCURRENCY`] starts in flight at once.
pub(crate) async fn start_all<I: Serialize + Sync>(
    client: &Client,
    workflow: &str,
    runs: &[(String, I)],
) -> Result<()> {
    futures::stream::iter(
        runs.iter()
            .map(|(id, input)| async move { client.start(workflow, input).id(id.clone()).await }),
    )
    .buffer_unordered(START_CONCURRENCY)
    .try_for_each(|_| async { Ok(()) })
    .await?;
    Ok(())
}

/// Finished instances, and how many status reads it took to see them finish.
pub(crate) struct Finished {
    /// The final state of each instance, in the order asked for.
    pub(crate) instances: Vec<InstanceInfo>,
    /// Status reads made (each is one store read).
    pub(crate) reads: u64,
    /// When the last one was seen finished.
    pub(crate) at: Instant,
}

/// Waits for every instance in `ids` to finish, one after the other: one waiter at a time, so
/// the waiting adds about one status read per instance instead of a read by every waiter at
/// every wakeup. Fails if any did not complete.
pub(crate) async fn wait_all(
    store: &dyn Store,
    client: &Client,
    ids: &[String],
) -> Result<Finished> {
    let started = Instant::now();
    let mut instances = Vec::with_capacity(ids.len());
    let mut reads = 0u64;
    for id in ids {
        loop {
            let notified = store.notifier().map(|n| n.instances.notified());
            tokio::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                n.enable();
            }
            reads += 1;
            let info = client.status(id).await?;
            if info.status.is_terminal() {
                if info.status != InstanceStatus::Completed {
                    return Err(format!(
                        "workflow {id} ended {:?}: {:?}",
                        info.status, info.failure
                    )
                    .into());
                }
                instances.push(info);
                break;
            }
            if started.elapsed() > WAIT_LIMIT {
                return Err(format!("workflow {id} had not finished after {WAIT_LIMIT:?}").into());
            }
            let nap = Duration::from_millis(50);
            match notified.as_mut().as_pin_mut() {
                Some(n) => {
                    let _ = tokio::time::timeout(nap, n).await;
                }
                None => tokio::time::sleep(nap).await,
            }
        }
    }
    Ok(Finished {
        instances,
        reads,
        at: Instant::now(),
    })
}

/// The output of a completed instance.
pub(crate) fn output<T: DeserializeOwned>(info: &InstanceInfo) -> Result<T> {
    let payload = info
        .output
        .as_ref()
        .ok_or_else(|| format!("workflow {} completed without an output", info.id))?;
    Ok(payload.decode::<T>()?)
}
