//! The database going away under running workers: two worker processes run a few hundred
//! workflows on PostgreSQL while the test terminates every one of their connections
//! (`pg_terminate_backend`, as a server restart or failover would) at a few progress points.
//! The workers reconnect and carry on; afterwards every workflow has completed with the right
//! output and each activity result is journaled exactly once. The server itself is never
//! restarted: other tests share it.
//!
//! `DURAFLOW_PG_RESTART_WORKFLOWS` (default 300) sets the size and
//! `DURAFLOW_PG_TERMINATIONS` (default 3) how many times the connections are cut.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[allow(dead_code, reason = "each test file uses part of the helpers")]
mod common;

use common::{
    check_every_activity_ran, check_journals, env_number, wait_until, Pg, WorkerSpec, Workers,
};
use duraflow_crashtest::{read_log, ACTIVITIES, DEFAULT_ACTIVITY_CONCURRENCY};

const WORKERS: [u32; 2] = [0, 1];

#[test]
fn workers_carry_on_when_their_connections_are_terminated() {
    let workflows = env_number("DURAFLOW_PG_RESTART_WORKFLOWS", 300);
    let rounds = env_number("DURAFLOW_PG_TERMINATIONS", 3).max(1);
    let activities = workflows * ACTIVITIES as usize;
    let pg = Pg::connect();
    let schema = pg.fresh_schema("crash_restart");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("effects.log");
    let spec = WorkerSpec {
        store: &pg.url,
        schema: &schema.name,
        log: &log,
        workflows,
        activity_concurrency: DEFAULT_ACTIVITY_CONCURRENCY,
    };

    let mut workers = Workers::default();
    for generation in WORKERS {
        workers.spawn(&spec, generation);
    }

    // Cut every worker connection at evenly spread points of progress (by the side-effect log),
    // each after the workers have made progress on new connections.
    let mut terminated = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let point = activities * round / (rounds + 1);
        wait_until(&format!("progress to {point} executions"), || {
            for generation in WORKERS {
                assert!(
                    workers.running(generation),
                    "worker {generation} exited before termination {round}; raise \
                     DURAFLOW_PG_RESTART_WORKFLOWS"
                );
            }
            read_log(&log).len() >= point
        });
        let n = pg.terminate_worker_connections(&schema.name);
        assert!(n > 0, "termination {round} found no worker connections");
        terminated.push(n);
    }

    for generation in WORKERS {
        let status = workers.wait(generation);
        assert!(status.success(), "worker {generation} failed: {status}");
    }

    let store = pg.store(&pg.url, &schema.name);
    check_journals(&pg, &store, workflows);
    drop(store);

    let lines = read_log(&log);
    let runs = check_every_activity_ran(&lines, workflows);
    let reruns: usize = runs.values().map(|g| g.len() - 1).sum();
    println!(
        "postgres restart: {workflows} workflows, {activities} activities, {} executions, \
         {reruns} re-executed; {} worker connections terminated in {rounds} rounds ({terminated:?})",
        lines.len(),
        terminated.iter().sum::<usize>(),
    );
}
