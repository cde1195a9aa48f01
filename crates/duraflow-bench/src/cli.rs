//! The command line.

use clap::{Parser, ValueEnum};
use duraflow_postgres::testing;

use crate::peer::PeerKind;
use crate::store::StoreKind;

/// Benchmarks for duraflow: throughput, latency, fan-out, timers, replay, parked workflows,
/// crash recovery, inline steps, maps and DAG runs on every store.
#[derive(Debug, Parser)]
#[command(name = "duraflow-bench", version)]
pub(crate) struct Cli {
    /// The workload to run, or `all` for every one.
    #[arg(value_enum)]
    pub(crate) workload: Workload,

    /// The store to run on; repeat for several. Every store when not given.
    #[arg(long, value_enum)]
    pub(crate) store: Vec<StoreKind>,

    /// The workload's size (default: throughput 1,000 workflows, sequential 100 operations,
    /// start-latency 1,000 starts, fan-out 10,000 activities, timers 10,000 workflows, replay
    /// 10,000 operations in the largest workflow (the series is N/1000, N/100, N/10, N),
    /// parked 100,000 workflows, recovery 1,000 workflows, steps 200 steps per workflow, map
    /// 10,000 items, queue-fetch 1,000,000 pending instances on 100 queues, list 1,000,000 instances, dag-chain 1,000
    /// steps, dag-fan-out 1,000 parallel steps, dag-readiness 100,000 steps in the largest DAG
    /// (the series is N/100, N/10, N), dag-events 100,000 lifecycle events).
    #[arg(long)]
    pub(crate) n: Option<u64>,

    /// One JSON line per result on stdout instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// How many times to run each workload on each store (each run on a fresh store); the
    /// table shows the median of the runs.
    #[arg(long, default_value_t = 1)]
    pub(crate) runs: u32,

    /// throughput: do not count store commits (SQLite: the WAL is then checkpointed as usual;
    /// PostgreSQL: no idle-engine baseline and no waiting for connections to close).
    #[arg(long)]
    pub(crate) no_commit_count: bool,

    /// throughput: how the workflows are started: `concurrent` (64 awaited starts in flight at
    /// once), `loop` (one awaited start after another from one task, as
    /// `for x in xs { client.start(..).await? }` does), `batch` (`Client::start_many`, 100
    /// starts per call, one call after another) or `request` (64 tasks, each starting a
    /// workflow and waiting for its result before starting the next, as a server answering
    /// requests does).
    #[arg(long, value_enum, default_value_t = StartStyle::Concurrent)]
    pub(crate) starts: StartStyle,

    /// timers: the shortest sleep, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) min_sleep_ms: u64,

    /// timers: the longest sleep, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) max_sleep_ms: u64,

    /// timers: the seed of the sleep durations.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,

    /// recovery: the worker's turn lease in milliseconds (default: the engine's, 60,000).
    #[arg(long)]
    pub(crate) turn_lease_ms: Option<u64>,

    /// recovery: the worker's activity task lease in milliseconds (default: the engine's,
    /// 30,000).
    #[arg(long)]
    pub(crate) task_lease_ms: Option<u64>,

    /// The PostgreSQL server (default: `DURAFLOW_TEST_POSTGRES_URL`, else
    /// `postgres://postgres@127.0.0.1:5432/postgres`). Each run uses a fresh schema.
    #[arg(long)]
    pub(crate) pg_url: Option<String>,

    /// How many instances the engine keeps warm in memory between turns
    /// (`EngineOptions::warm_instances`; default 1,000, 0 keeps none).
    #[arg(long)]
    pub(crate) warm_instances: Option<usize>,

    /// Also run the workloads on a peer and report the ratios (throughput, sequential,
    /// start-latency and fan-out); repeat for several. `duroxide`: duroxide's SQLite provider
    /// as it comes (synchronous=NORMAL); `duroxide-full`: with synchronous=FULL; `dbos`: DBOS
    /// Transact for Rust on the PostgreSQL server of `--pg-url`, compared with `--store
    /// postgres` only.
    #[arg(long, value_enum)]
    pub(crate) peer: Vec<PeerKind>,

    /// The `duroxide-peer` binary (default: built now with `cargo build --release --locked
    /// --manifest-path bench/peers/duroxide/Cargo.toml`).
    #[arg(long)]
    pub(crate) peer_bin: Option<std::path::PathBuf>,

    /// The `dbos-peer` binary (default: built now with `cargo build --release --locked
    /// --manifest-path bench/peers/dbos/Cargo.toml`).
    #[arg(long)]
    pub(crate) dbos_peer_bin: Option<std::path::PathBuf>,
}

/// How the throughput workload starts its workflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StartStyle {
    /// 64 awaited starts in flight at once.
    Concurrent,
    /// One awaited start after another, from one task.
    Loop,
    /// `Client::start_many`, 100 starts per call, one call after another.
    Batch,
    /// 64 tasks, each starting a workflow and waiting for its result (`Client::wait_finished`)
    /// before it starts the next: a server answering requests.
    Request,
}

impl StartStyle {
    /// The name on the command line and in results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StartStyle::Concurrent => "concurrent",
            StartStyle::Loop => "loop",
            StartStyle::Batch => "batch",
            StartStyle::Request => "request",
        }
    }
}

/// A workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// N workflows of 3 sequential no-op activities.
    Throughput,
    /// One workflow of N sequential no-op activities, and one of N inline steps.
    Sequential,
    /// Start an empty workflow and wait for its result, N times in a row.
    StartLatency,
    /// One workflow joining N no-op activities.
    FanOut,
    /// N workflows each sleeping a uniform random time on a durable timer.
    Timers,
    /// Workflows with N/1000, N/100, N/10 and N completed operations: the time of the next turn.
    Replay,
    /// N workflows waiting for an event: memory and database bytes each, event-to-resume time.
    Parked,
    /// N workflows in flight, the worker process SIGKILLed and restarted: time to recover.
    Recovery,
    /// Workflows of N sequential inline steps of each durability, alone and 64 at once.
    Steps,
    /// One workflow mapping N items, 100 at a time, each running an inline step.
    Map,
    /// Fetch latency on a queue of 1,000 turns, before and after N pending instances are
    /// added on 100 other queues.
    QueueFetch,
    /// Listing, filtering and counting N instances through the management extension.
    List,
    /// One DAG run of a chain of N no-op steps: orchestration overhead per step.
    DagChain,
    /// One DAG run of a root, N parallel no-op steps and a join: overhead per step.
    DagFanOut,
    /// Ready-step discovery alone (no engine) in DAGs of N/100, N/10 and N steps.
    DagReadiness,
    /// DAG runs publishing at least N lifecycle events: subscriber delivery rate, live and
    /// catching up.
    DagEvents,
    /// Every workload.
    All,
}

impl Workload {
    /// Every workload, in the order `all` runs them.
    pub(crate) const EVERY: [Workload; 16] = [
        Workload::Throughput,
        Workload::Sequential,
        Workload::StartLatency,
        Workload::FanOut,
        Workload::Timers,
        Workload::Replay,
        Workload::Parked,
        Workload::Recovery,
        Workload::Steps,
        Workload::Map,
        Workload::QueueFetch,
        Workload::List,
        Workload::DagChain,
        Workload::DagFanOut,
        Workload::DagReadiness,
        Workload::DagEvents,
    ];

    /// The name on the command line and in results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Throughput => "throughput",
            Workload::Sequential => "sequential",
            Workload::StartLatency => "start-latency",
            Workload::FanOut => "fan-out",
            Workload::Timers => "timers",
            Workload::Replay => "replay",
            Workload::Parked => "parked",
            Workload::Recovery => "recovery",
            Workload::Steps => "steps",
            Workload::Map => "map",
            Workload::QueueFetch => "queue-fetch",
            Workload::List => "list",
            Workload::DagChain => "dag-chain",
            Workload::DagFanOut => "dag-fan-out",
            Workload::DagReadiness => "dag-readiness",
            Workload::DagEvents => "dag-events",
            Workload::All => "all",
        }
    }

    /// The size used when `--n` is not given.
    pub(crate) fn default_n(self) -> u64 {
        match self {
            Workload::Throughput
            | Workload::StartLatency
            | Workload::Recovery
            | Workload::DagChain
            | Workload::DagFanOut => 1_000,
            Workload::Sequential => 100,
            Workload::Steps => 200,
            Workload::FanOut | Workload::Timers | Workload::Replay | Workload::Map => 10_000,
            Workload::Parked | Workload::DagReadiness => 100_000,
            Workload::QueueFetch | Workload::List => 1_000_000,
            Workload::DagEvents => 100_000,
            Workload::All => 0,
        }
    }
}

/// The settings every workload reads.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// `--n`, if given.
    pub(crate) n: Option<u64>,
    /// `--json`.
    pub(crate) json: bool,
    /// `--runs`.
    pub(crate) runs: u32,
    /// Not `--no-commit-count`.
    pub(crate) count_commits: bool,
    /// `--starts`.
    pub(crate) starts: StartStyle,
    /// `--min-sleep-ms`.
    pub(crate) min_sleep_ms: u64,
    /// `--max-sleep-ms`.
    pub(crate) max_sleep_ms: u64,
    /// `--seed`.
    pub(crate) seed: u64,
    /// `--turn-lease-ms`, if given.
    pub(crate) turn_lease_ms: Option<u64>,
    /// `--task-lease-ms`, if given.
    pub(crate) task_lease_ms: Option<u64>,
    /// The PostgreSQL URL.
    pub(crate) pg_url: String,
}

impl Cli {
    /// The settings of this command line.
    pub(crate) fn config(&self) -> Config {
        Config {
            n: self.n,
            json: self.json,
            runs: self.runs,
            count_commits: !self.no_commit_count,
            starts: self.starts,
            min_sleep_ms: self.min_sleep_ms,
            max_sleep_ms: self.max_sleep_ms,
            seed: self.seed,
            turn_lease_ms: self.turn_lease_ms,
            task_lease_ms: self.task_lease_ms,
            pg_url: self.pg_url.clone().unwrap_or_else(testing::test_url),
        }
    }
}

impl Config {
    /// Refuses settings that make no sense.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.n == Some(0) {
            return Err("--n must be at least 1".into());
        }
        if self.runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        if self.min_sleep_ms > self.max_sleep_ms {
            return Err(format!(
                "--min-sleep-ms ({}) is more than --max-sleep-ms ({})",
                self.min_sleep_ms, self.max_sleep_ms
            ));
        }
        // The engine refuses shorter leases (10 ms and 30 ms); below 100 ms a lease would
        // expire under ordinary scheduling delays on a busy machine.
        for (flag, value) in [
            ("--turn-lease-ms", self.turn_lease_ms),
            ("--task-lease-ms", self.task_lease_ms),
        ] {
            if value.is_some_and(|ms| ms < 100) {
                return Err(format!("{flag} must be at least 100"));
            }
        }
        Ok(())
    }

    /// The size of `workload`: `--n`, or its default.
    pub(crate) fn n_for(&self, workload: Workload) -> u64 {
        self.n.unwrap_or_else(|| workload.default_n())
    }
}
