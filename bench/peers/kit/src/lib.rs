//! What duraflow-bench's peers share: their results in duraflow-bench's shape ([`report`]) and
//! what they read from the system ([`system`]). Each peer is a workspace of its own, so that
//! the default build never compiles the engines they measure; this crate is a path dependency
//! of each.

pub mod report;
pub mod system;
mod workload;

pub use workload::Workload;
