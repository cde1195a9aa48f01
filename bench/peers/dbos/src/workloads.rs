//! The four workloads, as close to duraflow-bench's definitions as DBOS's API allows, and the
//! workflows and the step they run.
//!
//! Differences from duraflow-bench that follow from DBOS's model:
//!
//! - DBOS has no activities dispatched to workers: a step runs inside the workflow's own task,
//!   and its outcome is written to the system database (`operation_outputs`) before the
//!   workflow goes on. So a DBOS step is both its unit of work and its checkpoint. `sequential`
//!   runs one workflow of N steps and reports its time per step under both duraflow figures,
//!   `activity_ms_per_op` and `step_ms_per_op`, so that it is set beside duraflow's activities
//!   and beside its durable inline steps.
//! - A workflow started with `WorkflowRef::start` runs in this process, and its handle awaits
//!   the task directly; duraflow-bench waits on the store's in-process notifications. Neither
//!   side polls.
//! - After the timed part, the peer counts the step outcomes DBOS recorded in
//!   `operation_outputs` (`recorded_steps`) and fails the run unless every step is there.
//! - `fan-out` builds N steps and joins them (`futures::future::join_all`); DBOS documents that
//!   a join over steps built in order is sound, and the steps' bodies run concurrently in the
//!   workflow's task, bounded by the connection pool.

use std::time::{Duration, Instant};

use dbos::{Config, StartOptions, WorkflowHandle, WorkflowRef, DBOS};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::db::RunDatabase;
use crate::report::{self, num, Figures};
use crate::{system, Cli, Result, StartStyle, Workload};

/// Workflow: three sequential no-op steps.
const THREE_STEPS: &str = "three_steps";
/// Workflow: `n` sequential steps, each returning its index; returns their sum.
const SEQUENTIAL_STEPS: &str = "sequential_steps";
/// Workflow: returns at once.
const EMPTY: &str = "empty";
/// Workflow: `n` no-op steps at once, joined.
const FAN_OUT: &str = "fan_out";

/// The application's name in DBOS's rows.
const APP_NAME: &str = "duraflow-bench-peer";

/// How many starts are in flight at once in the `concurrent` style (duraflow-bench's
/// `START_CONCURRENCY`).
const START_CONCURRENCY: usize = 64;

/// How long a workload may take before it fails (duraflow-bench allows 600 s per wait; the
/// peer bounds the whole workload instead).
const WAIT_LIMIT: Duration = Duration::from_secs(1800);

/// How DBOS is configured for every run.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pg_url: String,
    starts: StartStyle,
    max_connections: Option<u32>,
}

impl Options {
    /// The options of the command line.
    pub(crate) fn from_cli(cli: &Cli) -> Options {
        Options {
            pg_url: cli.pg_url.clone(),
            starts: cli.starts,
            max_connections: cli.max_connections,
        }
    }

    /// DBOS's configuration for the database at `url`: `Config::new`'s defaults, with the
    /// application version DBOS requires and the command line's overrides.
    fn config(&self, url: &str) -> Config {
        let mut config = Config {
            app_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            ..Config::new(APP_NAME, url)
        };
        if let Some(max) = self.max_connections {
            config.max_connections = max;
        }
        config
    }

    /// DBOS's configuration, for the results.
    fn settings(&self) -> Figures {
        let c = self.config("");
        let mut s = Figures::new();
        s.insert(
            "dbos_config".into(),
            if self.max_connections.is_some() {
                "Config::new defaults but max_connections"
            } else {
                "Config::new defaults"
            }
            .into(),
        );
        s.insert("max_connections".into(), c.max_connections.into());
        s.insert("schema".into(), c.schema.clone().into());
        s.insert("use_listen_notify".into(), c.use_listen_notify.into());
        s.insert(
            "polling_concurrency".into(),
            c.polling_concurrency
                .map_or_else(|| "half the pool, at least 1".into(), Value::from),
        );
        s.insert(
            "outcome_poll_interval_ms".into(),
            c.outcome_poll_interval.map_or(1000, millis).into(),
        );
        s.insert(
            "notification_coalesce_ms".into(),
            c.notification_coalesce.map_or(10, millis).into(),
        );
        s.insert("serializer".into(), c.serializer.name().to_owned().into());
        s.insert(
            "step_durability".into(),
            "each step's outcome is written to operation_outputs before the workflow goes on \
             (PostgreSQL's synchronous_commit applies)"
                .into(),
        );
        s.insert(
            "client_wait".into(),
            "WorkflowHandle::result on the handle of a start in this process: awaits the \
             workflow's task"
                .into(),
        );
        s
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fresh system database, a launched DBOS instance on it and the workloads' workflows.
struct Session {
    db: RunDatabase,
    schema: String,
    dbos: DBOS,
    three_steps: WorkflowRef<(), ()>,
    sequential_steps: WorkflowRef<u64, u64>,
    empty: WorkflowRef<(), ()>,
    fan_out: WorkflowRef<u64, u64>,
}

impl Session {
    /// Creates the database, registers the workflows and launches DBOS on it (which migrates
    /// the database).
    async fn start(options: &Options) -> Result<Session> {
        let db = RunDatabase::create(&options.pg_url).await?;
        match Self::launch(options, &db).await {
            Ok((dbos, (three_steps, sequential_steps, empty, fan_out))) => Ok(Session {
                schema: dbos.config().schema.clone(),
                db,
                dbos,
                three_steps,
                sequential_steps,
                empty,
                fan_out,
            }),
            Err(e) => {
                if let Err(dropping) = db.drop_database().await {
                    eprintln!("dbos-peer: {dropping}");
                }
                Err(e)
            }
        }
    }

    #[allow(
        clippy::type_complexity,
        reason = "one tuple of the four references, once"
    )]
    async fn launch(
        options: &Options,
        db: &RunDatabase,
    ) -> Result<(
        DBOS,
        (
            WorkflowRef<(), ()>,
            WorkflowRef<u64, u64>,
            WorkflowRef<(), ()>,
            WorkflowRef<u64, u64>,
        ),
    )> {
        let dbos = DBOS::new(options.config(&db.url));
        let refs = (
            dbos.register_workflow(THREE_STEPS, three_steps)?,
            dbos.register_workflow(SEQUENTIAL_STEPS, sequential_steps)?,
            dbos.register_workflow(EMPTY, |(): ()| async { dbos::Result::Ok(()) })?,
            dbos.register_workflow(FAN_OUT, fan_out)?,
        );
        dbos.launch()
            .await
            .map_err(|e| format!("launching DBOS on {}: {e}", db.url))?;
        Ok((dbos, refs))
    }

    /// Checks that DBOS recorded `expected` outcomes of the step `step`, and adds the count to
    /// `figures`.
    async fn check_recorded(&self, step: &str, expected: u64, figures: &mut Figures) -> Result<()> {
        let recorded = self.db.recorded_steps(&self.schema, step).await?;
        figures.insert("recorded_steps".into(), recorded.into());
        if recorded != expected {
            return Err(format!(
                "DBOS recorded {recorded} outcomes of the step {step}, expected {expected}"
            )
            .into());
        }
        Ok(())
    }

    /// Shuts DBOS down and drops the database.
    async fn stop(self) -> Result<()> {
        let Session {
            db,
            schema: _,
            dbos,
            three_steps,
            sequential_steps,
            empty,
            fan_out,
        } = self;
        dbos.shutdown().await;
        drop((three_steps, sequential_steps, empty, fan_out, dbos));
        db.drop_database().await
    }
}

/// A no-op step body.
async fn noop() -> dbos::Result<()> {
    Ok(())
}

async fn three_steps((): ()) -> dbos::Result<()> {
    for _ in 0..3 {
        dbos::step("noop", noop).await?;
    }
    Ok(())
}

async fn sequential_steps(n: u64) -> dbos::Result<u64> {
    let mut sum = 0;
    for i in 0..n {
        sum += dbos::step("index", move || async move { dbos::Result::Ok(i) }).await?;
    }
    Ok(sum)
}

async fn fan_out(n: u64) -> dbos::Result<u64> {
    let steps: Vec<_> = (0..n).map(|_| dbos::step("noop", noop)).collect();
    let mut joined = 0;
    for result in futures::future::join_all(steps).await {
        result?;
        joined += 1;
    }
    Ok(joined)
}

/// Starts `workflow` with `input` under the id `id`.
async fn start<P, R>(workflow: &WorkflowRef<P, R>, input: P, id: &str) -> Result<WorkflowHandle<R>>
where
    P: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let options = StartOptions {
        workflow_id: Some(id),
        ..StartOptions::default()
    };
    workflow
        .start_with(input, options)
        .await
        .map_err(|e| format!("starting workflow {id}: {e}").into())
}

/// Waits for the workflow of `handle` and returns its output.
async fn result<R>(handle: WorkflowHandle<R>) -> Result<R>
where
    R: serde::de::DeserializeOwned + Send,
{
    let id = handle.workflow_id().to_owned();
    handle
        .result()
        .await
        .map_err(|e| format!("waiting for workflow {id}: {e}").into())
}

/// Runs `workload` of size `n` on a fresh database and DBOS instance and returns its settings
/// and figures.
pub(crate) async fn run(
    workload: Workload,
    n: u64,
    options: &Options,
) -> Result<(Figures, Figures)> {
    let session = Session::start(options).await?;
    let mut settings = session.db.settings();
    settings.extend(options.settings());
    settings.extend(workload_settings(workload, options.starts));
    let work = async {
        match workload {
            Workload::Throughput => throughput(&session, n, options.starts).await,
            Workload::Sequential => sequential(&session, n).await,
            Workload::StartLatency => start_latency(&session, n).await,
            Workload::FanOut => fan_out_run(&session, n).await,
            Workload::All => Err("`all` is not a single workload".into()),
        }
    };
    let figures = match tokio::time::timeout(WAIT_LIMIT, work).await {
        Ok(figures) => figures,
        Err(_) => Err(format!("the workload took over {} s", WAIT_LIMIT.as_secs()).into()),
    };
    let stopped = session.stop().await;
    let figures = figures?;
    stopped?;
    Ok((settings, figures))
}

/// The workload's own parameters, for the results.
fn workload_settings(workload: Workload, starts: StartStyle) -> Figures {
    let mut s = Figures::new();
    match workload {
        Workload::Throughput => {
            s.insert("activities_per_workflow".into(), 3.into());
            s.insert("starts".into(), starts.name().into());
            if starts == StartStyle::Concurrent {
                s.insert("start_concurrency".into(), START_CONCURRENCY.into());
            }
            s.insert("commits_counted".into(), false.into());
        }
        Workload::Sequential => {
            s.insert(
                "unit".into(),
                "n sequential steps in one workflow (a DBOS step is its only unit of work)".into(),
            );
        }
        Workload::StartLatency => {
            s.insert(
                "unit".into(),
                "n starts of an empty workflow, each waited for before the next".into(),
            );
        }
        Workload::FanOut => {
            s.insert(
                "unit".into(),
                "one workflow joining n no-op steps (join_all)".into(),
            );
        }
        Workload::All => {}
    }
    s
}

/// `throughput`: `n` workflows of 3 steps, started as `starts` says, then waited for one after
/// the other; timed from the first start to the last completion seen.
async fn throughput(session: &Session, n: u64, starts: StartStyle) -> Result<Figures> {
    let ids: Vec<String> = (0..n).map(|i| format!("tp-{i:07}")).collect();
    let workflow = &session.three_steps;
    let mut start_ms = Vec::new();
    let started = Instant::now();
    let handles: Vec<WorkflowHandle<()>> = match starts {
        StartStyle::Concurrent => {
            futures::stream::iter(ids.iter().map(|id| start(workflow, (), id)))
                .buffered(START_CONCURRENCY)
                .try_collect()
                .await?
        }
        StartStyle::Loop => {
            let mut handles = Vec::with_capacity(ids.len());
            start_ms.reserve(ids.len());
            for id in &ids {
                let one = Instant::now();
                handles.push(start(workflow, (), id).await?);
                start_ms.push(one.elapsed().as_secs_f64() * 1e3);
            }
            handles
        }
    };
    let start_phase = started.elapsed();
    for handle in handles {
        result(handle).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let nf = n as f64;
    let mut f = Figures::new();
    num(&mut f, "workflows_per_s", nf / seconds, 1);
    num(&mut f, "activities_per_s", 3.0 * nf / seconds, 1);
    num(&mut f, "elapsed_s", seconds, 3);
    num(&mut f, "start_phase_s", start_phase.as_secs_f64(), 3);
    if !start_ms.is_empty() {
        let mean = start_ms.iter().sum::<f64>() / start_ms.len() as f64;
        start_ms.sort_by(f64::total_cmp);
        num(&mut f, "start_ms_mean", mean, 3);
        num(
            &mut f,
            "start_ms_p50",
            report::percentile(&start_ms, 50.0),
            3,
        );
        num(
            &mut f,
            "start_ms_p99",
            report::percentile(&start_ms, 99.0),
            3,
        );
    }
    session.check_recorded("noop", 3 * n, &mut f).await?;
    f.insert("commits_per_workflow".into(), Value::Null);
    f.insert("commits_note".into(), "not counted for DBOS".into());
    f.insert(
        "activities_note".into(),
        "activities_per_s counts DBOS steps (3 per workflow)".into(),
    );
    Ok(f)
}

/// `sequential`: one workflow of `n` sequential steps, each checkpointed before the next.
async fn sequential(session: &Session, n: u64) -> Result<Figures> {
    // As duraflow-bench's `sequential` does: one short workflow first, untimed, so that a new
    // runtime's one-time costs are not divided into the figure.
    let warmup = sequential_steps_run(session, "seq-warmup-steps", WARMUP_OPS).await?;
    let elapsed = sequential_steps_run(session, "seq-steps", n).await?;
    let ms = elapsed.as_secs_f64() * 1000.0;
    let mut f = Figures::new();
    num(&mut f, "activity_ms_per_op", ms / n as f64, 3);
    num(&mut f, "step_ms_per_op", ms / n as f64, 4);
    num(&mut f, "activities_total_ms", ms, 1);
    num(&mut f, "steps_total_ms", ms, 1);
    num(&mut f, "warmup_steps_ms", warmup.as_secs_f64() * 1000.0, 2);
    session
        .check_recorded("index", n + WARMUP_OPS, &mut f)
        .await?;
    f.insert(
        "step_note".into(),
        "DBOS has one kind of step, run in the workflow's task and checkpointed before the \
         next; the one workflow of n steps is reported under both figures, so the ratios set it \
         beside duraflow's activities and beside its durable inline steps"
            .into(),
    );
    Ok(f)
}

/// How many steps the warm-up workflow of `sequential` runs (duraflow-bench's `WARMUP_OPS`).
const WARMUP_OPS: u64 = 2;

/// Runs a workflow of `n` sequential steps under `id` and returns its time, checked.
async fn sequential_steps_run(session: &Session, id: &str, n: u64) -> Result<Duration> {
    let started = Instant::now();
    let handle = start(&session.sequential_steps, n, id).await?;
    let output = result(handle).await?;
    let elapsed = started.elapsed();
    let expected = n * n.saturating_sub(1) / 2;
    if output != expected {
        return Err(format!("{SEQUENTIAL_STEPS} returned {output}, expected {expected}").into());
    }
    Ok(elapsed)
}

/// `start-latency`: `n` times in a row, start an empty workflow and wait for its result.
async fn start_latency(session: &Session, n: u64) -> Result<Figures> {
    let mut latencies = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let started = Instant::now();
    for i in 0..n {
        let id = format!("sl-{i:07}");
        let t = Instant::now();
        let handle = start(&session.empty, (), &id).await?;
        result(handle).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(report::latency_figures(latencies, started.elapsed()))
}

/// `fan-out`: one workflow joining `n` no-op steps; the total time and the process's peak
/// resident memory during the run, measured as duraflow-bench does.
async fn fan_out_run(session: &Session, n: u64) -> Result<Figures> {
    let reset = system::reset_peak_rss();
    let rss_before = system::proc_status_kb("VmRSS");
    let started = Instant::now();
    let handle = start(&session.fan_out, n, "fan-out").await?;
    let output = result(handle).await?;
    let elapsed = started.elapsed();
    let peak = system::proc_status_kb("VmHWM");
    if output != n {
        return Err(format!("the fan-out joined {output} steps, expected {n}").into());
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
    session.check_recorded("noop", n, &mut f).await?;
    f.insert("peak_reset_before_run".into(), reset.into());
    if !reset {
        f.insert(
            "peak_note".into(),
            "VmHWM could not be reset: the peak is since the process started".into(),
        );
    }
    f.insert(
        "activities_note".into(),
        "activities_per_s counts DBOS steps".into(),
    );
    Ok(f)
}
