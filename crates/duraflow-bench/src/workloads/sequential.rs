//! `sequential`: one workflow running N sequential no-op activities, then one running N inline
//! steps; milliseconds per operation of each.

use std::time::{Duration, Instant};

use crate::engine::{SEQUENTIAL_ACTIVITIES, SEQUENTIAL_STEPS};
use crate::report::Figures;
use crate::store::StoreEnv;
use crate::workloads::Session;
use crate::Result;

/// Runs the workload with `n` operations per workflow.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let session = Session::start(env).await?;
    let activities = one(&session, SEQUENTIAL_ACTIVITIES, "seq-activities", n, n).await?;
    let expected_sum = n * n.saturating_sub(1) / 2;
    let steps = one(&session, SEQUENTIAL_STEPS, "seq-steps", n, expected_sum).await?;
    session.stop().await?;
    let nf = n as f64;
    let mut f = Figures::new();
    f.num("activity_ms_per_op", ms(activities) / nf, 3)
        .num("step_ms_per_op", ms(steps) / nf, 4)
        .num("activities_total_ms", ms(activities), 1)
        .num("steps_total_ms", ms(steps), 1);
    Ok(f)
}

/// Starts `workflow` with `n`, waits for it and checks its output is `expected`.
async fn one(
    session: &Session,
    workflow: &str,
    id: &str,
    n: u64,
    expected: u64,
) -> Result<Duration> {
    let started = Instant::now();
    let run = session.client.start(workflow, &n).id(id).await?;
    let output: u64 = session.client.wait(&run).await?;
    let elapsed = started.elapsed();
    if output != expected {
        return Err(format!("{workflow} returned {output}, expected {expected}").into());
    }
    Ok(elapsed)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
