//! The activity series, labelled by activity name and queue. Names are registered code and
//! queues are configuration, so the label sets stay few. Each pair's counters are resolved once
//! and kept in a map searched by borrowed names: recording an attempt allocates nothing once its
//! activity has been seen.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The labels of an activity series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActivityLabels {
    activity: String,
    queue: String,
}

/// One activity's counters in one queue.
pub(crate) struct ActivityCounters {
    /// Attempts started (the activity's code was called).
    pub(crate) started: Counter,
    /// Activities that completed with an output.
    pub(crate) completed: Counter,
    /// Activities that failed for good (the workflow received the failure).
    pub(crate) failed: Counter,
    /// Failed attempts with a retry scheduled.
    pub(crate) retried: Counter,
}

/// Activity name → queue → counters.
type Resolved = HashMap<String, HashMap<String, Arc<ActivityCounters>>>;

/// The activity families and the counters resolved from them.
#[derive(Default)]
pub(crate) struct ActivitySeries {
    started: Family<ActivityLabels, Counter>,
    completed: Family<ActivityLabels, Counter>,
    failed: Family<ActivityLabels, Counter>,
    retried: Family<ActivityLabels, Counter>,
    resolved: RwLock<Resolved>,
}

impl ActivitySeries {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "duraflow_activity_attempts_started",
            "Activity attempts started by this engine",
            self.started.clone(),
        );
        registry.register(
            "duraflow_activities_completed",
            "Activities that completed with an output",
            self.completed.clone(),
        );
        registry.register(
            "duraflow_activities_failed",
            "Activities that failed for good: the workflow received the failure",
            self.failed.clone(),
        );
        registry.register(
            "duraflow_activity_retries",
            "Failed activity attempts for which a retry was scheduled",
            self.retried.clone(),
        );
    }

    /// The counters of activity `name` in `queue`.
    pub(crate) fn of(&self, name: &str, queue: &str) -> Arc<ActivityCounters> {
        let found = self
            .resolved
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .and_then(|queues| queues.get(queue))
            .cloned();
        if let Some(counters) = found {
            return counters;
        }
        let labels = ActivityLabels {
            activity: name.to_owned(),
            queue: queue.to_owned(),
        };
        let counters = Arc::new(ActivityCounters {
            started: self.started.get_or_create_owned(&labels),
            completed: self.completed.get_or_create_owned(&labels),
            failed: self.failed.get_or_create_owned(&labels),
            retried: self.retried.get_or_create_owned(&labels),
        });
        // Another thread may have resolved it meanwhile: its counters are the same series.
        self.resolved
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(labels.activity)
            .or_default()
            .entry(labels.queue)
            .or_insert(counters)
            .clone()
    }
}
