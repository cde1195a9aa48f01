//! The engine's series and the calls that record into them. Every series without a per-event
//! label is resolved here once, so recording is an atomic add (a histogram takes a short lock).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use std::sync::Arc;

use super::activity::{ActivityCounters, ActivitySeries};

/// One fixed label, such as `outcome="committed"`.
type Label = [(&'static str, &'static str); 1];

/// How a turn ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TurnOutcome {
    /// Its commit was stored.
    Committed,
    /// Its lease was lost (or its journal moved on): the turn was void.
    LeaseLost,
    /// It was given back to be retried (a store error, an unreadable journal).
    Abandoned,
}

/// What a group commit wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitKind {
    /// Turn commits (and checkpoints).
    Turns,
    /// Activity task completions.
    Completions,
}

/// A counter and a histogram per commit kind.
struct CommitSeries {
    commits: Counter,
    items: Counter,
    seconds: Histogram,
}

/// The engine's series.
pub(crate) struct Recorder {
    turns: Family<Label, Counter>,
    turn_committed: Counter,
    turn_lease_lost: Counter,
    turn_abandoned: Counter,
    turn_seconds: Histogram,
    commits: Family<Label, Counter>,
    commit_items: Family<Label, Counter>,
    commit_seconds: Family<Label, Histogram, fn() -> Histogram>,
    turn_commits: CommitSeries,
    completion_commits: CommitSeries,
    activities: ActivitySeries,
    timers_fired: Counter,
    timer_lateness: Histogram,
    leases_lost: Family<Label, Counter>,
    turn_leases_lost: Counter,
    task_leases_lost: Counter,
    nondeterminism: Counter,
    warm_hits: Counter,
    warm_misses: Counter,
    direct_turns: Counter,
}

/// Buckets for latencies: 100 µs to about 26 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 19))
}

/// Buckets for timer lateness: 1 ms to about 70 minutes, quadrupling.
fn lateness() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

/// The series of `family` with the one label `key="value"`, created now.
fn resolved<M: Clone>(
    family: &Family<Label, M, impl prometheus_client::metrics::family::MetricConstructor<M>>,
    key: &'static str,
    value: &'static str,
) -> M {
    family.get_or_create_owned(&[(key, value)])
}

impl CommitSeries {
    fn new(r: &RecorderFamilies, kind: &'static str) -> Self {
        CommitSeries {
            commits: resolved(&r.commits, "kind", kind),
            items: resolved(&r.commit_items, "kind", kind),
            seconds: resolved(&r.commit_seconds, "kind", kind),
        }
    }
}

/// The labelled families, before their series are resolved.
struct RecorderFamilies {
    commits: Family<Label, Counter>,
    commit_items: Family<Label, Counter>,
    commit_seconds: Family<Label, Histogram, fn() -> Histogram>,
}

impl Recorder {
    pub(super) fn new() -> Self {
        let turns = Family::<Label, Counter>::default();
        let leases_lost = Family::<Label, Counter>::default();
        let families = RecorderFamilies {
            commits: Family::default(),
            commit_items: Family::default(),
            commit_seconds: Family::new_with_constructor(latency),
        };
        Recorder {
            turn_committed: resolved(&turns, "outcome", "committed"),
            turn_lease_lost: resolved(&turns, "outcome", "lease_lost"),
            turn_abandoned: resolved(&turns, "outcome", "abandoned"),
            turns,
            turn_seconds: latency(),
            turn_commits: CommitSeries::new(&families, "turns"),
            completion_commits: CommitSeries::new(&families, "completions"),
            commits: families.commits,
            commit_items: families.commit_items,
            commit_seconds: families.commit_seconds,
            activities: ActivitySeries::default(),
            timers_fired: Counter::default(),
            timer_lateness: lateness(),
            turn_leases_lost: resolved(&leases_lost, "kind", "turn"),
            task_leases_lost: resolved(&leases_lost, "kind", "task"),
            leases_lost,
            nondeterminism: Counter::default(),
            warm_hits: Counter::default(),
            warm_misses: Counter::default(),
            direct_turns: Counter::default(),
        }
    }

    /// Registers every series into `registry` (as shared handles).
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "duraflow_turns",
            "Workflow turns run by this engine, by how they ended",
            self.turns.clone(),
        );
        registry.register_with_unit(
            "duraflow_turn_duration",
            "Time from a turn's start to its stored commit",
            Unit::Seconds,
            self.turn_seconds.clone(),
        );
        registry.register(
            "duraflow_commits",
            "Group commits (store writes), by what they wrote",
            self.commits.clone(),
        );
        registry.register(
            "duraflow_committed_items",
            "Turn commits or task completions written by group commits",
            self.commit_items.clone(),
        );
        registry.register_with_unit(
            "duraflow_commit_duration",
            "Time a group commit's store write took",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        self.activities.register(registry);
        registry.register(
            "duraflow_timers_fired",
            "Timer firings delivered to workflows by committed turns",
            self.timers_fired.clone(),
        );
        registry.register_with_unit(
            "duraflow_timer_lateness",
            "How long after its due time a fired timer's turn ran (engine clock)",
            Unit::Seconds,
            self.timer_lateness.clone(),
        );
        registry.register(
            "duraflow_leases_lost",
            "Turn or activity task leases this engine lost before it was done",
            self.leases_lost.clone(),
        );
        registry.register(
            "duraflow_nondeterminism_failures",
            "Instances failed because their code no longer matched their journal",
            self.nondeterminism.clone(),
        );
        registry.register(
            "duraflow_warm_cache_hits",
            "Turns that continued a workflow kept warm in memory",
            self.warm_hits.clone(),
        );
        registry.register(
            "duraflow_direct_turns",
            "Turns run at once on an activity result this engine held and committed with it",
            self.direct_turns.clone(),
        );
        registry.register(
            "duraflow_warm_cache_misses",
            "Turns that read and replayed a journal (the first turn of an execution counts as neither)",
            self.warm_misses.clone(),
        );
    }

    /// A turn ended; `took` is its time when it committed.
    pub(crate) fn turn(&self, outcome: TurnOutcome, took: Option<Duration>) {
        match outcome {
            TurnOutcome::Committed => self.turn_committed.inc(),
            TurnOutcome::LeaseLost => {
                self.turn_leases_lost.inc();
                self.turn_lease_lost.inc()
            }
            TurnOutcome::Abandoned => self.turn_abandoned.inc(),
        };
        if let Some(took) = took {
            self.turn_seconds.observe(took.as_secs_f64());
        }
    }

    /// A group commit of `items` took `took`.
    pub(crate) fn commit(&self, kind: CommitKind, items: usize, took: Duration) {
        let series = match kind {
            CommitKind::Turns => &self.turn_commits,
            CommitKind::Completions => &self.completion_commits,
        };
        series.commits.inc();
        series.items.inc_by(items as u64);
        series.seconds.observe(took.as_secs_f64());
    }

    /// The counters of activity `name` in `queue`.
    pub(crate) fn activity(&self, name: &str, queue: &str) -> Arc<ActivityCounters> {
        self.activities.of(name, queue)
    }

    /// A timer fired `late` after its due time.
    pub(crate) fn timer_fired(&self, late: Duration) {
        self.timers_fired.inc();
        self.timer_lateness.observe(late.as_secs_f64());
    }

    /// An activity attempt lost its task's lease.
    pub(crate) fn task_lease_lost(&self) {
        self.task_leases_lost.inc();
    }

    /// An instance failed with a nondeterminism failure.
    pub(crate) fn nondeterminism(&self) {
        self.nondeterminism.inc();
    }

    /// A direct turn stored the activity result it was run on.
    pub(crate) fn direct_turn(&self) {
        self.direct_turns.inc();
    }

    /// A turn found its workflow warm (`true`) or replayed its journal (`false`).
    pub(crate) fn warm(&self, hit: bool) {
        if hit {
            self.warm_hits.inc();
        } else {
            self.warm_misses.inc();
        }
    }
}
