//! `map`: one workflow mapping N items with `max_concurrency(100)`, each item running one
//! at-least-once inline step; the total time, items per second, the journal's length and the
//! process's peak resident memory during the run.

use std::time::Instant;

use crate::engine::MAP_ITEMS;
use crate::report::Figures;
use crate::store::StoreEnv;
use crate::system;
use crate::workloads::Session;
use crate::Result;

/// Runs the workload with `n` items.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let session = Session::start(env).await?;
    let reset = system::reset_peak_rss();
    let rss_before = system::proc_status_kb("VmRSS");
    let started = Instant::now();
    let run = session.client.start(MAP_ITEMS, &n).id("map").await?;
    let succeeded: u64 = session.client.wait(&run).await?;
    let elapsed = started.elapsed();
    let peak = system::proc_status_kb("VmHWM");
    let journal = session.client.history(&run, None).await?.len();
    session.stop().await?;
    if succeeded != n {
        return Err(format!("the map reported {succeeded} successes, expected {n}").into());
    }
    let seconds = elapsed.as_secs_f64();
    let mut f = Figures::new();
    f.num("total_s", seconds, 3)
        .num("items_per_s", n as f64 / seconds, 1)
        .num("ms_per_item", seconds * 1000.0 / n as f64, 4)
        .int("journal_events", journal as u64)
        .num("journal_events_per_item", journal as f64 / n as f64, 2);
    match peak {
        Some(kb) => f.num("peak_rss_mib", kb as f64 / 1024.0, 1),
        None => f.null("peak_rss_mib"),
    };
    match (peak, rss_before) {
        (Some(p), Some(b)) => f.num(
            "peak_rss_growth_mib",
            p.saturating_sub(b) as f64 / 1024.0,
            1,
        ),
        _ => f.null("peak_rss_growth_mib"),
    };
    f.flag("peak_reset_before_run", reset);
    Ok(f)
}
