//! `timers`: N workflows each sleeping a uniform random time between `--min-sleep-ms` and
//! `--max-sleep-ms` on a durable timer (system clock). Lateness is the time from a timer's
//! fire time to when its workflow saw it: the system time read by an inline step right after
//! the sleep (µs), and the workflow's `now()` after the sleep (ms). A timer seen before its
//! fire time is a correctness violation. `last_timer_set_s` is when the last workflow set its
//! timer (its first turn), from the first start call: while first turns are still queued, the
//! earliest timers compete with them.

use std::time::Instant;

use duraflow::Timestamp;

use crate::cli::Config;
use crate::engine::{self, start_all, wait_all, Woke, SLEEPER};
use crate::report::Figures;
use crate::stats;
use crate::store::StoreEnv;
use crate::workloads::Session;
use crate::Result;

/// Runs the workload with `n` sleeping workflows.
pub(crate) async fn run(env: &StoreEnv, n: u64, config: &Config) -> Result<Figures> {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let runs: Vec<(String, u64)> = (0..n)
        .map(|i| {
            (
                format!("tm-{i:07}"),
                rng.u64(config.min_sleep_ms..=config.max_sleep_ms),
            )
        })
        .collect();
    let ids: Vec<String> = runs.iter().map(|(id, _)| id.clone()).collect();
    let session = Session::start(env).await?;
    let started_at_ms = Timestamp::now_system().as_millis();
    let started = Instant::now();
    start_all(&session.client, SLEEPER, &runs).await?;
    let start_phase = started.elapsed();
    let finished = wait_all(&*session.store, &session.client, &ids).await?;
    let total = finished.at.duration_since(started);
    session.stop().await?;

    let mut observed = Vec::with_capacity(ids.len());
    let mut by_now = Vec::with_capacity(ids.len());
    let mut early = 0u64;
    let mut early_by_now = 0u64;
    let mut last_set_ms = started_at_ms;
    for (info, (_, sleep_ms)) in finished.instances.iter().zip(&runs) {
        let woke: Woke = engine::output(info)?;
        let set_at_ms = woke.fire_at_ms - i64::try_from(*sleep_ms).unwrap_or(i64::MAX);
        last_set_ms = last_set_ms.max(set_at_ms);
        let late_us = woke.observed_us - woke.fire_at_ms.saturating_mul(1000);
        let late_ms_by_now = woke.now_after_ms - woke.fire_at_ms;
        if late_us < 0 {
            early += 1;
        }
        if late_ms_by_now < 0 {
            early_by_now += 1;
        }
        observed.push(late_us as f64 / 1000.0);
        by_now.push(late_ms_by_now as f64);
    }
    let observed = stats::sorted(observed);
    let by_now = stats::sorted(by_now);
    let mut f = Figures::new();
    f.num("lateness_p50_ms", stats::percentile(&observed, 50.0), 3)
        .num("lateness_p99_ms", stats::percentile(&observed, 99.0), 3)
        .num("lateness_max_ms", stats::max(&observed), 3)
        .int("fired_early", early + early_by_now)
        .num("now_lateness_p50_ms", stats::percentile(&by_now, 50.0), 0)
        .num("now_lateness_p99_ms", stats::percentile(&by_now, 99.0), 0)
        .num("now_lateness_max_ms", stats::max(&by_now), 0)
        .num("start_phase_s", start_phase.as_secs_f64(), 3)
        .num(
            "last_timer_set_s",
            (last_set_ms - started_at_ms) as f64 / 1000.0,
            3,
        )
        .num("total_s", total.as_secs_f64(), 3);
    if early + early_by_now > 0 {
        f.violation(format!(
            "{early} timers seen early by the step's system time, {early_by_now} by now()"
        ));
    }
    Ok(f)
}
