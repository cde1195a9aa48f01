//! Flow control in the memory store: the queue configurations, and counters of the running
//! (admitted, not finished) instances per queue and per key and of the admissions in each
//! rate-limited queue's window. The state's lock makes every admission atomic.

use std::collections::{BTreeMap, HashMap};

use duraflow_core::Timestamp;

use crate::queue_config::{needs_admission, Admission, QueueConfig};

/// The flow-control state.
#[derive(Debug, Default)]
pub(super) struct Flow {
    pub(super) configs: BTreeMap<String, QueueConfig>,
    /// Running instances per queue.
    running: HashMap<String, u32>,
    /// Running instances per queue and key.
    running_keys: HashMap<(String, String), u32>,
    /// Admissions per queue and time, kept for the queues with a rate limit (rebuilt from the
    /// instances when it is configured), and no longer than the limit's window.
    starts: HashMap<String, BTreeMap<Timestamp, u32>>,
}

impl Flow {
    /// Whether a pending instance of `queue` with `key` needs an admission decision.
    pub(super) fn needs_admission(&self, queue: &str, key: Option<&str>) -> bool {
        needs_admission(self.configs.get(queue), key)
    }

    /// The task concurrency limit of `queue`, if it has one.
    pub(super) fn task_limit(&self, queue: &str) -> Option<u32> {
        self.configs.get(queue).and_then(|c| c.task_concurrency)
    }

    /// The admissions of `queue` at `now`, for candidates with `keys`.
    pub(super) fn admission<'a>(
        &self,
        queue: &str,
        keys: impl IntoIterator<Item = &'a str>,
        now: Timestamp,
    ) -> Admission {
        let config = self
            .configs
            .get(queue)
            .cloned()
            .unwrap_or_else(|| QueueConfig::new(queue));
        let in_window = match (config.window_start(now), self.starts.get(queue)) {
            (Some(from), Some(starts)) => {
                let after = Timestamp(from.0.saturating_add(1));
                starts.range(after..=now).map(|(_, n)| *n).sum()
            }
            _ => 0,
        };
        let by_key = keys
            .into_iter()
            .map(|k| {
                let n = self
                    .running_keys
                    .get(&(queue.to_owned(), k.to_owned()))
                    .copied()
                    .unwrap_or(0);
                (k.to_owned(), n)
            })
            .collect();
        let running = self.running.get(queue).copied().unwrap_or(0);
        Admission::new(config, running, in_window, by_key)
    }

    /// Counts the admission of an instance of `queue` with `key` at `now`.
    pub(super) fn admitted(&mut self, queue: &str, key: Option<&str>, now: Timestamp) {
        *self.running.entry(queue.to_owned()).or_insert(0) += 1;
        if let Some(key) = key {
            *self
                .running_keys
                .entry((queue.to_owned(), key.to_owned()))
                .or_insert(0) += 1;
        }
        if let Some(from) = self.configs.get(queue).and_then(|c| c.window_start(now)) {
            let starts = self.starts.entry(queue.to_owned()).or_default();
            *starts.entry(now).or_insert(0) += 1;
            // Forget what no window ending at `now` or later counts.
            let keep = starts.split_off(&Timestamp(from.0.saturating_add(1)));
            *starts = keep;
        }
    }

    /// Stores `config`; a rate limit counts the admissions its queue made before it too, so
    /// they are counted again from `admitted_at`, the admission times of the queue's instances.
    fn configure(&mut self, config: QueueConfig, admitted_at: impl Iterator<Item = Timestamp>) {
        let queue = config.name.clone();
        self.starts.remove(&queue);
        if config.rate_limit.is_some() {
            let mut starts: BTreeMap<Timestamp, u32> = BTreeMap::new();
            for at in admitted_at {
                *starts.entry(at).or_insert(0) += 1;
            }
            // As in `admitted`: keep what a window ending at the latest admission counts.
            if let Some(from) = starts
                .last_key_value()
                .and_then(|(latest, _)| config.window_start(*latest))
            {
                starts = starts.split_off(&Timestamp(from.0.saturating_add(1)));
            }
            self.starts.insert(queue.clone(), starts);
        }
        self.configs.insert(queue, config);
    }

    /// Counts an admitted instance of `queue` with `key` finishing; returns whether its queue
    /// or key limits admissions (so that fetchers must be woken).
    pub(super) fn finished(&mut self, queue: &str, key: Option<&str>) -> bool {
        if let Some(n) = self.running.get_mut(queue) {
            *n = n.saturating_sub(1);
        }
        if let Some(key) = key {
            let slot = (queue.to_owned(), key.to_owned());
            if let Some(n) = self.running_keys.get_mut(&slot) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.running_keys.remove(&slot);
                }
            }
        }
        self.needs_admission(queue, key)
    }
}

impl super::State {
    pub(in crate::memory) fn configure_queue(
        &mut self,
        config: QueueConfig,
        wake: &mut super::Wake,
    ) {
        let queue = config.name.clone();
        let admitted_at = self
            .instances
            .values()
            .filter(|i| i.info.queue == queue)
            .filter_map(|i| i.started_at);
        self.flow.configure(config, admitted_at);
        // Looser limits may admit (or lease) what was held back.
        wake.turns = true;
        wake.tasks = true;
    }

    pub(in crate::memory) fn queue_config(&self, name: &str) -> Option<QueueConfig> {
        self.flow.configs.get(name).cloned()
    }

    pub(in crate::memory) fn queue_configs(&self) -> Vec<QueueConfig> {
        self.flow.configs.values().cloned().collect()
    }
}
