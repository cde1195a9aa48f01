//! Helpers shared by the engine tests.
#![allow(dead_code, unreachable_pub, missing_docs, reason = "shared test helpers")]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use duraflow::{ManualClock, Timestamp};

/// The longest any test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until `check` returns `Some`, re-checking every few milliseconds, and fails the test
/// with `what` if that has not happened within [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A virtual clock starting at a fixed, readable time (2026-01-01T00:00:00Z).
pub fn virtual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_millis(1_767_225_600_000)))
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
