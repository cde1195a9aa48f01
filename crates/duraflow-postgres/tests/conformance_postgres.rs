//! The store conformance suite against a real PostgreSQL server, each test in its own schema.

use std::sync::Arc;

use duraflow_postgres::testing::test_store;
use duraflow_store::Store;

duraflow_store::conformance_tests!(async {
    let store = test_store("dft_conf").await.unwrap_or_else(|e| {
        panic!(
            "no PostgreSQL for the conformance suite ({e}); run scripts/test, which starts one, \
             or set DURAFLOW_TEST_POSTGRES_URL"
        )
    });
    Arc::new(store) as Arc<dyn Store>
});

/// The PostgreSQL store hands a finished instance's state to its watchers in its own process
/// (beyond the suite): read with the `COMMIT`.
#[tokio::test]
async fn a_finished_instance_is_handed_to_its_watchers() {
    let store = test_store("dft_handed").await.unwrap_or_else(|e| {
        panic!("no PostgreSQL ({e}); run scripts/test or set DURAFLOW_TEST_POSTGRES_URL")
    });
    duraflow_store::conformance::optional::a_finished_instance_is_handed_to_its_watchers(Arc::new(
        store,
    ))
    .await;
}

/// The PostgreSQL store claims the free turn of a sent message (beyond the suite): the lease is
/// taken in the send's transaction.
#[tokio::test]
async fn a_sent_message_claims_a_free_turn() {
    let store = test_store("dft_sent").await.unwrap_or_else(|e| {
        panic!("no PostgreSQL ({e}); run scripts/test or set DURAFLOW_TEST_POSTGRES_URL")
    });
    duraflow_store::conformance::optional::a_sent_message_claims_a_free_turn(Arc::new(store)).await;
}

/// The PostgreSQL store claims the first turns a batch of creations asks for (beyond the
/// suite): in the creations' shared statement.
#[tokio::test]
async fn a_batch_of_creations_claims_the_first_turns_asked_for() {
    let store = test_store("dft_batch_claims").await.unwrap_or_else(|e| {
        panic!("no PostgreSQL ({e}); run scripts/test or set DURAFLOW_TEST_POSTGRES_URL")
    });
    duraflow_store::conformance::optional::a_batch_of_creations_claims_the_first_turns_asked_for(
        Arc::new(store),
    )
    .await;
}
