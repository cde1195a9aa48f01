//! The in-memory store (being written).

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore;
