//! What every part of a running engine uses: the store, the clock, the settings, the stop
//! token, the task tracker and the metrics. Each part (the dispatcher's handle in `dispatcher.rs`, the
//! workers' in `attempt.rs`) holds its own copy, next to what only it may touch.

use std::sync::Arc;

use duraflow_core::Clock;
use duraflow_store::{FetchFilter, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::options::EngineOptions;

/// The engine's common ground; cloning it clones handles, not state.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: EngineOptions,
    /// The turns this engine takes: of its queues and its registered workflows.
    pub(crate) turn_filter: Arc<FetchFilter>,
    /// The tasks this engine takes: of its queues and its registered activities.
    pub(crate) task_filter: Arc<FetchFilter>,
    /// Stop fetching and claiming new work.
    pub(crate) stop: CancellationToken,
    /// Every turn and attempt the engine runs, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// What the engine records as it runs.
    pub(crate) metrics: Metrics,
}
