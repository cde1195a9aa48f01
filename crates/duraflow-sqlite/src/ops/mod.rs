//! The store's operations as SQL, each run inside a transaction by the caller.

pub(crate) mod admin;
pub(crate) mod callbacks;
pub(crate) mod feed;
pub(crate) mod flow;
pub(crate) mod instances;
pub(crate) mod queue_events;
pub(crate) mod registry;
pub(crate) mod tasks;
pub(crate) mod turns;
