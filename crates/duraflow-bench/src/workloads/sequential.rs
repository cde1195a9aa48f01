//! `sequential`: one workflow running N sequential no-op activities, then one running N inline
//! steps; milliseconds per operation of each.
//!
//! One short workflow of each kind ([`WARMUP_OPS`] operations) runs first, untimed but
//! reported: a new engine's first workflows pay one-time costs (connections opened, statements
//! prepared, caches filled), which divided by N made the figure depend on N and favoured
//! whichever workflow ran second.

use std::time::{Duration, Instant};

use crate::engine::{SEQUENTIAL_ACTIVITIES, SEQUENTIAL_STEPS};
use crate::report::Figures;
use crate::store::StoreEnv;
use crate::workloads::Session;
use crate::Result;

/// How many operations each warm-up workflow runs.
const WARMUP_OPS: u64 = 2;

/// Runs the workload with `n` operations per workflow.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let session = Session::start(env).await?;
    let warmup_activities = activities(&session, "seq-warmup-activities", WARMUP_OPS).await?;
    let warmup_steps = steps(&session, "seq-warmup-steps", WARMUP_OPS).await?;
    let activities = activities(&session, "seq-activities", n).await?;
    let steps = steps(&session, "seq-steps", n).await?;
    session.stop().await?;
    let nf = n as f64;
    let mut f = Figures::new();
    f.num("activity_ms_per_op", ms(activities) / nf, 3)
        .num("step_ms_per_op", ms(steps) / nf, 4)
        .num("activities_total_ms", ms(activities), 1)
        .num("steps_total_ms", ms(steps), 1)
        .num("warmup_activities_ms", ms(warmup_activities), 2)
        .num("warmup_steps_ms", ms(warmup_steps), 2);
    Ok(f)
}

/// The time of a workflow of `n` sequential activities, checked.
async fn activities(session: &Session, id: &str, n: u64) -> Result<Duration> {
    one(session, SEQUENTIAL_ACTIVITIES, id, n, n).await
}

/// The time of a workflow of `n` sequential inline steps, checked.
async fn steps(session: &Session, id: &str, n: u64) -> Result<Duration> {
    let expected_sum = n * n.saturating_sub(1) / 2;
    one(session, SEQUENTIAL_STEPS, id, n, expected_sum).await
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
