//! The store's gauges: counts the store keeps (instances by status, inbox messages, activity
//! tasks, open callbacks) and the depth of each queue, read through the store's management
//! extension (`stats` and `queue_depths`) at scrape time.

use duraflow_core::Clock;
use duraflow_store::{management_of, InstanceStatus, Store, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The labels of a queue's depth: the queue, and the state counted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
    state: &'static str,
}

/// The store's gauges, as of their last [`StoreGauges::refresh`]. Cloning shares the series.
#[derive(Clone, Debug)]
pub struct StoreGauges {
    instances: Family<[(&'static str, &'static str); 1], Gauge>,
    messages: Gauge,
    tasks: Gauge,
    callbacks: Gauge,
    queue_instances: Family<QueueLabels, Gauge>,
    queue_tasks: Family<QueueLabels, Gauge>,
}

impl Default for StoreGauges {
    fn default() -> Self {
        StoreGauges::new()
    }
}

impl StoreGauges {
    /// Gauges at zero until refreshed (a series for every instance status).
    pub fn new() -> Self {
        let instances = Family::default();
        for status in InstanceStatus::ALL {
            instances.get_or_create_owned(&[("status", status.as_str())]);
        }
        StoreGauges {
            instances,
            messages: Gauge::default(),
            tasks: Gauge::default(),
            callbacks: Gauge::default(),
            queue_instances: Family::default(),
            queue_tasks: Family::default(),
        }
    }

    /// Registers the gauges into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "duraflow_store_instances",
            "Instances in the store, by status",
            self.instances.clone(),
        );
        registry.register(
            "duraflow_store_messages",
            "Inbox messages waiting in the store, visible or not yet",
            self.messages.clone(),
        );
        registry.register(
            "duraflow_store_tasks",
            "Activity tasks in the store, waiting or running",
            self.tasks.clone(),
        );
        registry.register(
            "duraflow_store_callbacks",
            "Open callbacks in the store",
            self.callbacks.clone(),
        );
        registry.register(
            "duraflow_queue_instances",
            "Unfinished instances of a queue: pending (not admitted yet) or running",
            self.queue_instances.clone(),
        );
        registry.register(
            "duraflow_queue_tasks",
            "Activity tasks of a queue: ready (waiting for a worker), leased (an attempt \
             running) or delayed (visible later)",
            self.queue_tasks.clone(),
        );
    }

    /// Reads the store's counts into the gauges. Every status is set, to zero when the store
    /// has no instance in it; a queue's depths are set for the queues with unfinished work,
    /// and a queue that had some at the last refresh and has none now is no longer reported
    /// (absent, not stale). Tasks are
    /// told ready, leased or delayed by the system clock. A store without the management
    /// extension is an error.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let manage = management_of(store)?;
        let stats = manage.stats().await?;
        let depths = manage.queue_depths(crate::SystemClock.now()).await?;
        // Queues seen before and empty now are dropped rather than keep their last value.
        for gauges in [&self.queue_instances, &self.queue_tasks] {
            gauges.clear();
        }
        for d in depths {
            for (gauges, state, n) in [
                (&self.queue_instances, "pending", d.pending_instances),
                (&self.queue_instances, "running", d.running_instances),
                (&self.queue_tasks, "ready", d.ready_tasks),
                (&self.queue_tasks, "leased", d.leased_tasks),
                (&self.queue_tasks, "delayed", d.delayed_tasks),
            ] {
                let labels = QueueLabels {
                    queue: d.queue.clone(),
                    state,
                };
                gauges.get_or_create(&labels).set(gauge_value(n));
            }
        }
        for status in InstanceStatus::ALL {
            let n = stats
                .instances
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            self.instances
                .get_or_create(&[("status", status.as_str())])
                .set(gauge_value(n));
        }
        self.messages.set(gauge_value(stats.messages));
        self.tasks.set(gauge_value(stats.tasks));
        self.callbacks.set(gauge_value(stats.callbacks));
        Ok(())
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The store's gauges alone, read now, in the Prometheus text format (OpenMetrics, ending with
/// `# EOF`): for a process that serves metrics without running an engine, such as a server
/// over a `Client` (`Client::store_metrics`). To serve them with other metrics, register a
/// [`StoreGauges`] into the same registry and refresh it at each scrape instead.
pub async fn store_metrics(store: &dyn Store) -> Result<String, StoreError> {
    let gauges = StoreGauges::new();
    gauges.refresh(store).await?;
    let mut registry = Registry::default();
    gauges.register(&mut registry);
    let mut text = String::new();
    // Writing into a `String` cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    Ok(text)
}
