//! `parked`: N workflows waiting for an event. What each costs while it waits (process memory
//! and database bytes) and how long one takes to resume when its event comes.
//!
//! 1. N workflows are started (64 starts in flight); each waits for the event `wake` in its
//!    first turn and then completes with the event's data.
//! 2. The benchmark waits until all are parked, from the store's counts (every instance
//!    running and no message left in any inbox: each first turn has committed), checking the
//!    journals of a few that they end with the wait.
//! 3. With the engine idle, it reads the process's resident memory (`VmRSS`) and the store's
//!    size: for SQLite the database file plus its WAL after a `wal_checkpoint(TRUNCATE)`, for
//!    PostgreSQL `pg_total_relation_size` over the schema's tables (indexes, TOAST and dead
//!    rows not yet vacuumed included). Each is reported as the growth over the value before
//!    the first start, divided by N.
//! 4. It raises `wake` on a sample of [`SAMPLES`] workflows (all of them when N is smaller),
//!    spread evenly over the population, one at a time, and times each from the raise call to
//!    the workflow seen completed.
//!
//! The RSS growth is the whole process's: the engine, the store's caches, and memory the
//! allocator kept from the start phase; for the memory store it also holds the store's data.

use std::path::Path;
use std::time::{Duration, Instant};

use duraflow::InstanceStatus;

use crate::engine::{self, start_all, PARKED, WAKE};
use crate::report::Figures;
use crate::stats;
use crate::store::StoreEnv;
use crate::system;
use crate::workloads::events::{resume, wait_parked};
use crate::workloads::Session;
use crate::Result;

/// How many workflows are woken and timed (all of them when N is smaller).
pub(crate) const SAMPLES: u64 = 1_000;

/// Workflows started between two progress lines.
const CHUNK: usize = 10_000;

/// How often the store's counts are read while waiting for the workflows to park.
const POLL: Duration = Duration::from_millis(200);

/// How long one woken workflow may take to complete.
const RESUME_LIMIT: Duration = Duration::from_secs(120);

/// The id of parked workflow `i`.
fn id(i: u64) -> String {
    format!("pk-{i:07}")
}

/// Runs the workload with `n` parked workflows.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let session = Session::start(env).await?;
    let bytes_before = db_bytes(env).await?;
    let rss_before = system::proc_status_kb("VmRSS");
    let peak_reset = system::reset_peak_rss();

    // 1. Start them.
    let started = Instant::now();
    let runs: Vec<(String, ())> = (0..n).map(|i| (id(i), ())).collect();
    for (c, chunk) in runs.chunks(CHUNK).enumerate() {
        start_all(&session.client, PARKED, chunk).await?;
        if runs.len() > CHUNK {
            eprintln!(
                "duraflow-bench: parked: started {} of {n} after {:.1} s",
                (c * CHUNK + chunk.len()),
                started.elapsed().as_secs_f64()
            );
        }
    }
    drop(runs);
    let start_phase = started.elapsed();

    // 2. Wait until every first turn has committed.
    let limit = Duration::from_secs(600) + Duration::from_millis(10).saturating_mul(clamp(n));
    wait_all_parked(&session, n, started, limit).await?;
    let parked_after = started.elapsed();
    for i in [0, n / 2, n - 1] {
        wait_parked(&*session.store, &session.client, &id(i), RESUME_LIMIT).await?;
    }

    // 3. Memory and bytes while they wait.
    let rss_parked = system::proc_status_kb("VmRSS");
    let peak = system::proc_status_kb("VmHWM");
    let bytes_parked = db_bytes(env).await?;

    // 4. Wake a sample, one at a time.
    eprintln!("duraflow-bench: parked: all {n} parked; waking a sample");
    let m = n.min(SAMPLES);
    let mut resumes = Vec::with_capacity(clamp(m) as usize);
    for j in 0..m {
        let i = j * n / m;
        let (ms, info) = resume(&session.client, &id(i), WAKE, i, RESUME_LIMIT).await?;
        let output: u64 = engine::output(&info)?;
        if output != i {
            return Err(format!("workflow {} returned {output}, expected {i}", id(i)).into());
        }
        resumes.push(ms);
    }
    session.stop().await?;

    let nf = n as f64;
    let mut f = Figures::new();
    match (rss_before, rss_parked) {
        (Some(b), Some(p)) => f.num(
            "rss_bytes_per_workflow",
            p.saturating_sub(b) as f64 * 1024.0 / nf,
            0,
        ),
        _ => f.null("rss_bytes_per_workflow"),
    };
    match (bytes_before, bytes_parked) {
        (Some(b), Some(p)) => f
            .num("db_bytes_per_workflow", p.saturating_sub(b) as f64 / nf, 0)
            .int("db_bytes_parked", p),
        _ => f.null("db_bytes_per_workflow").null("db_bytes_parked"),
    };
    let sorted = stats::sorted(resumes);
    f.num("resume_p50_ms", stats::percentile(&sorted, 50.0), 3)
        .num("resume_p99_ms", stats::percentile(&sorted, 99.0), 3)
        .num("resume_max_ms", stats::max(&sorted), 3)
        .int("resume_samples", m);
    for (key, kb) in [
        ("rss_before_mib", rss_before),
        ("rss_parked_mib", rss_parked),
        ("peak_rss_mib", peak.filter(|_| peak_reset)),
    ] {
        match kb {
            Some(kb) => f.num(key, kb as f64 / 1024.0, 1),
            None => f.null(key),
        };
    }
    f.num("start_phase_s", start_phase.as_secs_f64(), 3)
        .num("all_parked_s", parked_after.as_secs_f64(), 3)
        .num("parked_per_s", nf / parked_after.as_secs_f64(), 1)
        .text(
            "rss_note",
            if env.postgres().is_none() && env.sqlite_path().is_none() {
                "growth of the whole process's VmRSS while the workflows wait, over N; for the \
                 memory store it includes the store's data"
            } else {
                "growth of the whole process's VmRSS while the workflows wait, over N: the \
                 engine, the store's caches and memory the allocator kept from the start phase"
            },
        )
        .text(
            "db_bytes_note",
            match (env.sqlite_path(), env.postgres()) {
                (Some(_), _) => {
                    "growth of the SQLite file plus its WAL after a wal_checkpoint(TRUNCATE), \
                     over N"
                }
                (None, Some(_)) => {
                    "growth of pg_total_relation_size over the schema's tables (indexes, TOAST \
                     and dead rows not yet vacuumed included), over N"
                }
                (None, None) => "not applicable: the memory store keeps its data in the process",
            },
        );
    Ok(f)
}

/// `n` as a `u32` for durations, saturated.
fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Waits until the store counts `n` running instances and no inbox message left: every first
/// turn has committed (the start message is consumed in the turn that reaches the wait).
async fn wait_all_parked(
    session: &Session,
    n: u64,
    started: Instant,
    limit: Duration,
) -> Result<()> {
    let mut reported = Instant::now();
    loop {
        let s = duraflow::management_of(&*session.store)?.stats().await?;
        let count = |status: InstanceStatus| {
            s.instances
                .iter()
                .find(|(st, _)| *st == status)
                .map_or(0, |(_, c)| *c)
        };
        let running = count(InstanceStatus::Running);
        let total: u64 = s.instances.iter().map(|(_, c)| *c).sum();
        if total > running + count(InstanceStatus::Pending) {
            return Err(format!(
                "some parked workflows ended before their event was raised: {:?}",
                s.instances
            )
            .into());
        }
        if running == n && s.messages == 0 {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "only {running} of {n} workflows were parked after {limit:?} ({} messages \
                 still waiting)",
                s.messages
            )
            .into());
        }
        if reported.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "duraflow-bench: parked: {running} of {n} parked after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The store's size in bytes: SQLite file plus WAL after a checkpoint, or the PostgreSQL
/// schema's relations; `None` for the memory store.
async fn db_bytes(env: &StoreEnv) -> Result<Option<u64>> {
    if let Some(path) = env.sqlite_path() {
        let path = path.to_owned();
        let bytes = tokio::task::spawn_blocking(move || sqlite_bytes(&path))
            .await
            .map_err(|e| format!("measuring the SQLite file failed: {e}"))??;
        return Ok(Some(bytes));
    }
    if let Some(pg) = env.postgres() {
        return Ok(Some(pg.schema_bytes().await?));
    }
    Ok(None)
}

/// Checkpoints the WAL of the SQLite file at `db` (from a connection of its own; the store
/// stays open) and returns the size of the file plus what remains of the WAL.
fn sqlite_bytes(db: &Path) -> Result<u64> {
    let conn = rusqlite::Connection::open(db)
        .map_err(|e| format!("cannot open {} to measure it: {e}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        eprintln!(
            "duraflow-bench: parked: the WAL checkpoint of {} was blocked; the size includes \
             the WAL",
            db.display()
        );
    }
    drop(conn);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    Ok(size(db) + size(Path::new(&wal)))
}
