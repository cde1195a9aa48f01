//! `replay`: how the cost of a workflow's next turn grows with the operations it has already
//! completed.
//!
//! For each K of the series N/1000, N/100, N/10, N (those ≥ 1; 10, 100, 1,000 and 10,000 by
//! default), [`SAMPLES`] workflows each run K inline steps (two journal events each) and then
//! wait for the event `go`. Once a workflow is parked (running, its journal ending with the
//! wait), `go` is raised and the time from the raise call until the workflow is seen
//! completed is measured: the next turn, which must rebuild the workflow's state (replay its
//! journal, or find it warm in memory), deliver the event and commit the completion.
//!
//! It is measured twice, on different workflows:
//!
//! - **warm**: the engine that ran the first turn raises the event, right after the K
//!   workflows of that size have parked (the best case for an engine keeping instances in
//!   memory);
//! - **cold**: the workflows of every size are parked, the engine is shut down, and a new
//!   engine is started before raising: for SQLite and PostgreSQL on a newly opened store, for
//!   the memory store on the same `MemoryStore` (it would be empty otherwise). No instance can
//!   be warm, so the turn replays the whole journal. The operating system's page cache is
//!   still warm.
//!
//! Each phase begins with one uncounted raise on a workflow of the smallest size, so that
//! connection set-up and first-use costs do not land on a measured sample. The cold phase
//! measures round-robin over the sizes, so drift on a noisy machine spreads over all of them.
//!
//! `flatness` is the p50 at the largest K over the p50 at the smallest.

use std::time::Duration;

use crate::engine::{self, start_all, GO, STEPS_THEN_WAIT};
use crate::report::Figures;
use crate::stats;
use crate::store::{StoreEnv, StoreKind};
use crate::workloads::events::{resume, wait_parked};
use crate::workloads::Session;
use crate::Result;

/// Workflows measured per size and phase.
pub(crate) const SAMPLES: usize = 5;

/// The longest any one workflow may take to park, or to complete after its event.
const LIMIT: Duration = Duration::from_secs(600);

/// The data raised with `go` (checked in the output).
const GO_DATA: u64 = 7;

/// The sizes for `--n` = `n`: n/1000, n/100, n/10 and n, those ≥ 1, ascending, without
/// repeats.
pub(crate) fn sizes(n: u64) -> Vec<u64> {
    let mut ks: Vec<u64> = [n / 1000, n / 100, n / 10, n]
        .into_iter()
        .filter(|k| *k >= 1)
        .collect();
    ks.dedup();
    ks
}

/// One measured workflow.
struct Sample {
    k: u64,
    id: String,
}

/// What one phase measured for one size.
#[derive(Default)]
struct Measured {
    ms: Vec<f64>,
    journal_events: Vec<usize>,
}

/// Runs the workload with `n` operations in the largest workflow.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let ks = sizes(n);
    let kmin = ks.first().copied().ok_or("the series of sizes is empty")?;
    let session = Session::start(env).await?;
    let warm = warm_phase(&session, &ks, kmin).await?;

    eprintln!("duraflow-bench: replay: cold, parking {SAMPLES} workflows of each size");
    let warmup = Sample {
        k: kmin,
        id: "rp-cold-warmup".into(),
    };
    let mut parked = vec![warmup];
    for &k in &ks {
        parked.extend(samples("cold", k));
    }
    park(&session, &parked).await?;
    let session = restart(env, session).await?;
    let cold = cold_phase(&session, &ks, &parked).await?;
    session.stop().await?;

    let mut f = Figures::new();
    for (phase, measured) in [("warm", &warm), ("cold", &cold)] {
        for (k, m) in ks.iter().zip(measured) {
            let sorted = stats::sorted(m.ms.clone());
            f.num(
                &format!("{phase}_next_turn_ms_p50_k{k}"),
                stats::percentile(&sorted, 50.0),
                3,
            )
            .num(
                &format!("{phase}_next_turn_ms_max_k{k}"),
                stats::max(&sorted),
                3,
            );
        }
    }
    for (k, m) in ks.iter().zip(&warm) {
        let events = m.journal_events.iter().copied().max().unwrap_or(0);
        f.int(&format!("journal_events_k{k}"), events as u64);
    }
    f.num("warm_flatness", flatness(&warm), 2)
        .num("cold_flatness", flatness(&cold), 2)
        .text(
            "flatness_note",
            "p50 of the next turn at the largest K over the p50 at the smallest; the next turn \
             is timed from the raise of the event to the workflow seen completed",
        );
    Ok(f)
}

/// The p50 at the largest size over the p50 at the smallest.
fn flatness(measured: &[Measured]) -> f64 {
    let p50 = |m: Option<&Measured>| m.map_or(0.0, |m| stats::median(&stats::sorted(m.ms.clone())));
    p50(measured.last()) / p50(measured.first())
}

/// Every size in turn, measured right after its workflows have parked, on the engine that ran
/// their first turn.
async fn warm_phase(session: &Session, ks: &[u64], kmin: u64) -> Result<Vec<Measured>> {
    let warmup = Sample {
        k: kmin,
        id: "rp-warm-warmup".into(),
    };
    park(session, std::slice::from_ref(&warmup)).await?;
    measure(session, &warmup).await?;
    let mut warm = Vec::with_capacity(ks.len());
    for &k in ks {
        eprintln!("duraflow-bench: replay: warm, {SAMPLES} workflows of {k} operations");
        let samples = samples("warm", k);
        let journal_events = park(session, &samples).await?;
        let mut ms = Vec::with_capacity(SAMPLES);
        for s in &samples {
            ms.push(measure(session, s).await?);
        }
        warm.push(Measured { ms, journal_events });
    }
    Ok(warm)
}

/// Raises the events of the workflows `parked` (the warm-up first, uncounted), round-robin
/// over the sizes, on an engine that never ran them.
async fn cold_phase(session: &Session, ks: &[u64], parked: &[Sample]) -> Result<Vec<Measured>> {
    let (warmup, measured) = parked.split_at(1);
    for s in warmup {
        measure(session, s).await?;
    }
    let mut cold: Vec<Measured> = ks.iter().map(|_| Measured::default()).collect();
    for round in 0..SAMPLES {
        for (slot, k) in cold.iter_mut().zip(ks) {
            let s = measured
                .iter()
                .filter(|s| s.k == *k)
                .nth(round)
                .ok_or("a cold sample is missing")?;
            slot.ms.push(measure(session, s).await?);
        }
    }
    Ok(cold)
}

/// The [`SAMPLES`] workflows of size `k` of a phase.
fn samples(phase: &str, k: u64) -> Vec<Sample> {
    (0..SAMPLES)
        .map(|r| Sample {
            k,
            id: format!("rp-{phase}-k{k}-{r}"),
        })
        .collect()
}

/// Starts `samples` and waits until each is parked; returns their journal lengths.
async fn park(session: &Session, samples: &[Sample]) -> Result<Vec<usize>> {
    let runs: Vec<(String, u64)> = samples.iter().map(|s| (s.id.clone(), s.k)).collect();
    start_all(&session.client, STEPS_THEN_WAIT, &runs).await?;
    let mut lengths = Vec::with_capacity(samples.len());
    for s in samples {
        lengths.push(wait_parked(&*session.store, &session.client, &s.id, LIMIT).await?);
    }
    Ok(lengths)
}

/// Raises `go` on a parked sample, waits for it to complete and checks its output; returns
/// the milliseconds it took.
async fn measure(session: &Session, sample: &Sample) -> Result<f64> {
    let (ms, info) = resume(&session.client, &sample.id, GO, GO_DATA, LIMIT).await?;
    let output: u64 = engine::output(&info)?;
    let expected = engine::steps_then_wait_output(sample.k, GO_DATA);
    if output != expected {
        return Err(format!(
            "workflow {} of {} steps returned {output}, expected {expected}",
            sample.id, sample.k
        )
        .into());
    }
    Ok(ms)
}

/// Shuts the session's engine down and starts a new one: on a newly opened store for SQLite
/// and PostgreSQL, on the same store for memory (a new one would be empty).
async fn restart(env: &StoreEnv, session: Session) -> Result<Session> {
    let opened = session.shutdown().await;
    let opened = if env.kind() == StoreKind::Memory {
        opened
    } else {
        opened.close().await?;
        env.open().await?
    };
    Session::on(opened).await
}

#[cfg(test)]
mod tests {
    use super::sizes;

    #[test]
    fn the_series_ends_at_n() {
        assert_eq!(sizes(10_000), vec![10, 100, 1_000, 10_000]);
        assert_eq!(sizes(10), vec![1, 10]);
        assert_eq!(sizes(100), vec![1, 10, 100]);
        assert_eq!(sizes(5_000), vec![5, 50, 500, 5_000]);
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(3), vec![3]);
    }
}
