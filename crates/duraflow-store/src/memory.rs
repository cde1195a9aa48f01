//! The in-memory store (to be written).
