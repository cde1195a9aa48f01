//! `start-latency`: N times in a row, start an empty workflow and wait for its result;
//! percentiles of the time from the start call to the result, in milliseconds.

use std::time::Instant;

use crate::engine::EMPTY;
use crate::report::Figures;
use crate::stats;
use crate::store::StoreEnv;
use crate::workloads::Session;
use crate::Result;

/// Runs the workload with `n` starts.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let session = Session::start(env).await?;
    let mut latencies = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let run = session
            .client
            .start(EMPTY, &())
            .id(format!("sl-{i:07}"))
            .await?;
        let () = session.client.wait(&run).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let total = started.elapsed();
    session.stop().await?;
    let mean = stats::mean(&latencies);
    let sorted = stats::sorted(latencies);
    let mut f = Figures::new();
    f.num("p50_ms", stats::percentile(&sorted, 50.0), 3)
        .num("p99_ms", stats::percentile(&sorted, 99.0), 3)
        .num("max_ms", stats::max(&sorted), 3)
        .num("mean_ms", mean, 3)
        .num("total_s", total.as_secs_f64(), 3);
    Ok(f)
}
