//! A poison activity on SQLite, with real processes: the activity kills its worker process
//! (SIGKILL) on every attempt, and a supervisor starts the worker again each time. The engine
//! counts each lost attempt: after the retry policy's three attempts, the next worker fails the
//! activity with `lease_expired` instead of running it a fourth time, and the workflow, which
//! returns the failure it saw, completes.
//!
//! The leases are an hour long: each restarted worker takes over the killed one's lease through
//! its owner file at once, so the test does not wait for leases to expire.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[allow(dead_code, reason = "each test file uses part of the helpers")]
mod common;

use common::poison::{check_poison_outcome, supervise, PoisonSpec};
use duraflow::SqliteStore;
use duraflow_crashtest::POISON_ATTEMPTS;

#[test]
fn an_activity_that_kills_its_worker_every_time_fails_after_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("poison.db");
    let log = dir.path().join("effects.log");
    let store = format!("sqlite:{}", db.display());
    let spec = PoisonSpec {
        store: &store,
        schema: "unused",
        log: &log,
        lease_ms: 3_600_000,
    };
    let endings = supervise(&spec, POISON_ATTEMPTS + 3);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        check_poison_outcome(&store, &log, &endings).await;
    });
}
