//! `fan-out`: one workflow scheduling N no-op activities at once and joining them; the total
//! time and the process's peak resident memory during the run.

use std::time::Instant;

use crate::engine::FAN_OUT;
use crate::report::Figures;
use crate::store::StoreEnv;
use crate::system;
use crate::workloads::Session;
use crate::Result;

/// Runs the workload with `n` activities.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let session = Session::start(env).await?;
    // The peak is measured from here: earlier workloads in the same process do not count.
    let reset = system::reset_peak_rss();
    let rss_before = system::proc_status_kb("VmRSS");
    let started = Instant::now();
    let run = session.client.start(FAN_OUT, &n).id("fan-out").await?;
    let joined: u64 = session.client.wait(&run).await?;
    let elapsed = started.elapsed();
    let peak = system::proc_status_kb("VmHWM");
    session.stop().await?;
    if joined != n {
        return Err(format!("the fan-out joined {joined} activities, expected {n}").into());
    }
    let seconds = elapsed.as_secs_f64();
    let mut f = Figures::new();
    f.num("total_s", seconds, 3)
        .num("activities_per_s", n as f64 / seconds, 1);
    match peak {
        Some(kb) => f.num("peak_rss_mib", kb as f64 / 1024.0, 1),
        None => f.null("peak_rss_mib"),
    };
    match rss_before {
        Some(kb) => f.num("rss_before_mib", kb as f64 / 1024.0, 1),
        None => f.null("rss_before_mib"),
    };
    // In a process that ran other workloads first, the RSS before includes memory the
    // allocator kept from them; the growth is the run's own.
    match (peak, rss_before) {
        (Some(p), Some(b)) => f.num(
            "peak_rss_growth_mib",
            p.saturating_sub(b) as f64 / 1024.0,
            1,
        ),
        _ => f.null("peak_rss_growth_mib"),
    };
    f.flag("peak_reset_before_run", reset);
    if !reset {
        f.text(
            "peak_note",
            "VmHWM could not be reset: the peak is since the process started",
        );
    }
    Ok(f)
}
