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
