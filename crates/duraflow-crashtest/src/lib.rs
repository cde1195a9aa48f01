//! Shared by the crash worker and the crash tests: the workload, the worker's settings and the
//! side-effect log format.
//!
//! Every workflow `wf-<i>` runs [`ACTIVITIES`] activities in sequence; each activity appends one
//! line to the side-effect log before returning, so the log records every execution, including
//! those whose result was lost in a crash. Each line names the worker process that ran it (its
//! generation, unique among the processes one test starts), so several workers can append to one
//! log (with `O_APPEND`; a line is one short write, so lines never interleave).
//!
//! [`steps`] holds the same for the steps worker, whose workflows run inline steps of both
//! at-most-once and at-least-once semantics, and [`dag`] for the DAG worker, whose runs follow
//! a DAG template.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duraflow::{PostgresOptions, PostgresStore, SqliteStore, Store};

use serde::{Deserialize, Serialize};

pub mod dag;
pub mod process;
pub mod queues;
pub mod steps;

/// Activities per workflow.
pub const ACTIVITIES: u64 = 4;

/// The environment variable naming the PostgreSQL schema a worker uses (default `duraflow`).
pub const SCHEMA_VAR: &str = "DURAFLOW_SCHEMA";

/// The environment variable setting a worker's activity concurrency
/// (default [`DEFAULT_ACTIVITY_CONCURRENCY`]).
pub const ACTIVITY_CONCURRENCY_VAR: &str = "DURAFLOW_ACTIVITY_CONCURRENCY";

/// Activities a worker runs at once unless [`ACTIVITY_CONCURRENCY_VAR`] says otherwise: at
/// most this many are in flight when it is killed.
pub const DEFAULT_ACTIVITY_CONCURRENCY: usize = 16;

/// The environment variable that sets a crash worker's turn and task leases, in milliseconds
/// (default 1,500: work in flight at a kill is picked up again quickly).
pub const LEASE_MS_VAR: &str = "DURAFLOW_LEASE_MS";

/// The `application_name` of a worker's PostgreSQL connections in `schema`, so that a test can
/// find its own workers' connections in `pg_stat_activity` (and leave the workers of tests
/// running beside it alone). PostgreSQL keeps at most 63 bytes of it.
pub fn application_name(schema: &str, generation: u32) -> String {
    let mut name = format!("{}{generation}", application_name_prefix(schema));
    name.truncate(63);
    name
}

/// What the [`application_name`] of every worker in `schema` begins with.
pub fn application_name_prefix(schema: &str) -> String {
    let mut prefix = format!("duraflow-worker-{schema}-");
    prefix.truncate(63);
    prefix
}

/// Opens the store a worker is given: `sqlite:<path>` (or a bare path) for a SQLite file, or a
/// `postgres://` URL, whose schema comes from [`SCHEMA_VAR`] (default `duraflow`) and whose
/// connections report [`application_name`]`(schema, generation)`.
pub async fn open_store(
    spec: &str,
    generation: u32,
) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        let schema = std::env::var(SCHEMA_VAR).unwrap_or_else(|_| "duraflow".into());
        let options = PostgresOptions {
            application_name: application_name(&schema, generation),
            schema,
            ..PostgresOptions::default()
        };
        Ok(Arc::new(PostgresStore::connect_with(spec, options).await?))
    } else {
        let path = spec.strip_prefix("sqlite:").unwrap_or(spec);
        Ok(Arc::new(SqliteStore::open(path).await?))
    }
}

/// Logs to stderr when `RUST_LOG` is set (the workers' output).
pub fn init_worker_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
}

/// Runs a client call for the worker named `worker`, retrying while the store is unavailable
/// (for up to two minutes): a worker outlives a database restart.
pub async fn retrying<T, F, Fut>(
    worker: &str,
    what: &str,
    mut call: F,
) -> Result<T, duraflow::ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, duraflow::ClientError>>,
{
    let give_up = std::time::Instant::now() + Duration::from_secs(120);
    let mut delay = Duration::from_millis(20);
    loop {
        match call().await {
            Err(duraflow::ClientError::Store(e))
                if e.is_transient() && std::time::Instant::now() < give_up =>
            {
                eprintln!("{worker}: {what} failed ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Starts the workflows `workflow` with ids `id_of(0..workflows)` and inputs `0..workflows`
/// (an id already taken is left as it is), then waits until no instance is pending or running:
/// what every crash worker does, whichever generation it is.
pub async fn start_and_wait_for_all(
    worker: &str,
    client: &duraflow::Client,
    workflow: &str,
    workflows: usize,
    id_of: impl Fn(usize) -> String,
) -> Result<(), duraflow::ClientError> {
    start_each_and_wait_for_all(worker, client, workflow, workflows, id_of, |i| i as u64).await
}

/// [`start_and_wait_for_all`] with the input of workflow `i` given by `input_of(i)`.
pub async fn start_each_and_wait_for_all<I: Serialize>(
    worker: &str,
    client: &duraflow::Client,
    workflow: &str,
    workflows: usize,
    id_of: impl Fn(usize) -> String,
    input_of: impl Fn(usize) -> I,
) -> Result<(), duraflow::ClientError> {
    for i in 0..workflows {
        let input = input_of(i);
        retrying(worker, "starting a workflow", || async {
            client.start(workflow, &input).id(id_of(i)).await
        })
        .await?;
    }
    loop {
        let page = retrying(worker, "listing unfinished workflows", || {
            client.list(duraflow::ListFilter {
                statuses: vec![
                    duraflow::InstanceStatus::Pending,
                    duraflow::InstanceStatus::Running,
                ],
                limit: 1,
                ..duraflow::ListFilter::default()
            })
        })
        .await?;
        let Some(first) = page.instances.first() else {
            return Ok(());
        };
        retrying(worker, "waiting for a workflow", || {
            client.wait_finished(&first.id, None)
        })
        .await?;
    }
}

/// The lease both workers take on turns and tasks: [`LEASE_MS_VAR`] milliseconds, 1.5 s by
/// default (short, so that work in flight at a kill is picked up again quickly).
pub fn lease_from_env() -> Result<Duration, std::num::ParseIntError> {
    Ok(Duration::from_millis(match std::env::var(LEASE_MS_VAR) {
        Ok(v) => v.parse()?,
        Err(_) => 1_500,
    }))
}

/// A crash worker's command line: `<bin> <sqlite:path | postgres://url> <side-effect-log>
/// <generation> <count>`, where the count is what it starts (workflows, runs).
pub struct WorkerArgs {
    /// The store's URL.
    pub store: String,
    /// The side-effect log's path.
    pub log: String,
    /// The worker's generation (0 for the first start).
    pub generation: u32,
    /// How many workflows (or runs) it starts.
    pub count: usize,
}

impl WorkerArgs {
    /// Reads the process's arguments; `bin` and `count` name the binary and its last argument
    /// in the usage message.
    pub fn from_args(bin: &str, count: &str) -> Result<WorkerArgs, Box<dyn std::error::Error>> {
        let args: Vec<String> = std::env::args().collect();
        let [_, store, log, generation, n] = args.as_slice() else {
            return Err(format!(
                "usage: {bin} <sqlite:path | postgres://url> <side-effect-log> <generation> \
                 <{count}>"
            )
            .into());
        };
        Ok(WorkerArgs {
            store: store.clone(),
            log: log.clone(),
            generation: generation.parse()?,
            count: n.parse()?,
        })
    }
}

/// The number in the environment variable `var`, or `default` when it is unset.
pub fn number_from_env(var: &str, default: usize) -> Result<usize, std::num::ParseIntError> {
    match std::env::var(var) {
        Ok(v) => v.parse(),
        Err(_) => Ok(default),
    }
}

/// Opens the side-effect log for appending, shared by the worker's activities.
pub fn open_log(path: &str) -> std::io::Result<Arc<Mutex<std::fs::File>>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(Arc::new(Mutex::new(file)))
}

/// The id of the poison worker's one workflow (see the `poison-worker` binary).
pub const POISON_WORKFLOW_ID: &str = "poison";

/// How many attempts the poison worker's retry policy allows its activity.
pub const POISON_ATTEMPTS: u32 = 3;

/// The input of one activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// What this activity adds to the total.
    pub index: u64,
    /// The running total so far.
    pub total: u64,
}

/// The id of workflow `i`.
pub fn workflow_id(i: usize) -> String {
    format!("wf-{i}")
}

/// What workflow `wf-<i>` returns: the sum of `i * 10 + index` over its activities.
pub fn expected_output(i: usize) -> u64 {
    (0..ACTIVITIES).map(|index| i as u64 * 10 + index).sum()
}

/// One line of the side-effect log: which process generation ran which activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The worker process's generation (0 for the first start).
    pub generation: u32,
    /// The instance.
    pub instance: String,
    /// The operation id.
    pub op: String,
    /// The attempt number the engine gave it.
    pub attempt: u32,
}

impl LogLine {
    /// The line as written.
    pub fn render(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.generation, self.instance, self.op, self.attempt
        )
    }

    /// Parses a written line; `None` for a torn or malformed one.
    pub fn parse(line: &str) -> Option<LogLine> {
        let mut parts = line.split_whitespace();
        let line = LogLine {
            generation: parts.next()?.parse().ok()?,
            instance: parts.next()?.to_owned(),
            op: parts.next()?.to_owned(),
            attempt: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(line)
    }
}

/// Reads a side-effect log (a missing file is empty); malformed lines are skipped.
pub fn read_log(path: &Path) -> Vec<LogLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(LogLine::parse)
        .collect()
}

/// The executions of each activity, keyed by `(instance, op)`: the generations that ran it, in
/// log order.
pub fn runs_by_activity(lines: &[LogLine]) -> BTreeMap<(String, String), Vec<u32>> {
    let mut runs: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for line in lines {
        runs.entry((line.instance.clone(), line.op.clone()))
            .or_default()
            .push(line.generation);
    }
    runs
}

/// Checks a store after a crash test: every workflow `wf-0 .. wf-<workflows-1>` completed with
/// its expected output, and each of its activities' results is in its journal exactly once.
/// Returns the first thing found wrong.
pub async fn verify_completed(store: &dyn duraflow::Store, workflows: usize) -> Result<(), String> {
    use duraflow::{EventKind, InstanceStatus};
    use std::collections::BTreeMap;

    for i in 0..workflows {
        let id = workflow_id(i);
        let info = store
            .instance(&id)
            .await
            .map_err(|e| format!("{id}: {e}"))?
            .ok_or_else(|| format!("{id} does not exist"))?;
        if info.status != InstanceStatus::Completed {
            return Err(format!("{id} is {} ({:?})", info.status, info.failure));
        }
        let output: u64 = info
            .output
            .ok_or_else(|| format!("{id} has no output"))?
            .decode()
            .map_err(|e| format!("{id}: {e}"))?;
        if output != expected_output(i) {
            return Err(format!(
                "{id} returned {output}, expected {}",
                expected_output(i)
            ));
        }
        let journal = store
            .journal(&id, None)
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        let mut results: BTreeMap<String, usize> = BTreeMap::new();
        for e in &journal {
            if let EventKind::ActivityCompleted { op, .. } = &e.kind {
                *results.entry(op.to_string()).or_default() += 1;
            }
        }
        if results.len() != ACTIVITIES as usize || results.values().any(|n| *n != 1) {
            return Err(format!(
                "{id}: each activity result must be journaled exactly once, found {results:?}"
            ));
        }
    }
    Ok(())
}
