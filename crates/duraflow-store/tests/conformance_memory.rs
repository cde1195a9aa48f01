//! The store conformance suite, run against the in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;

use duraflow_store::{MemoryStore, Store};

duraflow_store::conformance_tests!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });

/// The memory store hands a finished instance's state to its watchers (beyond the suite).
#[tokio::test]
async fn a_finished_instance_is_handed_to_its_watchers() {
    duraflow_store::conformance::optional::a_finished_instance_is_handed_to_its_watchers(Arc::new(
        MemoryStore::new(),
    ))
    .await;
}

/// The memory store claims the free turn of a sent message (beyond the suite).
#[tokio::test]
async fn a_sent_message_claims_a_free_turn() {
    duraflow_store::conformance::optional::a_sent_message_claims_a_free_turn(Arc::new(
        MemoryStore::new(),
    ))
    .await;
}

/// The memory store claims the first turns a batch of creations asks for (beyond the suite).
#[tokio::test]
async fn a_batch_of_creations_claims_the_first_turns_asked_for() {
    duraflow_store::conformance::optional::a_batch_of_creations_claims_the_first_turns_asked_for(
        Arc::new(MemoryStore::new()),
    )
    .await;
}
