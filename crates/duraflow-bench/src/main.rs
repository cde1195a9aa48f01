//! `duraflow-bench`: the duraflow benchmark suite.
//!
//! ```text
//! duraflow-bench <workload> [--store memory|sqlite|sqlite-normal|postgres]... [--n N] [--json]
//! duraflow-bench all [--store ...] [--json]
//! duraflow-bench all [--store ...] --peer duroxide [--peer duroxide-full] [--peer-bin PATH]
//! duraflow-bench <workload> --store postgres --peer dbos [--dbos-peer-bin PATH]
//! ```
//!
//! Each workload lives in a module of its own under `workloads/`. Every (workload, store, run)
//! gets a fresh store: a SQLite file in a temporary directory, or a fresh PostgreSQL schema that
//! is dropped afterwards. Results go to stdout (one JSON line each with `--json`, a table
//! otherwise); progress and diagnostics go to stderr.

mod cli;
mod engine;
mod meter;
mod peer;
mod report;
mod stats;
mod store;
mod system;
mod workloads;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Workload};
use crate::report::{Figures, Output, RunResult};
use crate::store::{StoreEnv, StoreKind};

/// The error every fallible function of the benchmark returns.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// A result with the benchmark's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

fn main() -> ExitCode {
    // The hidden subcommand that runs the recovery workload's worker process.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == workloads::recovery::worker::COMMAND)
    {
        init_tracing();
        return workloads::recovery::worker::main();
    }
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("duraflow-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

/// Engine warnings and errors (and more with `RUST_LOG`) go to stderr.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the selected workloads on the selected stores, `runs` times each, and reports.
async fn run(cli: Cli) -> ExitCode {
    engine::configure(cli.warm_instances);
    let config = cli.config();
    if let Err(e) = config.validate() {
        eprintln!("duraflow-bench: {e}");
        return ExitCode::from(2);
    }
    let workloads = match cli.workload {
        Workload::All => Workload::EVERY.to_vec(),
        one => vec![one],
    };
    let stores = if cli.store.is_empty() {
        StoreKind::ALL.to_vec()
    } else {
        cli.store.clone()
    };
    if cli.peer.contains(&peer::PeerKind::Dbos) && !stores.contains(&StoreKind::Postgres) {
        eprintln!(
            "duraflow-bench: DBOS runs on PostgreSQL only and is compared with --store postgres \
             alone; without it, DBOS's figures have no ratio"
        );
    }
    let peers = match peer::Peers::prepare(
        &cli.peer,
        cli.peer_bin.as_deref(),
        cli.dbos_peer_bin.as_deref(),
    ) {
        Ok(peers) => peers,
        Err(e) => {
            eprintln!("duraflow-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let build = report::BuildInfo::collect();
    let mut output = Output::new(config.json);
    let mut failed = false;
    let mut violations = Vec::new();
    for &workload in &workloads {
        for &kind in &stores {
            if let Some(why) = workloads::not_applicable(workload, kind) {
                eprintln!(
                    "duraflow-bench: {} on {} skipped: {why}",
                    workload.name(),
                    kind.name()
                );
                continue;
            }
            for run in 1..=config.runs {
                let n = config.n_for(workload);
                eprintln!(
                    "duraflow-bench: {} on {} (n = {n}, run {run} of {})",
                    workload.name(),
                    kind.name(),
                    config.runs
                );
                match run_one(workload, kind, n, &config).await {
                    Ok((settings, figures)) => {
                        violations.extend(
                            figures
                                .violations()
                                .into_iter()
                                .map(|v| format!("{} on {}: {v}", workload.name(), kind.name())),
                        );
                        output.push(RunResult {
                            workload: workload.name(),
                            store: kind.name(),
                            n,
                            run,
                            settings,
                            figures,
                            build: build.clone(),
                        });
                    }
                    Err(e) => {
                        eprintln!(
                            "duraflow-bench: {} on {} failed: {e}",
                            workload.name(),
                            kind.name()
                        );
                        failed = true;
                    }
                }
            }
        }
        let n = config.n_for(workload);
        if let Err(e) = peers.run(workload, n, &config, &mut output, &build).await {
            eprintln!("duraflow-bench: {} on a peer failed: {e}", workload.name());
            failed = true;
        }
    }
    let ratios = peer::ratios_of(output.results());
    output.finish();
    peer::print_ratios(&ratios, config.json);
    for v in &violations {
        eprintln!("duraflow-bench: CORRECTNESS VIOLATION: {v}");
    }
    if failed || !violations.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One workload on a fresh store: sets the store up, runs, and always cleans up.
async fn run_one(
    workload: Workload,
    kind: StoreKind,
    n: u64,
    config: &cli::Config,
) -> Result<(Figures, Figures)> {
    let env = StoreEnv::create(kind, &config.pg_url).await?;
    let result = workloads::run(workload, &env, n, config).await;
    let mut settings = env.settings();
    settings.extend(engine::settings());
    settings.extend(workloads::settings(workload, config));
    env.teardown().await;
    result.map(|figures| (settings, figures))
}
