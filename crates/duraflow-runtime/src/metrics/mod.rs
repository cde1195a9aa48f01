//! Prometheus metrics: what the engine counts as it runs (turns, commits, activities, timers,
//! leases, nondeterminism, the warm cache) and the store's counts read at scrape time (instances
//! by status, messages, tasks, callbacks). `docs/METRICS.md` lists every metric.
//!
//! An engine records into a [`Metrics`] handle ([`crate::Engine::metrics`], or one given to
//! [`crate::EngineBuilder::metrics`]). An application exposes it either as text
//! ([`Metrics::encode`], [`Metrics::scrape`] with the store's gauges), or by registering the
//! metrics into its own `prometheus_client` registry ([`Metrics::register`]). A process that
//! runs no engine (a server with a `Client` alone) renders the store's gauges with
//! [`store_metrics`].
//!
//! Recording is cheap: every series without a per-event label is resolved when the handle is
//! made, and an activity's series are looked up by borrowed name (no allocation once the
//! activity has been seen).

mod activity;
mod recorder;
mod store;

use std::sync::Arc;

use duraflow_store::{Store, StoreError};
use prometheus_client::registry::Registry;

pub(crate) use recorder::{CommitKind, Recorder, TurnOutcome};
pub use store::{store_metrics, StoreGauges};

/// The `prometheus_client` crate these metrics are made with, for an application that registers
/// them in a registry of its own ([`Metrics::register`]) without naming the version twice.
pub use prometheus_client;

/// duraflow's metrics: the engine's counters and histograms, and the store's gauges as of their
/// last [`Metrics::refresh_store`]. Cloning it clones a handle: every clone records into and
/// reads the same series.
///
/// An embedded application serves them on a route of its own:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use duraflow_runtime::Engine;
/// use duraflow_store::MemoryStore;
///
/// let engine = Engine::builder().store(MemoryStore::new()).start().await?;
/// let metrics = engine.metrics();
/// let store = engine.store();
///
/// // The body of `GET /metrics`, in any HTTP framework (with axum:
/// // `.route("/metrics", get(move || async move { scrape().await }))`), served with the
/// // content type `application/openmetrics-text; version=1.0.0; charset=utf-8`.
/// let scrape = || async {
///     match metrics.scrape(store.as_ref()).await {
///         Ok(text) => (200, text),
///         Err(e) => (503, format!("the store could not be read: {e}")),
///     }
/// };
/// let (status, body) = scrape().await;
/// # let _ = (status, body);
/// # Ok(()) }
/// ```
///
/// Or registered into the application's own registry, next to its metrics:
///
/// ```
/// use duraflow_runtime::Metrics;
/// use prometheus_client::registry::Registry;
///
/// let metrics = Metrics::new();
/// let mut registry = Registry::default();
/// metrics.register(&mut registry);
/// // Give `metrics` to `EngineBuilder::metrics`; encode `registry` at every scrape (after
/// // `metrics.refresh_store(..)` for the store's gauges).
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry)?;
/// assert!(text.contains("duraflow_turns_total"));
/// # Ok::<(), std::fmt::Error>(())
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: Recorder,
    store: StoreGauges,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh set of metrics, every counter at zero.
    pub fn new() -> Self {
        let recorder = Recorder::new();
        let store = StoreGauges::new();
        let mut registry = Registry::default();
        recorder.register(&mut registry);
        store.register(&mut registry);
        Metrics {
            inner: Arc::new(Inner {
                recorder,
                store,
                registry,
            }),
        }
    }

    /// Registers every duraflow metric (the engine's and the store's gauges) into `registry`,
    /// which an application encodes with its own metrics. The series are shared: what the
    /// engine records shows in both registries.
    pub fn register(&self, registry: &mut Registry) {
        self.inner.recorder.register(registry);
        self.inner.store.register(registry);
    }

    /// Reads the store's counts into the store gauges (the management extension's `stats` and `queue_depths`).
    pub async fn refresh_store(&self, store: &dyn Store) -> Result<(), StoreError> {
        self.inner.store.refresh(store).await
    }

    /// Every duraflow metric in the Prometheus text format (OpenMetrics), the store gauges as
    /// of their last refresh.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }

    /// Refreshes the store gauges from `store`, then encodes everything: the body of a
    /// `/metrics` response.
    pub async fn scrape(&self, store: &dyn Store) -> Result<String, StoreError> {
        self.refresh_store(store).await?;
        Ok(self.encode())
    }

    /// What the engine records into.
    pub(crate) fn recorder(&self) -> &Recorder {
        &self.inner.recorder
    }
}
