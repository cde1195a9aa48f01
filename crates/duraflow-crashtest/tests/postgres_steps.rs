//! Inline steps under SIGKILL on PostgreSQL: a worker running workflows of at-most-once and
//! at-least-once steps is killed at random moments and restarted; see `common::steps` for what
//! is checked. `DURAFLOW_CRASH_KILLS` (default 8), `DURAFLOW_CRASH_WORKFLOWS` (default 100) and
//! `DURAFLOW_CRASH_SEED` (default: random, printed) set the run.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[allow(dead_code, reason = "each test file uses part of the helpers")]
mod common;

use std::sync::Arc;

use duraflow::Store;
use duraflow_crashtest::SCHEMA_VAR;

#[test]
fn sigkilled_steps_on_postgres_run_at_most_once_or_again_only_after_a_kill() {
    let pg = common::Pg::connect();
    let schema = pg.fresh_schema("crash_steps");
    let store = std::ffi::OsString::from(&pg.url);
    common::steps::sigkill_steps(
        "postgres steps crash test",
        &store,
        &[(SCHEMA_VAR, schema.name.as_str())],
        &pg.rt,
        || {
            let store: Arc<dyn Store> = Arc::new(pg.store(&pg.url, &schema.name));
            store
        },
    );
}
