//! The workloads every peer runs, named and sized as duraflow-bench names and sizes them.

use clap::ValueEnum;

/// A workload (duraflow-bench's name for it); each peer writes it against its engine: a
/// workflow, an orchestration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// N workflows of 3 sequential no-op steps or activities.
    Throughput,
    /// One workflow of N sequential no-op steps or activities.
    Sequential,
    /// Start an empty workflow and wait for its result, N times in a row.
    StartLatency,
    /// One workflow joining N no-op steps or activities.
    FanOut,
    /// Every workload.
    All,
}

impl Workload {
    /// Every workload, in the order `all` runs them.
    pub const EVERY: [Workload; 4] = [
        Workload::Throughput,
        Workload::Sequential,
        Workload::StartLatency,
        Workload::FanOut,
    ];

    /// The name on the command line and in results (the same as duraflow-bench's).
    pub fn name(self) -> &'static str {
        match self {
            Workload::Throughput => "throughput",
            Workload::Sequential => "sequential",
            Workload::StartLatency => "start-latency",
            Workload::FanOut => "fan-out",
            Workload::All => "all",
        }
    }

    /// The size used when `--n` is not given (duraflow-bench's defaults).
    pub fn default_n(self) -> u64 {
        match self {
            Workload::Throughput | Workload::StartLatency => 1_000,
            Workload::Sequential => 100,
            Workload::FanOut => 10_000,
            Workload::All => 0,
        }
    }
}
