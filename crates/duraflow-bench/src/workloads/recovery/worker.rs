//! The worker process of `recovery`, started by the benchmark as the hidden subcommand
//! `duraflow-bench recovery-worker`:
//!
//! ```text
//! duraflow-bench recovery-worker --log FILE --generation G --turn-lease-ms MS --task-lease-ms MS
//!     (--sqlite FILE [--synchronous full|normal] | --pg-url URL --pg-schema SCHEMA)
//! ```
//!
//! It runs an engine with the [`CHAIN`] workflow on the store, writes `# ready G` to the log
//! once the engine has started, and runs until every instance in the store has finished or its
//! standard input closes (the benchmark closes it to stop the worker; if the benchmark dies,
//! the pipe closes too and the worker does not outlive it). Each activity sleeps
//! [`ACTIVITY_MS`] and appends `G instance op attempt` to the log before it returns, so the
//! log records every execution, including those whose result a SIGKILL lost.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use duraflow::prelude::*;
use duraflow::{EngineOptions, InstanceStatus, PostgresOptions, SqliteOptions, Store, Synchronous};

use crate::Result;

/// The subcommand's name.
pub(crate) const COMMAND: &str = "recovery-worker";

/// Workflow: [`ACTIVITIES`] sequential [`EFFECT`] activities; returns the sum of their
/// outputs.
pub(crate) const CHAIN: &str = "recovery-chain";

/// Activity: sleeps [`ACTIVITY_MS`], logs its execution and returns its input.
pub(crate) const EFFECT: &str = "recovery-effect";

/// Activities per workflow.
pub(crate) const ACTIVITIES: u64 = 4;

/// How long each activity sleeps, in milliseconds: a little real work, so that the kill
/// lands while activities are in flight.
pub(crate) const ACTIVITY_MS: u64 = 5;

/// How often the worker checks whether every instance has finished.
const DONE_POLL: Duration = Duration::from_millis(100);

/// The input of activity `index` of workflow `i`.
pub(crate) fn activity_input(i: u64, index: u64) -> u64 {
    i * ACTIVITIES + index
}

/// What workflow `i` returns.
pub(crate) fn expected_output(i: u64) -> u64 {
    (0..ACTIVITIES).map(|index| activity_input(i, index)).sum()
}

/// The command line of the worker.
#[derive(Debug, Parser)]
#[command(
    name = "recovery-worker",
    bin_name = "duraflow-bench recovery-worker",
    about = "The worker process of the recovery workload (started by duraflow-bench itself)"
)]
pub(crate) struct WorkerArgs {
    /// The side-effect log: one line per activity execution, appended.
    #[arg(long)]
    pub(crate) log: PathBuf,
    /// This process's generation (0 for the first start, 1 after the kill).
    #[arg(long)]
    pub(crate) generation: u32,
    /// The SQLite file.
    #[arg(long, conflicts_with_all = ["pg_url", "pg_schema"])]
    pub(crate) sqlite: Option<PathBuf>,
    /// SQLite: `full` or `normal`.
    #[arg(long, value_enum, default_value_t = SyncArg::Full)]
    pub(crate) synchronous: SyncArg,
    /// The PostgreSQL server.
    #[arg(long, requires = "pg_schema")]
    pub(crate) pg_url: Option<String>,
    /// The PostgreSQL schema.
    #[arg(long, requires = "pg_url")]
    pub(crate) pg_schema: Option<String>,
    /// The engine's turn lease, in milliseconds.
    #[arg(long)]
    pub(crate) turn_lease_ms: u64,
    /// The engine's activity task lease, in milliseconds.
    #[arg(long)]
    pub(crate) task_lease_ms: u64,
}

/// SQLite's `synchronous` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SyncArg {
    /// `synchronous=FULL`.
    Full,
    /// `synchronous=NORMAL`.
    Normal,
}

/// The worker's entry point: parses the arguments after the subcommand, runs, and exits 0
/// when every instance has finished or it was told to stop.
pub(crate) fn main() -> ExitCode {
    let args = WorkerArgs::parse_from(std::env::args_os().skip(1));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{COMMAND}: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{COMMAND}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn chain(ctx: WorkflowContext, i: u64) -> Result<u64, WorkflowError> {
    let mut total = 0;
    for index in 0..ACTIVITIES {
        total += ctx
            .activity::<u64>(EFFECT, &activity_input(i, index))
            .await?;
    }
    Ok(total)
}

/// The side-effect log, shared by the activities.
type Log = Arc<Mutex<std::fs::File>>;

/// Appends one line in one write to the log (opened with `O_APPEND`, so a line is never torn
/// by another writer).
fn append(log: &Log, line: &str) -> std::io::Result<()> {
    let mut file = log
        .lock()
        .map_err(|_| std::io::Error::other("the log's lock is poisoned"))?;
    file.write_all(line.as_bytes())
}

async fn open_store(args: &WorkerArgs) -> Result<Arc<dyn Store>> {
    match (&args.sqlite, &args.pg_url, &args.pg_schema) {
        (Some(path), None, None) => {
            let options = SqliteOptions {
                synchronous: match args.synchronous {
                    SyncArg::Full => Synchronous::Full,
                    SyncArg::Normal => Synchronous::Normal,
                },
                ..SqliteOptions::default()
            };
            let store = SqliteStore::open_with(path, options)
                .await
                .map_err(|e| format!("cannot open SQLite store {}: {e}", path.display()))?;
            Ok(Arc::new(store))
        }
        (None, Some(url), Some(schema)) => {
            let options = PostgresOptions {
                schema: schema.clone(),
                application_name: format!("duraflow-bench-worker-{}", args.generation),
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect_with(url, options)
                .await
                .map_err(|e| format!("cannot open the PostgreSQL store {url} ({schema}): {e}"))?;
            Ok(Arc::new(store))
        }
        _ => Err("give either --sqlite FILE or both --pg-url URL and --pg-schema SCHEMA".into()),
    }
}

async fn work(args: WorkerArgs) -> Result<()> {
    let generation = args.generation;
    let store = open_store(&args).await?;
    let log: Log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.log)
            .map_err(|e| format!("cannot open the log {}: {e}", args.log.display()))?,
    ));
    let options = EngineOptions {
        turn_lease: Duration::from_millis(args.turn_lease_ms),
        task_lease: Duration::from_millis(args.task_lease_ms),
        ..EngineOptions::default()
    };
    let effect_log = log.clone();
    let engine = Engine::builder()
        .shared_store(store.clone())
        .options(options)
        .workflow(CHAIN, chain)
        .activity(EFFECT, move |ctx: ActivityContext, input: u64| {
            let log = effect_log.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(ACTIVITY_MS)).await;
                let line = format!(
                    "{generation} {} {} {}\n",
                    ctx.instance_id(),
                    ctx.op_id(),
                    ctx.attempt()
                );
                append(&log, &line)
                    .map_err(|e| ActivityError::retryable(format!("cannot log: {e}")))?;
                Ok(input)
            }
        })
        .start()
        .await?;
    append(&log, &format!("# ready {generation}\n"))?;

    // Stop when standard input closes (read on a thread of its own: std's stdin blocks).
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().lock().read_to_end(&mut sink);
        let _ = closed_tx.send(());
    });
    let outcome = loop {
        tokio::select! {
            _ = &mut closed => break Ok(()),
            () = tokio::time::sleep(DONE_POLL) => {
                match async { duraflow::management_of(&*store)?.stats().await }.await {
                    Ok(s) => {
                        let open = s.instances.iter().any(|(status, count)| {
                            *count > 0
                                && matches!(status, InstanceStatus::Pending | InstanceStatus::Running)
                        });
                        if !open {
                            break Ok(());
                        }
                    }
                    Err(e) if e.is_transient() => {
                        eprintln!("{COMMAND}: reading the store's counts failed ({e}); retrying");
                    }
                    Err(e) => break Err(format!("cannot read the store's counts: {e}")),
                }
            }
        }
    };
    engine.shutdown().await;
    outcome.map_err(Into::into)
}
