//! `steps`: inline steps of each durability, one after the other in a workflow; milliseconds per
//! step, alone and with many instances at once.
//!
//! For each of [`Semantics::ALL`] (at least once, at most once, with the turn):
//!
//! - **sequential**: one workflow runs N steps in a row; the figure is its time over N. Every
//!   at-least-once step waits for its result's checkpoint (a store write, fsynced under
//!   `synchronous=FULL`) before the next one starts, and every at-most-once step also waits for
//!   its start's checkpoint before its closure runs, so this is the latency of those writes.
//! - **concurrent**: [`INSTANCES`] workflows of N steps each run at once (started
//!   [`START_CONCURRENCY`](crate::engine::START_CONCURRENCY) at a time); the figures are steps per second over all of them, the
//!   wall time over the total number of steps, and the time per step as each workflow saw it
//!   (the wall time over N). Checkpoints of different instances share group commits here.
//! - On SQLite, unless `--no-commit-count`: the concurrent phase again on a fresh file with the
//!   WAL's commits counted (see [`crate::meter`]), as write transactions per step.

use std::time::{Duration, Instant};

use crate::engine::{start_all, wait_all, Semantics, STEPS_WITH};
use crate::meter::WalMeter;
use crate::report::Figures;
use crate::store::StoreEnv;
use crate::workloads::Session;
use crate::Result;

/// How many workflows run at once in the concurrent phase.
pub(crate) const INSTANCES: u64 = 64;

/// Runs the workload with `n` steps per workflow.
pub(crate) async fn run(env: &StoreEnv, n: u64, count_commits: bool) -> Result<Figures> {
    let expected = n * n.saturating_sub(1) / 2;
    let nf = n as f64;
    let total = (INSTANCES * n) as f64;
    let mut f = Figures::new();
    let session = Session::start(env).await?;
    let mut concurrent = Vec::new();
    for semantics in Semantics::ALL {
        let key = semantics.key();
        let started = Instant::now();
        let run = session
            .client
            .start(STEPS_WITH, &(n, semantics))
            .id(format!("steps-{key}-seq"))
            .await?;
        let output: u64 = session.client.wait(&run).await?;
        let sequential = started.elapsed();
        if output != expected {
            return Err(format!("{key}: the workflow returned {output}, not {expected}").into());
        }
        f.num(
            &format!("{key}_sequential_ms_per_step"),
            ms(sequential) / nf,
            4,
        );
        concurrent.push((key, many(&session, semantics, n, expected, "").await?));
    }
    session.stop().await?;
    for (key, elapsed) in concurrent {
        let seconds = elapsed.as_secs_f64();
        f.num(&format!("{key}_concurrent_steps_per_s"), total / seconds, 1)
            .num(
                &format!("{key}_concurrent_wall_ms_per_step"),
                ms(elapsed) / total,
                4,
            )
            .num(
                &format!("{key}_concurrent_ms_per_step_per_workflow"),
                ms(elapsed) / nf,
                3,
            );
    }
    if count_commits && env.sqlite_path().is_some() {
        for semantics in Semantics::ALL {
            let counting_env = StoreEnv::create(env.kind(), "").await?;
            let counted = count(&counting_env, semantics, n, expected).await;
            counting_env.teardown().await;
            let commits = counted?;
            f.num(
                &format!("{}_concurrent_commits_per_step", semantics.key()),
                commits as f64 / total,
                3,
            );
        }
        f.text(
            "commits_note",
            "write transactions per step in the concurrent phase, counted from the WAL's \
             commit frames in a second run on a fresh file with checkpoints held back",
        );
    } else {
        for semantics in Semantics::ALL {
            f.null(&format!("{}_concurrent_commits_per_step", semantics.key()));
        }
        f.text(
            "commits_note",
            if count_commits {
                "not counted: commits are counted on SQLite only"
            } else {
                "not counted (--no-commit-count)"
            },
        );
    }
    Ok(f)
}

/// Runs [`INSTANCES`] workflows of `n` steps with `semantics` at once and returns the time from
/// the first start to the last completion seen.
async fn many(
    session: &Session,
    semantics: Semantics,
    n: u64,
    expected: u64,
    tag: &str,
) -> Result<Duration> {
    let runs: Vec<(String, (u64, Semantics))> = (0..INSTANCES)
        .map(|i| {
            (
                format!("steps-{}{tag}-{i:03}", semantics.key()),
                (n, semantics),
            )
        })
        .collect();
    let ids: Vec<String> = runs.iter().map(|(id, _)| id.clone()).collect();
    let started = Instant::now();
    start_all(&session.client, STEPS_WITH, &runs).await?;
    let finished = wait_all(&*session.store, &session.client, &ids).await?;
    let elapsed = finished.at.duration_since(started);
    for info in &finished.instances {
        let output: u64 = crate::engine::output(info)?;
        if output != expected {
            return Err(format!("{}: returned {output}, not {expected}", info.id).into());
        }
    }
    Ok(elapsed)
}

/// The concurrent phase of `semantics` on a new store of `env`, with the WAL's commits counted.
async fn count(env: &StoreEnv, semantics: Semantics, n: u64, expected: u64) -> Result<u64> {
    let opened = env.open().await?;
    let path = env.sqlite_path().ok_or("counting needs a SQLite file")?;
    let meter = WalMeter::start(path)?;
    let session = Session::on(opened).await?;
    many(&session, semantics, n, expected, "-counted").await?;
    let opened = session.shutdown().await;
    let wal = meter.finish()?;
    opened.close().await?;
    Ok(wal.commits)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
