//! Flow control: the configuration of a queue kept in the store, so that every worker that
//! serves the queue enforces the same limits, and [`Admission`], the one decision every store
//! takes when it leases the first turn of an instance.
//!
//! An instance is **admitted** when its first turn is leased (by a fetch or a claim); it is
//! **running** for flow control from then until it finishes. A queue's instance limits hold
//! back the admission of pending instances only: the turns of admitted instances are never held
//! back. Its task limit ([`QueueConfig::task_concurrency`]) holds back the fetches of its
//! activity tasks while that many are leased.

use std::collections::HashMap;
use std::time::Duration;

use duraflow_core::{duration_millis, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};

/// At most `starts` admissions (first turns leased) per window of length `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// How many instances may be admitted in any window.
    pub starts: u32,
    /// The window's length (counted in whole milliseconds).
    #[serde(with = "duraflow_core::serde_millis")]
    pub per: Duration,
}

impl RateLimit {
    /// At most `starts` admissions in every window of length `per`.
    pub fn new(starts: u32, per: Duration) -> RateLimit {
        RateLimit { starts, per }
    }
}

/// The flow-control settings of one queue, kept in the store ([`crate::Store::configure_queue`]).
///
/// Every limit is optional; a queue with no configuration has none, except that instances
/// started with a concurrency key run one at a time per key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    /// The queue's name.
    pub name: String,
    /// At most this many instances of the queue running (admitted and not finished) at once.
    pub concurrency: Option<u32>,
    /// At most this many running instances of the queue with the same concurrency key (1 when
    /// not set).
    pub key_concurrency: Option<u32>,
    /// At most so many admissions per window.
    pub rate_limit: Option<RateLimit>,
    /// At most this many activity tasks of the queue leased (an attempt running, its lease
    /// live) at once across all workers. Fetches lease no more than that; claims by a turn's
    /// commit never take a task of a queue with this limit (it is left to a fetch).
    #[serde(default)]
    pub task_concurrency: Option<u32>,
}

impl QueueConfig {
    /// A queue with no limits (besides one instance at a time per concurrency key).
    pub fn new(name: impl Into<String>) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            concurrency: None,
            key_concurrency: None,
            rate_limit: None,
            task_concurrency: None,
        }
    }

    /// At most `n` instances of the queue running at once.
    #[must_use]
    pub fn concurrency(mut self, n: u32) -> QueueConfig {
        self.concurrency = Some(n);
        self
    }

    /// At most `n` running instances per concurrency key (default 1).
    #[must_use]
    pub fn key_concurrency(mut self, n: u32) -> QueueConfig {
        self.key_concurrency = Some(n);
        self
    }

    /// At most `starts` admissions per window of length `per`.
    #[must_use]
    pub fn rate_limit(mut self, starts: u32, per: Duration) -> QueueConfig {
        self.rate_limit = Some(RateLimit::new(starts, per));
        self
    }

    /// At most `n` activity tasks of the queue leased at once across all workers.
    #[must_use]
    pub fn task_concurrency(mut self, n: u32) -> QueueConfig {
        self.task_concurrency = Some(n);
        self
    }

    /// The per-key limit that applies: the configured one, or 1.
    pub fn key_limit(&self) -> u32 {
        self.key_concurrency.unwrap_or(1)
    }

    /// Whether the queue limits admissions of instances without a key (a concurrency limit or
    /// a rate limit).
    pub fn limits_queue(&self) -> bool {
        self.concurrency.is_some() || self.rate_limit.is_some()
    }

    /// Refuses (`Invalid`) a configuration that would admit nothing or cannot be stored: an
    /// empty name, a zero limit, a zero or sub-millisecond rate window.
    pub fn validate(&self) -> StoreResult<()> {
        let invalid = |what: &str| {
            Err(StoreError::Invalid(format!(
                "queue {:?}: {what}",
                self.name
            )))
        };
        if self.name.is_empty() {
            return invalid("a queue needs a name");
        }
        if self.concurrency == Some(0) {
            return invalid("a concurrency limit of 0 would never admit an instance");
        }
        if self.task_concurrency == Some(0) {
            return invalid("a task concurrency limit of 0 would never lease a task");
        }
        if self.key_concurrency == Some(0) {
            return invalid("a per-key concurrency limit of 0 would never admit an instance");
        }
        if let Some(rate) = self.rate_limit {
            if rate.starts == 0 {
                return invalid("a rate limit of 0 starts would never admit an instance");
            }
            if duration_millis(rate.per) <= 0 {
                return invalid("a rate limit's window must be at least one millisecond");
            }
        }
        Ok(())
    }

    /// The start of the rate-limit window that ends at `now`: admissions after it (and not
    /// after `now`) count.
    pub fn window_start(&self, now: Timestamp) -> Option<Timestamp> {
        self.rate_limit
            .map(|r| Timestamp(now.0.saturating_sub(duration_millis(r.per))))
    }
}

/// What [`Admission::admit`] decides for one pending instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admit it (lease its first turn).
    Admit,
    /// Hold it back: its key is full; others of the queue may still be admitted.
    Skip,
    /// Hold it back and every other pending instance of the queue: the queue is full, or its
    /// rate limit is used up.
    Stop,
}

/// The admissions of one queue in one fetch: a store counts what is running and what was
/// admitted in the rate window (with whatever makes the count atomic), then asks for each
/// pending candidate, in lease order.
#[derive(Clone, Debug)]
pub struct Admission {
    config: QueueConfig,
    running: u32,
    started_in_window: u32,
    by_key: HashMap<String, u32>,
}

impl Admission {
    /// The admissions of the queue `config` describes (`QueueConfig::new(queue)` when it has
    /// none), with `running` instances running and `started_in_window` admitted in the window
    /// that ends now, and the running count of each key the candidates have (keys missing
    /// count 0).
    pub fn new(
        config: QueueConfig,
        running: u32,
        started_in_window: u32,
        by_key: HashMap<String, u32>,
    ) -> Admission {
        Admission {
            config,
            running,
            started_in_window,
            by_key,
        }
    }

    /// Whether the queue is full or out of starts: nothing more can be admitted.
    pub fn exhausted(&self) -> bool {
        self.config.concurrency.is_some_and(|c| self.running >= c)
            || self
                .config
                .rate_limit
                .is_some_and(|r| self.started_in_window >= r.starts)
    }

    /// Decides for a pending instance with concurrency key `key`, and counts it when admitted.
    pub fn admit(&mut self, key: Option<&str>) -> Verdict {
        if self.exhausted() {
            return Verdict::Stop;
        }
        if let Some(key) = key {
            let limit = self.config.key_limit();
            let running = self.by_key.entry(key.to_owned()).or_insert(0);
            if *running >= limit {
                return Verdict::Skip;
            }
            *running += 1;
        }
        self.running = self.running.saturating_add(1);
        self.started_in_window = self.started_in_window.saturating_add(1);
        Verdict::Admit
    }
}

/// A due instance a turn fetch may lease, as admission sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// Its queue.
    pub queue: &'a str,
    /// Its concurrency key.
    pub key: Option<&'a str>,
    /// Whether it is admitted already (then its turns are never held back).
    pub admitted: bool,
}

/// Which of `candidates` (in lease order) a fetch of at most `max` turns leases, by index:
/// every admitted one, and the pending ones their queues admit. Also says whether a full key
/// held one back (the caller may then read further candidates). Every store decides through
/// this walk: `needs` says whether a pending candidate of a queue, with a key, needs an
/// admission decision ([`needs_admission`] of the queue's configuration), and `open` counts a
/// queue's admissions once, given the keys of that queue's pending candidates.
pub fn admit_in_order<E>(
    candidates: &[Candidate<'_>],
    max: usize,
    mut needs: impl FnMut(&str, Option<&str>) -> Result<bool, E>,
    mut open: impl FnMut(&str, &mut dyn Iterator<Item = &str>) -> Result<Admission, E>,
) -> Result<(Vec<usize>, bool), E> {
    let mut admissions: HashMap<&str, Admission> = HashMap::new();
    let mut ready = Vec::new();
    let mut skipped = false;
    for (i, c) in candidates.iter().enumerate() {
        if ready.len() == max {
            break;
        }
        if !c.admitted && needs(c.queue, c.key)? {
            if !admissions.contains_key(c.queue) {
                let mut keys = candidates
                    .iter()
                    .filter(|o| o.queue == c.queue && !o.admitted)
                    .filter_map(|o| o.key);
                admissions.insert(c.queue, open(c.queue, &mut keys)?);
            }
            let verdict = admissions
                .get_mut(c.queue)
                .map_or(Verdict::Stop, |a| a.admit(c.key));
            match verdict {
                Verdict::Admit => {}
                Verdict::Skip => {
                    skipped = true;
                    continue;
                }
                Verdict::Stop => continue,
            }
        }
        ready.push(i);
    }
    Ok((ready, skipped))
}

/// Whether the first turn of a pending instance of a queue with `config` and concurrency key
/// `key` needs an admission decision (otherwise it is admitted whenever it is due).
pub fn needs_admission(config: Option<&QueueConfig>, key: Option<&str>) -> bool {
    key.is_some() || config.is_some_and(QueueConfig::limits_queue)
}

/// How many pending candidates a fetch of `max` turns reads per queue: more than `max`, so that
/// instances held back by a full key do not hide all the others behind them.
pub fn pending_scan(max: usize) -> usize {
    max.saturating_mul(4).saturating_add(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_refused() {
        assert!(QueueConfig::new("q").concurrency(0).validate().is_err());
        assert!(QueueConfig::new("q").key_concurrency(0).validate().is_err());
        assert!(QueueConfig::new("q")
            .task_concurrency(0)
            .validate()
            .is_err());
        assert!(QueueConfig::new("q").task_concurrency(1).validate().is_ok());
        assert!(QueueConfig::new("q")
            .rate_limit(0, Duration::from_secs(1))
            .validate()
            .is_err());
        assert!(QueueConfig::new("q")
            .rate_limit(1, Duration::ZERO)
            .validate()
            .is_err());
        assert!(QueueConfig::new("").validate().is_err());
        assert!(QueueConfig::new("q")
            .concurrency(1)
            .rate_limit(1, Duration::from_millis(1))
            .validate()
            .is_ok());
    }

    #[test]
    fn stored_configs_without_a_task_limit_decode() {
        let old = r#"{"name":"q","concurrency":2,"key_concurrency":null,"rate_limit":null}"#;
        let config: QueueConfig = serde_json::from_str(old).unwrap();
        assert_eq!(config, QueueConfig::new("q").concurrency(2));
    }

    #[test]
    fn admission_counts_queue_keys_and_window() {
        let config = QueueConfig::new("q").concurrency(3).key_concurrency(1);
        let mut a = Admission::new(config, 1, 0, HashMap::from([("a".to_owned(), 1)]));
        assert_eq!(a.admit(Some("a")), Verdict::Skip);
        assert_eq!(a.admit(Some("b")), Verdict::Admit);
        assert_eq!(a.admit(Some("b")), Verdict::Skip);
        assert_eq!(a.admit(None), Verdict::Admit);
        assert_eq!(a.admit(None), Verdict::Stop);

        let rated = QueueConfig::new("q").rate_limit(2, Duration::from_secs(1));
        let mut a = Admission::new(rated, 10, 1, HashMap::new());
        assert_eq!(a.admit(None), Verdict::Admit);
        assert_eq!(a.admit(None), Verdict::Stop);
    }
}
