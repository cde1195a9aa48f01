//! Connecting tests to a real PostgreSQL server, each in a schema of its own.

use std::sync::atomic::{AtomicU64, Ordering};

use duraflow_core::{Payload, Timestamp};
use duraflow_store::{NewInstance, StoreResult};

use crate::{PostgresOptions, PostgresStore};

/// The environment variable naming the test server.
pub const URL_VAR: &str = "DURAFLOW_TEST_POSTGRES_URL";

/// The server tests use: `DURAFLOW_TEST_POSTGRES_URL`, or the default local server
/// (`postgres://postgres@127.0.0.1:5432/postgres`). `scripts/postgres` starts one if needed.
pub fn test_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A schema name no other test uses: `prefix`, the process id, a counter and the time.
pub fn unique_schema(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A store in a fresh schema on the test server. Fails with the server's error when it cannot
/// be reached: run the tests through `scripts/test`, which starts one, or set
/// `DURAFLOW_TEST_POSTGRES_URL`.
pub async fn test_store(prefix: &str) -> StoreResult<PostgresStore> {
    let options = PostgresOptions {
        schema: unique_schema(prefix),
        max_connections: 5,
        ..PostgresOptions::default()
    };
    PostgresStore::connect_with(&test_url(), options).await
}

/// A new instance `id` of workflow `wf` on the default queue, created at `created_at`, with
/// `input` (encoded as JSON) and nothing else set: what the store's own tests start.
pub fn new_instance(id: &str, input: &str, created_at: Timestamp) -> NewInstance {
    NewInstance {
        id: id.into(),
        name: "wf".into(),
        input: Payload::encode(&input).unwrap_or_else(|_| Payload::null()),
        parent: None,
        queue: "default".into(),
        created_at,
        start_at: None,
        options: Default::default(),
    }
}
