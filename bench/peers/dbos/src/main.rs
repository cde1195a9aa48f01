//! `dbos-peer`: duraflow-bench's `throughput`, `sequential`, `start-latency` and `fan-out`
//! workloads, written against DBOS Transact for Rust (the crates.io crate `dbos`) on
//! PostgreSQL.
//!
//! ```text
//! dbos-peer <workload|all> [--n N] [--runs R] [--json] [--pg-url URL] [--starts concurrent|loop]
//! ```
//!
//! Every (workload, run) gets a fresh system database, created on the server of `--pg-url` and
//! dropped afterwards, and a fresh DBOS instance with `Config::new`'s defaults. With `--json`,
//! each result is one line on stdout in the shape of duraflow-bench's results (`store` is
//! `dbos-postgres`, and the build information names `dbos_version`); without it, a table of
//! medians. Progress and diagnostics go to stderr. `duraflow-bench --peer dbos` runs this
//! binary and reports the ratios of the two.

mod db;
mod version;
mod workloads;

use std::process::ExitCode;

pub(crate) use peer_kit::Workload;
use peer_kit::{report, system};

use clap::{Parser, ValueEnum};

use crate::report::{BuildInfo, RunResult};

/// The error every fallible function of the peer returns.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// A result with the peer's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The store name in the results.
pub(crate) const STORE: &str = "dbos-postgres";

/// duraflow-bench's workloads on DBOS Transact for Rust.
#[derive(Debug, Parser)]
#[command(name = "dbos-peer", version)]
pub(crate) struct Cli {
    /// The workload to run, or `all` for every one.
    #[arg(value_enum)]
    pub(crate) workload: Workload,

    /// The workload's size (default: throughput 1,000 workflows, sequential 100 steps,
    /// start-latency 1,000 starts, fan-out 10,000 steps).
    #[arg(long)]
    pub(crate) n: Option<u64>,

    /// How many times to run each workload (each run on a fresh database and DBOS instance).
    #[arg(long, default_value_t = 1)]
    pub(crate) runs: u32,

    /// One JSON line per result on stdout instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// The PostgreSQL server, through a database the peer may create and drop databases from
    /// (default: `DURAFLOW_TEST_POSTGRES_URL`, else
    /// `postgres://postgres@127.0.0.1:5432/postgres`).
    #[arg(
        long,
        env = "DURAFLOW_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub(crate) pg_url: String,

    /// throughput: `concurrent` (64 awaited starts in flight at once) or `loop` (one awaited
    /// start after another, from one task), as duraflow-bench's `--starts`.
    #[arg(long, value_enum, default_value_t = StartStyle::Concurrent)]
    pub(crate) starts: StartStyle,

    /// Overrides `Config::max_connections`, the size of DBOS's pool (DBOS's default: 10).
    #[arg(long)]
    pub(crate) max_connections: Option<u32>,
}

/// How the throughput workload starts its workflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StartStyle {
    /// 64 awaited starts in flight at once.
    Concurrent,
    /// One awaited start after another, from one task.
    Loop,
}

impl StartStyle {
    /// The name on the command line and in results (duraflow-bench's).
    pub(crate) fn name(self) -> &'static str {
        match self {
            StartStyle::Concurrent => "concurrent",
            StartStyle::Loop => "loop",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    if cli.n == Some(0) {
        eprintln!("dbos-peer: --n must be at least 1");
        return ExitCode::from(2);
    }
    if cli.runs == 0 {
        eprintln!("dbos-peer: --runs must be at least 1");
        return ExitCode::from(2);
    }
    if cli.max_connections == Some(0) {
        eprintln!("dbos-peer: --max-connections must be at least 1");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dbos-peer: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

/// DBOS's warnings and errors (and more with `RUST_LOG`) go to stderr, so stdout keeps the
/// results. Two of sqlx's warnings are left out by default, as they would bury the rest: "slow
/// statement" (the peer's own `CREATE` and `DROP DATABASE` take over sqlx's 1 s threshold
/// here) and "slow acquire" (in `fan-out`, thousands of steps wait for DBOS's pool of 10
/// connections, one warning each past 2 s).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,sqlx::query=error,sqlx::pool::acquire=error")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the selected workloads `runs` times each and reports.
async fn run(cli: Cli) -> ExitCode {
    let workloads = match cli.workload {
        Workload::All => Workload::EVERY.to_vec(),
        one => vec![one],
    };
    let options = workloads::Options::from_cli(&cli);
    let build = BuildInfo::collect(
        "dbos",
        version::dbos_version().to_owned(),
        env!("CARGO_PKG_VERSION"),
    );
    let mut results: Vec<RunResult> = Vec::new();
    let mut failed = false;
    for &workload in &workloads {
        let n = cli.n.unwrap_or_else(|| workload.default_n());
        for run in 1..=cli.runs {
            eprintln!(
                "dbos-peer: {} on {STORE} (n = {n}, run {run} of {})",
                workload.name(),
                cli.runs
            );
            match workloads::run(workload, n, &options).await {
                Ok((settings, figures)) => {
                    let result = RunResult {
                        workload: workload.name(),
                        store: STORE,
                        n,
                        run,
                        settings,
                        figures,
                        build: build.clone(),
                    };
                    if cli.json {
                        report::print_line(&result);
                    }
                    results.push(result);
                }
                Err(e) => {
                    eprintln!("dbos-peer: {} on {STORE} failed: {e}", workload.name());
                    failed = true;
                }
            }
        }
    }
    if !cli.json {
        report::print_table(&results);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
