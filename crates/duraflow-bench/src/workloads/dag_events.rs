//! `dag-events`: DAG lifecycle events delivered to a subscriber. Runs of a fan-out template
//! (a first step, `WIDTH` parallel no-op steps, a last step) publish at least n events while a
//! subscriber follows them live; then a second subscriber reads the whole feed from the start,
//! decoding each event and acknowledging each batch (the catch-up rate: what a subscriber
//! sustains when events are waiting).

use std::sync::Arc;
use std::time::{Duration, Instant};

use duraflow::dag::run::{self, dag_events_with, DagStart, LifecycleEvent};
use duraflow::dag::{Registry, Step, Template};
use duraflow::prelude::*;
use duraflow::SubscribeOptions;
use serde_json::Value;

use crate::engine::{self, start_all, wait_all};
use crate::report::Figures;
use crate::store::StoreEnv;
use crate::Result;

/// Parallel steps between the first and the last step of each run.
pub(crate) const WIDTH: usize = 48;

/// The most events a subscriber reads (and acknowledges) at once.
pub(crate) const BATCH: usize = 1_000;

/// Events one run publishes: three per step (enqueued, started, completed) and the run's
/// start and completion.
pub(crate) const PER_RUN: u64 = (WIDTH as u64 + 2) * 3 + 2;

/// The longest the workload waits for the events.
const LIMIT: Duration = Duration::from_secs(1_800);

const HANDLER: &str = "bench.noop";

fn template() -> Template {
    let mut t = Template::builder("bench", "fan", "1").step(Step::new("first", HANDLER));
    let middle: Vec<String> = (0..WIDTH).map(|i| format!("w{i}")).collect();
    for name in &middle {
        t = t.step(Step::new(name, HANDLER).depends_on(["first"]));
    }
    t.step(Step::new("last", HANDLER).depends_on(middle))
        .build()
}

async fn noop(_ctx: ActivityContext, _input: Value) -> std::result::Result<(), ActivityError> {
    Ok(())
}

/// Reads `subscriber`'s events until `total` have arrived, acknowledging each batch; returns
/// when the last arrived and how many were run completions.
async fn follow(client: Client, subscriber: &str, total: u64) -> Result<(Instant, u64)> {
    let options = SubscribeOptions {
        batch: BATCH,
        ..SubscribeOptions::default()
    };
    let mut events = dag_events_with(&client, subscriber, options).await?;
    let (mut seen, mut runs) = (0u64, 0u64);
    while seen < total {
        let batch = tokio::time::timeout(LIMIT, events.next_batch())
            .await
            .map_err(|_| format!("{subscriber} saw {seen} of {total} events in {LIMIT:?}"))??;
        seen += batch.len() as u64;
        runs += batch
            .iter()
            .filter(|(_, e)| matches!(e, LifecycleEvent::RunCompleted(_)))
            .count() as u64;
        if let Some((position, _)) = batch.last() {
            events.ack(*position).await?;
        }
    }
    Ok((Instant::now(), runs))
}

/// Runs the workload with at least `n` events.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let runs = n.div_ceil(PER_RUN).max(1);
    let total = runs * PER_RUN;
    let opened = env.open().await?;
    let store = opened.store.clone();
    let mut registry = Registry::new([HANDLER]);
    registry.register(template())?;
    let builder = Engine::builder()
        .shared_store(store.clone())
        .options(engine::options());
    let engine = run::register(builder, Arc::new(registry))
        .activity(HANDLER, noop)
        .start()
        .await?;
    let client = engine.client();

    let live = tokio::spawn(follow(client.clone(), "bench-live", total));
    let started = Instant::now();
    let starts: Vec<(String, DagStart)> = (0..runs)
        .map(|i| {
            let start = DagStart::named("bench", "fan", Value::Null);
            (format!("dag-events-{i}"), start)
        })
        .collect();
    start_all(&client, run::WORKFLOW_NAME, &starts).await?;
    let ids: Vec<String> = starts.into_iter().map(|(id, _)| id).collect();
    let finished = wait_all(&*store, &client, &ids).await?;
    let produced = finished.at.duration_since(started);
    let (live_done, live_runs) = live.await.map_err(|e| format!("live subscriber: {e}"))??;
    let live_s = live_done.duration_since(started).as_secs_f64();
    let lag = live_done.saturating_duration_since(finished.at);

    let catch_up_started = Instant::now();
    let (caught_up, catch_up_runs) = follow(client.clone(), "bench-catch-up", total).await?;
    let catch_up = caught_up.duration_since(catch_up_started).as_secs_f64();

    drop(client);
    drop(store);
    engine.shutdown().await;
    opened.close().await?;
    for (who, seen) in [("live", live_runs), ("catch-up", catch_up_runs)] {
        if seen != runs {
            return Err(format!("the {who} subscriber saw {seen} of {runs} runs complete").into());
        }
    }
    let mut f = Figures::new();
    f.int("dag_runs", runs)
        .int("events", total)
        .num("produce_s", produced.as_secs_f64(), 3)
        .num(
            "produced_events_per_s",
            total as f64 / produced.as_secs_f64(),
            0,
        )
        .num("live_delivered_events_per_s", total as f64 / live_s, 0)
        .num("live_lag_after_last_run_ms", lag.as_secs_f64() * 1e3, 1)
        .num("catch_up_s", catch_up, 3)
        .num("catch_up_events_per_s", total as f64 / catch_up, 0);
    Ok(f)
}
