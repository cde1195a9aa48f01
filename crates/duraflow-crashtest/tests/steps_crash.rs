//! Inline steps under SIGKILL on SQLite: a worker running workflows of at-most-once and
//! at-least-once steps is killed at random moments and restarted; see `common::steps` for what
//! is checked. `DURAFLOW_CRASH_KILLS` (default 8), `DURAFLOW_CRASH_WORKFLOWS` (default 100) and
//! `DURAFLOW_CRASH_SEED` (default: random, printed) set the run.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[allow(dead_code, reason = "each test file uses part of the helpers")]
mod common;

use std::sync::Arc;

use duraflow::prelude::*;
use duraflow::Store;

#[test]
fn sigkilled_steps_run_at_most_once_or_again_only_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("steps.db");
    let mut store = std::ffi::OsString::from("sqlite:");
    store.push(&db);
    let rt = tokio::runtime::Runtime::new().unwrap();
    common::steps::sigkill_steps("steps crash test", &store, &[], &rt, || {
        let store: Arc<dyn Store> = Arc::new(rt.block_on(SqliteStore::open(&db)).unwrap());
        store
    });
}
