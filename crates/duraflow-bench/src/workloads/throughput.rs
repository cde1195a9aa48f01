//! `throughput`: N workflows of 3 sequential no-op activities; workflows and activities per
//! second from the first start to the last completion seen, and the store commits per workflow
//! where they can be counted. The workflows are started as `--starts` says: 64 awaited starts
//! in flight at once (`concurrent`), one awaited start after another from one task (`loop`,
//! which also reports the time of each start while the engine runs the earlier workflows), or
//! `Client::start_many` calls of [`BATCH`] starts one after another (`batch`), or by 64 tasks
//! that each start a workflow and wait for its result before starting the next (`request`, as
//! a server answering requests does: up to 64 clients wait at once).
//!
//! Commits are counted without changing the stores:
//!
//! - PostgreSQL: `pg_stat_database.xact_commit` of the database, read once every store
//!   connection has closed, before and after the run; the transactions of an idle engine's
//!   start and stop (measured just before) and the benchmark's own status reads are
//!   subtracted. The readings are outside the timed part.
//! - SQLite: the commit frames of the WAL (see [`crate::meter`]). Holding the WAL back makes
//!   the run slower (a growing WAL costs more per fsync than a reused one), so the commits are
//!   counted in a second run of the same size on a fresh file, and the timings come from the
//!   first run, which has no meter.

use std::time::{Duration, Instant};

use crate::cli::StartStyle;
use crate::engine::{self, start_all, wait_all, START_CONCURRENCY, THREE_ACTIVITIES, WAIT_LIMIT};
use crate::meter::{WalCount, WalMeter};
use crate::report::Figures;
use crate::stats;
use crate::store::StoreEnv;
use crate::workloads::Session;
use crate::Result;
use futures::{StreamExt, TryStreamExt};

/// Starts per `start_many` call in the `batch` style.
pub(crate) const BATCH: usize = 100;

/// What one pass measured.
struct Pass {
    elapsed: Duration,
    start_phase: Duration,
    /// Each awaited start, in milliseconds (the `loop` style only).
    start_ms: Vec<f64>,
    reads: u64,
    wal: Option<WalCount>,
}

/// Runs the workload with `n` workflows; commits are not counted when `count_commits` is false.
pub(crate) async fn run(
    env: &StoreEnv,
    n: u64,
    count_commits: bool,
    starts: StartStyle,
) -> Result<Figures> {
    let pg = env.postgres().filter(|_| count_commits);
    let baseline = match pg {
        Some(pg) => {
            let (before, others_before) = pg.xact_commit().await?;
            Session::start(env).await?.stop().await?;
            let (after, others_after) = pg.xact_commit().await?;
            Some((after - before, after, others_before.max(others_after)))
        }
        None => None,
    };

    let timed = pass(env, n, false, starts).await?;

    let seconds = timed.elapsed.as_secs_f64();
    let nf = n as f64;
    let mut f = Figures::new();
    f.num("workflows_per_s", nf / seconds, 1)
        .num("activities_per_s", 3.0 * nf / seconds, 1)
        .num("elapsed_s", seconds, 3)
        .num("start_phase_s", timed.start_phase.as_secs_f64(), 3);
    if !timed.start_ms.is_empty() {
        let sorted = stats::sorted(timed.start_ms.clone());
        f.num("start_ms_mean", stats::mean(&sorted), 3)
            .num("start_ms_p50", stats::median(&sorted), 3)
            .num("start_ms_p99", stats::percentile(&sorted, 99.0), 3);
    }

    if let (Some(pg), Some((idle, base, others_base))) = (pg, baseline) {
        let (end, others_end) = pg.xact_commit().await?;
        let raw = end - base;
        let net = raw - idle - i64::try_from(timed.reads).unwrap_or(i64::MAX);
        f.num("commits_per_workflow", net as f64 / nf, 2)
            .int("commits_raw", u64::try_from(raw).unwrap_or(0))
            .int("commits_idle_engine", u64::try_from(idle).unwrap_or(0))
            .int("bench_status_reads", timed.reads)
            .int(
                "pg_other_sessions_seen",
                u64::try_from(others_base.max(others_end)).unwrap_or(0),
            )
            .text(
                "commits_note",
                "pg_stat_database.xact_commit of the database, every transaction (reads too), \
                 less an idle engine's start and stop and the benchmark's own status reads; \
                 other sessions on the same database would be counted too",
            );
    } else if count_commits && env.sqlite_path().is_some() {
        let counting_env = StoreEnv::create(env.kind(), "").await?;
        let counting = pass(&counting_env, n, true, starts).await;
        counting_env.teardown().await;
        let counting = counting?;
        let count = counting
            .wal
            .ok_or("the counting run on SQLite has no WAL count")?;
        f.num("commits_per_workflow", count.commits as f64 / nf, 2)
            .int("commits_raw", count.commits)
            .num(
                "wal_kib_per_workflow",
                count.frames as f64 * f64::from(count.page_size) / 1024.0 / nf,
                1,
            )
            .num(
                "counting_run_workflows_per_s",
                nf / counting.elapsed.as_secs_f64(),
                1,
            )
            .text(
                "commits_note",
                "write transactions, counted from the WAL's commit frames in a second run of \
                 the same size with checkpoints held back (a fetch that found nothing writes \
                 nothing and is not counted)",
            );
    } else if !count_commits {
        f.null("commits_per_workflow")
            .text("commits_note", "not counted (--no-commit-count)");
    } else {
        f.null("commits_per_workflow").text(
            "commits_note",
            "not applicable: the memory store has no commits",
        );
    }
    Ok(f)
}

/// Starts `n` workflows on a new store and engine on `env`, waits for all of them, and stops;
/// with `meter`, counts the SQLite commits made meanwhile.
async fn pass(env: &StoreEnv, n: u64, meter: bool, starts: StartStyle) -> Result<Pass> {
    let opened = env.open().await?;
    let wal = env
        .sqlite_path()
        .filter(|_| meter)
        .map(WalMeter::start)
        .transpose()?;
    let session = Session::on(opened).await?;
    let runs: Vec<(String, ())> = (0..n).map(|i| (format!("tp-{i:07}"), ())).collect();
    let ids: Vec<String> = runs.iter().map(|(id, _)| id.clone()).collect();
    let client = &session.client;
    let mut start_ms = Vec::new();
    let started = Instant::now();
    match starts {
        StartStyle::Concurrent => start_all(client, THREE_ACTIVITIES, &runs).await?,
        StartStyle::Loop => {
            start_ms.reserve(runs.len());
            for (id, input) in &runs {
                let one = Instant::now();
                client.start(THREE_ACTIVITIES, input).id(id.clone()).await?;
                start_ms.push(one.elapsed().as_secs_f64() * 1e3);
            }
        }
        StartStyle::Batch => {
            for chunk in runs.chunks(BATCH) {
                client
                    .start_many(
                        chunk.iter().map(|(id, input)| {
                            client.start(THREE_ACTIVITIES, input).id(id.clone())
                        }),
                    )
                    .await?;
            }
        }
        StartStyle::Request => {
            futures::stream::iter(runs.iter().map(|(id, input)| async move {
                client.start(THREE_ACTIVITIES, input).id(id.clone()).await?;
                client.wait_finished(id, Some(WAIT_LIMIT)).await
            }))
            .buffer_unordered(START_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        }
    }
    let start_phase = started.elapsed();
    let finished = wait_all(&*session.store, &session.client, &ids).await?;
    let elapsed = finished.at.duration_since(started);
    let opened = session.shutdown().await;
    let wal = wal.map(WalMeter::finish).transpose()?;
    opened.close().await?;
    // Every instance completed (wait_all checks); the outputs are unit.
    for info in &finished.instances {
        engine::output::<()>(info)?;
    }
    Ok(Pass {
        elapsed,
        start_phase,
        start_ms,
        reads: finished.reads,
        wal,
    })
}
