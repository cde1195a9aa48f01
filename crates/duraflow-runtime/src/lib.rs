//! The duraflow runtime: the [`Engine`] that runs workflows and activities against a store, and
//! the [`Client`] that starts and observes them.
//!
//! - [`EngineBuilder`] registers workflows (plain `async fn`s or typed [`duraflow_core::Workflow`]s)
//!   and activities (plain `async fn`s or typed [`Activity`]s), takes a store and a clock, and
//!   starts the workflow dispatcher and the activity worker pool.
//! - The dispatcher leases instances with pending messages, replays each one's journal, applies
//!   the new messages one at a time, and commits the turn atomically; commits from concurrent
//!   turns are grouped into one store call.
//! - Workers lease activity tasks, renew the lease while the activity runs, enforce timeouts,
//!   schedule retries by the activity's policy, and report results exactly once (a result
//!   whose lease was lost is discarded).
//! - [`Metrics`] counts what the engine does (turns, commits, activities, timers, leases lost,
//!   nondeterminism, the warm cache) for Prometheus, with the store's gauges read at scrape
//!   time; each turn and each activity attempt runs in a `tracing` span naming its instance
//!   and operation.
//! - [`Engine::shutdown`] stops fetching, lets work in flight finish for a grace period, hands
//!   back what is left, and returns when every task it started has ended.

mod active;
mod activity;
mod attempt;
mod batcher;
mod claimed;
mod client;
mod clock;
mod dispatcher;
mod engine;
mod error;
mod heartbeat;
mod lease_loop;
pub mod metrics;
mod options;
pub mod outcome;
mod registry;
mod shared;
mod turn;
mod wait;
mod warm;
mod worker;

pub use activity::{Activity, ActivityContext, ActivityHandler};
pub use batcher::{BatchWrite, Batcher};
pub use client::{
    Client, IfExists, RunHandle, Start, SubscribeOptions, Subscription, TypedRunHandle, TypedStart,
    Wait, DEFAULT_WAIT_POLL,
};
pub use clock::{ManualClock, SystemClock};
pub use duraflow_core::ActivitySignature;
pub use engine::{Engine, EngineBuilder, ShutdownReport, MAX_WORKFLOW_VERSION_LEN};
pub use error::{ClientError, EngineError};
pub use metrics::{store_metrics, Metrics, StoreGauges};
pub use options::EngineOptions;
