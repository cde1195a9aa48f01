//! A poison activity on PostgreSQL, with real processes: the activity kills its worker process
//! (SIGKILL) on every attempt, and a supervisor starts the worker again each time. Each
//! restarted worker counts the lost attempt, and after the retry policy's three attempts the
//! next worker fails the activity with `lease_expired` instead of running it a fourth time. The
//! workflow, which returns the failure it saw, completes.
//!
//! The leases are an hour long: the killed worker's lock session ends with its process, so
//! the restarted worker releases its leases through the schema's lease owners (see the
//! PostgreSQL store) at once, and the test does not wait for leases to expire.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[allow(dead_code, reason = "each test file uses part of the helpers")]
mod common;

use common::poison::{check_poison_outcome, supervise, PoisonSpec};
use common::Pg;
use duraflow_crashtest::POISON_ATTEMPTS;

#[test]
fn an_activity_that_kills_its_worker_every_time_fails_after_its_attempts() {
    let pg = Pg::connect();
    let schema = pg.fresh_schema("crash_poison");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("effects.log");
    let spec = PoisonSpec {
        store: &pg.url,
        schema: &schema.name,
        log: &log,
        lease_ms: 3_600_000,
    };
    let endings = supervise(&spec, POISON_ATTEMPTS + 3);

    let store = pg.store(&pg.url, &schema.name);
    pg.rt.block_on(check_poison_outcome(&store, &log, &endings));
}
