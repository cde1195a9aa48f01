//! Several worker processes sharing one PostgreSQL schema, one of them killed with SIGKILL
//! midway: three workers start the same workflows by id (starting is idempotent) and run them
//! together; once the side-effect log shows progress, worker 0 is killed and a replacement
//! (worker 3) is started. Afterwards every workflow has completed with the right output, each
//! activity result is journaled exactly once, every activity ran at least once, and the only
//! activities that ran twice are ones the killed worker had run (at most as many as it ran at
//! once).
//!
//! `DURAFLOW_PG_WORKFLOWS` (default 1,000 workflows of 4 activities) sets the size and
//! `DURAFLOW_PG_KILL_AT` (default 25) the percentage of activities logged before the kill.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[allow(dead_code, reason = "each test file uses part of the helpers")]
mod common;

use std::time::Instant;

use common::{
    check_every_activity_ran, check_journals, env_number, wait_until, Pg, WorkerSpec, Workers,
};
use duraflow_crashtest::{read_log, ACTIVITIES, DEFAULT_ACTIVITY_CONCURRENCY};

/// The worker that is killed.
const VICTIM: u32 = 0;
/// The worker started in its place.
const REPLACEMENT: u32 = 3;

#[test]
fn workers_sharing_a_schema_survive_one_being_killed() {
    let workflows = env_number("DURAFLOW_PG_WORKFLOWS", 1_000);
    let kill_at = env_number("DURAFLOW_PG_KILL_AT", 25).min(90);
    let activities = workflows * ACTIVITIES as usize;
    let concurrency = DEFAULT_ACTIVITY_CONCURRENCY;
    let pg = Pg::connect();
    let schema = pg.fresh_schema("crash_workers");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("effects.log");
    let spec = WorkerSpec {
        store: &pg.url,
        schema: &schema.name,
        log: &log,
        workflows,
        activity_concurrency: concurrency,
    };
    let started = Instant::now();

    // Three workers at once: they create the schema, migrate it and start the same workflows.
    let mut workers = Workers::default();
    for generation in 0..3 {
        workers.spawn(&spec, generation);
    }

    // Kill worker 0 once a share of the work is done and it has run some of it.
    let kill_point = (activities * kill_at / 100).max(1);
    wait_until("progress before the kill", || {
        assert!(
            workers.running(VICTIM),
            "worker {VICTIM} exited before the kill point; raise DURAFLOW_PG_WORKFLOWS"
        );
        let lines = read_log(&log);
        lines.len() >= kill_point && lines.iter().any(|l| l.generation == VICTIM)
    });
    workers.kill(VICTIM);
    let logged_at_kill = read_log(&log).len();
    workers.spawn(&spec, REPLACEMENT);

    for generation in [1, 2, REPLACEMENT] {
        let status = workers.wait(generation);
        assert!(status.success(), "worker {generation} failed: {status}");
    }
    let elapsed = started.elapsed();

    let store = pg.store(&pg.url, &schema.name);
    check_journals(&pg, &store, workflows);
    drop(store);

    // Every activity ran; one ran again only after the killed worker had run it, never twice in
    // a surviving worker.
    let lines = read_log(&log);
    let runs = check_every_activity_ran(&lines, workflows);
    let mut reruns = 0;
    for ((instance, op), generations) in &runs {
        let (last, earlier) = generations.split_last().unwrap();
        if earlier.is_empty() {
            continue;
        }
        assert!(
            earlier == [VICTIM] && *last != VICTIM,
            "{instance} {op} re-ran, but only an activity the killed worker was running may, \
             once: {generations:?}"
        );
        reruns += earlier.len();
    }
    assert!(
        reruns <= concurrency,
        "{reruns} re-executions, but the killed worker ran at most {concurrency} at once"
    );
    let per_worker = |g: u32| lines.iter().filter(|l| l.generation == g).count();
    println!(
        "postgres workers: {workflows} workflows, {activities} activities, {} executions, \
         {reruns} re-executed; killed worker {VICTIM} after {logged_at_kill} logged executions \
         (its own: {}); executions by workers 1, 2, 3: {}, {}, {}; {:.1} s",
        lines.len(),
        per_worker(VICTIM),
        per_worker(1),
        per_worker(2),
        per_worker(REPLACEMENT),
        elapsed.as_secs_f64()
    );
}
