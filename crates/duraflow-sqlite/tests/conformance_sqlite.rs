//! The store conformance suite against SQLite, each test on a fresh database file.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;

use duraflow_sqlite::SqliteStore;
use duraflow_store::Store;

duraflow_store::conformance_tests!(async {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("conformance.db");
    // The directory must outlive the store: leak it for the test's duration.
    std::mem::forget(dir);
    Arc::new(SqliteStore::open(&path).await.expect("open")) as Arc<dyn Store>
});

/// The SQLite store hands a finished instance's state to its watchers (beyond the suite).
#[tokio::test]
async fn a_finished_instance_is_handed_to_its_watchers() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("handed.db"))
        .await
        .expect("open");
    duraflow_store::conformance::optional::a_finished_instance_is_handed_to_its_watchers(Arc::new(
        store,
    ))
    .await;
}

/// The SQLite store claims the free turn of a sent message (beyond the suite): the lease is
/// taken in the send's transaction.
#[tokio::test]
async fn a_sent_message_claims_a_free_turn() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("sent.db"))
        .await
        .expect("open");
    duraflow_store::conformance::optional::a_sent_message_claims_a_free_turn(Arc::new(store)).await;
}

/// The SQLite store claims the first turns a batch of creations asks for (beyond the suite).
#[tokio::test]
async fn a_batch_of_creations_claims_the_first_turns_asked_for() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("batch.db"))
        .await
        .expect("open");
    duraflow_store::conformance::optional::a_batch_of_creations_claims_the_first_turns_asked_for(
        Arc::new(store),
    )
    .await;
}
