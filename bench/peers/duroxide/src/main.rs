//! `duroxide-peer`: duraflow-bench's `throughput`, `sequential`, `start-latency` and `fan-out`
//! workloads, written against duroxide (the crates.io crate) with its SQLite provider.
//!
//! ```text
//! duroxide-peer <workload|all> [--n N] [--runs R] [--json] [--synchronous duroxide|full]
//! ```
//!
//! Every (workload, run) gets a fresh SQLite file in a new temporary directory and a fresh
//! duroxide runtime with `RuntimeOptions::default()`. With `--json`, each result is one line on
//! stdout in the shape of duraflow-bench's results (`store` is `duroxide-sqlite`, and the build
//! information names `duroxide_version`); without it, a table of medians. Progress and
//! diagnostics go to stderr. `duraflow-bench --peer duroxide` runs this binary and reports the
//! ratios of the two.

mod store;
mod warnings;
mod workloads;

use std::process::ExitCode;

pub(crate) use peer_kit::Workload;
use peer_kit::{report, system};

use clap::Parser;

use crate::report::{BuildInfo, RunResult};
use crate::store::Synchronous;

/// The error every fallible function of the peer returns.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// A result with the peer's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// duraflow-bench's workloads on duroxide with its SQLite provider.
#[derive(Debug, Parser)]
#[command(name = "duroxide-peer", version)]
pub(crate) struct Cli {
    /// The workload to run, or `all` for every one.
    #[arg(value_enum)]
    pub(crate) workload: Workload,

    /// The workload's size (default: throughput 1,000 orchestrations, sequential 100
    /// activities, start-latency 1,000 starts, fan-out 10,000 activities).
    #[arg(long)]
    pub(crate) n: Option<u64>,

    /// How many times to run each workload (each run on a fresh SQLite file and runtime).
    #[arg(long, default_value_t = 1)]
    pub(crate) runs: u32,

    /// One JSON line per result on stdout instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// `duroxide`: the SQLite durability duroxide's provider sets (WAL, synchronous=NORMAL in
    /// 0.1.32). `full`: the peer sets `PRAGMA synchronous = FULL` on every connection of the
    /// provider's pool after the provider opened them (duroxide has no option for it), checks
    /// all of them still say FULL after the run, and reports the store as
    /// `duroxide-sqlite-full`.
    #[arg(long, value_enum, default_value_t = Synchronous::Duroxide)]
    pub(crate) synchronous: Synchronous,

    /// Overrides `RuntimeOptions::orchestration_concurrency` (duroxide's default: 2).
    #[arg(long)]
    pub(crate) orchestration_concurrency: Option<usize>,

    /// Overrides `RuntimeOptions::worker_concurrency` (duroxide's default: 2).
    #[arg(long)]
    pub(crate) worker_concurrency: Option<usize>,

    /// Overrides `RuntimeOptions::dispatcher_min_poll_interval` in milliseconds (duroxide's
    /// default: 100).
    #[arg(long)]
    pub(crate) min_poll_ms: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    if cli.n == Some(0) {
        eprintln!("duroxide-peer: --n must be at least 1");
        return ExitCode::from(2);
    }
    if cli.runs == 0 {
        eprintln!("duroxide-peer: --runs must be at least 1");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("duroxide-peer: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

/// Errors (and more with `RUST_LOG`) go to stderr; warnings are counted (see [`warnings`]).
///
/// duroxide's runtime installs a logger of its own on stdout (at `info` for orchestration and
/// activity traces) unless the process already has one; installing this one first keeps stdout
/// for the results.
fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(warnings::Counter.with_filter(tracing_subscriber::filter::LevelFilter::WARN))
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
        "duroxide",
        duroxide::providers::current_build_version().to_string(),
        env!("CARGO_PKG_VERSION"),
    );
    let store = cli.synchronous.store_name();
    let mut results: Vec<RunResult> = Vec::new();
    let mut failed = false;
    for &workload in &workloads {
        let n = cli.n.unwrap_or_else(|| workload.default_n());
        for run in 1..=cli.runs {
            eprintln!(
                "duroxide-peer: {} on {store} (n = {n}, run {run} of {})",
                workload.name(),
                cli.runs
            );
            match workloads::run(workload, n, &options).await {
                Ok((settings, figures)) => {
                    let result = RunResult {
                        workload: workload.name(),
                        store,
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
                    eprintln!("duroxide-peer: {} on {store} failed: {e}", workload.name());
                    for warning in warnings::last() {
                        eprintln!("duroxide-peer:   a recent warning: {warning}");
                    }
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
