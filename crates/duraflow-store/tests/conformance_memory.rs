//! The store conformance suite, run against the in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;

use duraflow_store::{MemoryStore, Store};

duraflow_store::conformance_tests!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });
