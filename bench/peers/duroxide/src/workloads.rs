//! The four workloads, as close to duraflow-bench's definitions as duroxide's API allows, and
//! the orchestrations and the activity they run.
//!
//! Differences from duraflow-bench that follow from duroxide's API:
//!
//! - Orchestration and activity inputs and outputs are strings (duraflow's are JSON values);
//!   the inputs carry the same numbers as text.
//! - Waiting uses `Client::wait_for_orchestration`, which polls the instance's status with a
//!   backoff from 5 ms to 100 ms; duraflow-bench waits on the store's in-process notifications.
//! - duroxide has no inline steps (its `new_guid` and `utc_now` are built-in activities), so
//!   `sequential` has no step figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use duroxide::runtime::registry::ActivityRegistry;
use duroxide::runtime::{Runtime, RuntimeOptions};
use duroxide::{providers::Provider, OrchestrationStatus};
use duroxide::{ActivityContext, Client, OrchestrationContext, OrchestrationRegistry};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::report::{self, num, Figures};
use crate::store::{PeerStore, Synchronous};
use crate::{system, warnings, Cli, Result, Workload};

/// Orchestration: three sequential no-op activities.
const THREE_ACTIVITIES: &str = "three-activities";
/// Orchestration: `n` sequential no-op activities.
const SEQUENTIAL_ACTIVITIES: &str = "sequential-activities";
/// Orchestration: returns at once.
const EMPTY: &str = "empty";
/// Orchestration: `n` no-op activities at once, joined.
const FAN_OUT: &str = "fan-out";
/// Activity: does nothing.
const NOOP: &str = "noop";

/// How many client starts are in flight at once when a workload starts many orchestrations
/// (duraflow-bench's `START_CONCURRENCY`).
const START_CONCURRENCY: usize = 64;

/// How long any wait for orchestrations may take before the workload fails. duraflow-bench
/// allows 600 s; duroxide's fan-out of 10,000 activities takes about that long on a 2-core
/// machine, so the peer allows 30 minutes.
const WAIT_LIMIT: Duration = Duration::from_secs(1800);

/// How the runtime and the store are set up for every run.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    synchronous: Synchronous,
    runtime: RuntimeOptions,
    overridden: Vec<&'static str>,
}

impl Options {
    /// duroxide's `RuntimeOptions::default()`, with the overrides of the command line.
    pub(crate) fn from_cli(cli: &Cli) -> Options {
        let mut runtime = RuntimeOptions::default();
        let mut overridden = Vec::new();
        if let Some(k) = cli.orchestration_concurrency {
            runtime.orchestration_concurrency = k;
            overridden.push("orchestration_concurrency");
        }
        if let Some(k) = cli.worker_concurrency {
            runtime.worker_concurrency = k;
            overridden.push("worker_concurrency");
        }
        if let Some(ms) = cli.min_poll_ms {
            runtime.dispatcher_min_poll_interval = Duration::from_millis(ms);
            overridden.push("dispatcher_min_poll_interval");
        }
        Options {
            synchronous: cli.synchronous,
            runtime,
            overridden,
        }
    }

    /// The runtime options, for the results.
    fn settings(&self) -> Figures {
        let o = &self.runtime;
        let mut s = Figures::new();
        s.insert(
            "runtime_options".into(),
            if self.overridden.is_empty() {
                "RuntimeOptions::default()".to_owned()
            } else {
                format!(
                    "RuntimeOptions::default() but {}",
                    self.overridden.join(", ")
                )
            }
            .into(),
        );
        s.insert(
            "orchestration_concurrency".into(),
            o.orchestration_concurrency.into(),
        );
        s.insert("worker_concurrency".into(), o.worker_concurrency.into());
        s.insert(
            "dispatcher_min_poll_interval_ms".into(),
            millis(o.dispatcher_min_poll_interval).into(),
        );
        s.insert(
            "dispatcher_long_poll_timeout_ms".into(),
            millis(o.dispatcher_long_poll_timeout).into(),
        );
        s.insert(
            "long_poll_note".into(),
            "the SQLite provider ignores the long-poll timeout: an idle dispatcher polls the \
             store every dispatcher_min_poll_interval"
                .into(),
        );
        s.insert(
            "orchestrator_lock_timeout_ms".into(),
            millis(o.orchestrator_lock_timeout).into(),
        );
        s.insert(
            "worker_lock_timeout_ms".into(),
            millis(o.worker_lock_timeout).into(),
        );
        s.insert(
            "client_wait".into(),
            "Client::wait_for_orchestration: status reads backing off from 5 ms to 100 ms".into(),
        );
        s
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fresh store, a runtime on it and a client.
struct Session {
    store: PeerStore,
    runtime: Arc<Runtime>,
    client: Client,
}

impl Session {
    /// Creates the store, reads its settings and starts a runtime with every orchestration of
    /// the workloads and the no-op activity registered.
    async fn start(options: &Options) -> Result<(Session, Figures)> {
        let store = PeerStore::create(options.synchronous).await?;
        let settings = store.settings().await?;
        let activities = ActivityRegistry::builder()
            .register(NOOP, |_ctx: ActivityContext, _input: String| async move {
                Ok(String::new())
            })
            .build();
        let orchestrations = OrchestrationRegistry::builder()
            .register(THREE_ACTIVITIES, three_activities)
            .register(SEQUENTIAL_ACTIVITIES, sequential_activities)
            .register(
                EMPTY,
                |_ctx: OrchestrationContext, _input: String| async move { Ok(String::new()) },
            )
            .register(FAN_OUT, fan_out)
            .build();
        let provider: Arc<dyn Provider> = store.provider.clone();
        let runtime = Runtime::start_with_options(
            provider.clone(),
            activities,
            orchestrations,
            options.runtime.clone(),
        )
        .await;
        let client = Client::new(provider);
        Ok((
            Session {
                store,
                runtime,
                client,
            },
            settings,
        ))
    }

    /// Shuts the runtime down, checks the store's durability held, and removes the file.
    async fn stop(self, settings: &mut Figures) -> Result<()> {
        let Session {
            store,
            runtime,
            client,
        } = self;
        drop(client);
        runtime.shutdown(None).await;
        store.check_after(settings).await
    }

    /// Waits for `id` to complete and returns its output; fails if it failed or did not
    /// finish before `deadline`.
    async fn wait(&self, id: &str, deadline: Instant) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = self
            .client
            .wait_for_orchestration(id, left)
            .await
            .map_err(|e| format!("waiting for orchestration {id}: {e}"))?;
        match status {
            OrchestrationStatus::Completed { output, .. } => Ok(output),
            OrchestrationStatus::Failed { details, .. } => {
                Err(format!("orchestration {id} failed: {}", details.display_message()).into())
            }
            other => Err(format!("orchestration {id} ended {other:?}").into()),
        }
    }
}

async fn three_activities(ctx: OrchestrationContext, _input: String) -> Result<String, String> {
    for i in 0..3u64 {
        ctx.schedule_activity(NOOP, i.to_string()).await?;
    }
    Ok(String::new())
}

async fn sequential_activities(ctx: OrchestrationContext, input: String) -> Result<String, String> {
    let n: u64 = input
        .parse()
        .map_err(|e| format!("the input {input:?} is not a count: {e}"))?;
    for i in 0..n {
        ctx.schedule_activity(NOOP, i.to_string()).await?;
    }
    Ok(n.to_string())
}

async fn fan_out(ctx: OrchestrationContext, input: String) -> Result<String, String> {
    let n: u64 = input
        .parse()
        .map_err(|e| format!("the input {input:?} is not a count: {e}"))?;
    let scheduled: Vec<_> = (0..n)
        .map(|i| ctx.schedule_activity(NOOP, i.to_string()))
        .collect();
    let done = ctx.join(scheduled).await;
    let mut joined = 0u64;
    for result in done {
        result?;
        joined += 1;
    }
    Ok(joined.to_string())
}

/// Runs `workload` of size `n` on a fresh store and runtime and returns its settings and
/// figures.
pub(crate) async fn run(
    workload: Workload,
    n: u64,
    options: &Options,
) -> Result<(Figures, Figures)> {
    let (session, mut settings) = Session::start(options).await?;
    settings.extend(options.settings());
    settings.extend(workload_settings(workload));
    let (warnings_before, locked_before) = warnings::counts();
    let figures = match workload {
        Workload::Throughput => throughput(&session, n).await,
        Workload::Sequential => sequential(&session, n).await,
        Workload::StartLatency => start_latency(&session, n).await,
        Workload::FanOut => fan_out_run(&session, n).await,
        Workload::All => Err("`all` is not a single workload".into()),
    };
    let (warnings_after, locked_after) = warnings::counts();
    let stopped = session.stop(&mut settings).await;
    let mut figures = figures?;
    stopped?;
    let (warned, locked) = (
        warnings_after - warnings_before,
        locked_after - locked_before,
    );
    figures.insert("runtime_warnings".into(), warned.into());
    figures.insert("database_locked_retries".into(), locked.into());
    figures.insert(
        "warnings_note".into(),
        "warnings logged during the workload (not printed; RUST_LOG=warn shows them); \
         database_locked_retries: the ones saying \"database is locked\": a fetch that \
         failed so is retried after 200 ms, doubling up to 3 s; a failed commit of a turn \
         (ack) after 10 ms, doubling"
            .into(),
    );
    if warned > 0 {
        eprintln!(
            "duroxide-peer: duroxide logged {warned} warnings during the run, {locked} of them \
             \"database is locked\" retries (RUST_LOG=warn prints them)"
        );
    }
    Ok((settings, figures))
}

/// The workload's own parameters, for the results.
fn workload_settings(workload: Workload) -> Figures {
    let mut s = Figures::new();
    match workload {
        Workload::Throughput => {
            s.insert("activities_per_workflow".into(), 3.into());
            s.insert("start_concurrency".into(), START_CONCURRENCY.into());
            s.insert("commits_counted".into(), false.into());
        }
        Workload::Sequential => {
            s.insert(
                "unit".into(),
                "n activities in one orchestration (duroxide has no inline steps)".into(),
            );
        }
        Workload::StartLatency => {
            s.insert(
                "unit".into(),
                "n starts of an empty orchestration, each waited for before the next".into(),
            );
        }
        Workload::FanOut => {
            s.insert(
                "unit".into(),
                "one orchestration joining n no-op activities".into(),
            );
        }
        Workload::All => {}
    }
    s
}

/// `throughput`: `n` orchestrations of 3 activities started [`START_CONCURRENCY`] at a time by
/// id, then waited for one after the other; timed from the first start to the last completion
/// seen.
async fn throughput(session: &Session, n: u64) -> Result<Figures> {
    let ids: Vec<String> = (0..n).map(|i| format!("tp-{i:07}")).collect();
    let client = &session.client;
    let started = Instant::now();
    futures::stream::iter(ids.iter().map(|id| async move {
        client
            .start_orchestration(id.as_str(), THREE_ACTIVITIES, "")
            .await
            .map_err(|e| format!("starting orchestration {id}: {e}"))
    }))
    .buffer_unordered(START_CONCURRENCY)
    .try_for_each(|()| async { Ok(()) })
    .await?;
    let start_phase = started.elapsed();
    let deadline = started + WAIT_LIMIT;
    for id in &ids {
        session.wait(id, deadline).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let nf = n as f64;
    let mut f = Figures::new();
    num(&mut f, "workflows_per_s", nf / seconds, 1);
    num(&mut f, "activities_per_s", 3.0 * nf / seconds, 1);
    num(&mut f, "elapsed_s", seconds, 3);
    num(&mut f, "start_phase_s", start_phase.as_secs_f64(), 3);
    f.insert("commits_per_workflow".into(), Value::Null);
    f.insert("commits_note".into(), "not counted for duroxide".into());
    Ok(f)
}

/// `sequential`: one orchestration of `n` sequential no-op activities.
async fn sequential(session: &Session, n: u64) -> Result<Figures> {
    // As duraflow-bench's `sequential` does: one short orchestration first, untimed, so that a
    // new runtime's one-time costs are not divided into the figure.
    let warmup = sequential_activities_run(session, "seq-warmup-activities", WARMUP_OPS).await?;
    let elapsed = sequential_activities_run(session, "seq-activities", n).await?;
    let ms = elapsed.as_secs_f64() * 1000.0;
    let mut f = Figures::new();
    num(&mut f, "activity_ms_per_op", ms / n as f64, 3);
    f.insert("step_ms_per_op".into(), Value::Null);
    num(&mut f, "activities_total_ms", ms, 1);
    f.insert("steps_total_ms".into(), Value::Null);
    num(
        &mut f,
        "warmup_activities_ms",
        warmup.as_secs_f64() * 1000.0,
        2,
    );
    f.insert(
        "step_note".into(),
        "duroxide has no inline steps (ctx.new_guid and ctx.utc_now are built-in activities)"
            .into(),
    );
    Ok(f)
}

/// How many activities the warm-up orchestration of `sequential` runs (duraflow-bench's
/// `WARMUP_OPS`).
const WARMUP_OPS: u64 = 2;

/// Runs an orchestration of `n` sequential activities under `id` and returns its time, checked.
async fn sequential_activities_run(session: &Session, id: &str, n: u64) -> Result<Duration> {
    let started = Instant::now();
    session
        .client
        .start_orchestration(id, SEQUENTIAL_ACTIVITIES, n.to_string())
        .await
        .map_err(|e| format!("starting orchestration {id}: {e}"))?;
    let output = session.wait(id, started + WAIT_LIMIT).await?;
    let elapsed = started.elapsed();
    if output != n.to_string() {
        return Err(format!("{SEQUENTIAL_ACTIVITIES} returned {output:?}, expected {n}").into());
    }
    Ok(elapsed)
}

/// `start-latency`: `n` times in a row, start an empty orchestration and wait for its result.
async fn start_latency(session: &Session, n: u64) -> Result<Figures> {
    let mut latencies = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let started = Instant::now();
    let deadline = started + WAIT_LIMIT;
    for i in 0..n {
        let id = format!("sl-{i:07}");
        let t = Instant::now();
        session
            .client
            .start_orchestration(id.as_str(), EMPTY, "")
            .await
            .map_err(|e| format!("starting orchestration {id}: {e}"))?;
        session.wait(&id, deadline).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(report::latency_figures(latencies, started.elapsed()))
}

/// `fan-out`: one orchestration joining `n` no-op activities; the total time and the process's
/// peak resident memory during the run, measured as duraflow-bench does.
async fn fan_out_run(session: &Session, n: u64) -> Result<Figures> {
    let reset = system::reset_peak_rss();
    let rss_before = system::proc_status_kb("VmRSS");
    let started = Instant::now();
    session
        .client
        .start_orchestration("fan-out", FAN_OUT, n.to_string())
        .await
        .map_err(|e| format!("starting orchestration fan-out: {e}"))?;
    let output = session.wait("fan-out", started + WAIT_LIMIT).await?;
    let elapsed = started.elapsed();
    let peak = system::proc_status_kb("VmHWM");
    if output != n.to_string() {
        return Err(format!("the fan-out joined {output} activities, expected {n}").into());
    }
    let seconds = elapsed.as_secs_f64();
    let mib = |kb: u64| kb as f64 / 1024.0;
    let mut f = Figures::new();
    num(&mut f, "total_s", seconds, 3);
    num(&mut f, "activities_per_s", n as f64 / seconds, 1);
    match peak {
        Some(kb) => num(&mut f, "peak_rss_mib", mib(kb), 1),
        None => {
            f.insert("peak_rss_mib".into(), Value::Null);
        }
    }
    match rss_before {
        Some(kb) => num(&mut f, "rss_before_mib", mib(kb), 1),
        None => {
            f.insert("rss_before_mib".into(), Value::Null);
        }
    }
    match (peak, rss_before) {
        (Some(p), Some(b)) => num(&mut f, "peak_rss_growth_mib", mib(p.saturating_sub(b)), 1),
        _ => {
            f.insert("peak_rss_growth_mib".into(), Value::Null);
        }
    }
    f.insert("peak_reset_before_run".into(), reset.into());
    if !reset {
        f.insert(
            "peak_note".into(),
            "VmHWM could not be reset: the peak is since the process started".into(),
        );
    }
    Ok(f)
}
