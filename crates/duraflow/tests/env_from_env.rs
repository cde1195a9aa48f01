//! `Engine::builder().from_env()` against the real process environment. This is the only test
//! in its binary, so setting variables races with nothing; the parsing itself is tested on
//! maps in `duraflow::env`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]
#![cfg(feature = "sqlite")]

use duraflow::env::{EnvError, ACTIVITY_CONCURRENCY, DATABASE_URL, WORKFLOW_CONCURRENCY};
use duraflow::prelude::*;

async fn double(_ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    Ok(2 * n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_is_configured_from_the_environment() {
    // Not set: an error that says what to set.
    std::env::remove_var(DATABASE_URL);
    let err = Engine::builder().from_env().await.err().expect("no URL");
    assert!(matches!(err, EnvError::Missing { var, .. } if var == DATABASE_URL));

    // Malformed concurrency: an error naming the variable.
    std::env::set_var(DATABASE_URL, "memory:");
    std::env::set_var(WORKFLOW_CONCURRENCY, "many");
    let err = Engine::builder()
        .from_env()
        .await
        .err()
        .expect("bad number");
    assert!(err
        .to_string()
        .starts_with("DURAFLOW_WORKFLOW_CONCURRENCY=\"many\""));
    std::env::remove_var(WORKFLOW_CONCURRENCY);

    // A SQLite file: the engine runs on it, and what it wrote is there for the next engine.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-env.db");
    std::env::set_var(DATABASE_URL, format!("sqlite://{}", path.display()));
    std::env::set_var(ACTIVITY_CONCURRENCY, "2");
    let engine = Engine::builder()
        .from_env()
        .await
        .unwrap()
        .workflow("double", double)
        .start()
        .await
        .unwrap();
    assert_eq!(engine.store().backend(), "sqlite");
    let client = engine.client();
    let run = client.start("double", &21).id("d").await.unwrap();
    let out: u64 = client.wait(&run).await.unwrap();
    assert_eq!(out, 42);
    engine.shutdown().await;
    drop(client);

    let store = duraflow::env::EnvConfig::from_env()
        .unwrap()
        .database
        .open()
        .await
        .unwrap();
    let info = Client::new(store).status("d").await.unwrap();
    assert_eq!(info.status, InstanceStatus::Completed);
}
