//! Activity heartbeats: what `ActivityContext::heartbeat` records ([`Heartbeats`]), the lease
//! renewal that carries the latest details to the store ([`renew_lease`], [`flush`]), and the
//! watchdog that ends an attempt whose heartbeats stopped ([`watchdog`]).
//!
//! A heartbeat only records, in memory: its time, and its details as the latest. Writes are
//! throttled to the lease renewals, which the attempt makes every third of its lease whether
//! or not the activity heartbeats (the worker is alive), each carrying the details recorded
//! since the one before; an attempt that ends without a result (a retry, a hand-back, a
//! heartbeat timeout) writes what is still unwritten first ([`flush`]). So heartbeats are
//! cheap to send often, and the next attempt sees the latest details of an attempt that ended
//! in its process; after a crash it sees those of the last renewal.
//!
//! With a heartbeat timeout, the lease is no longer than the timeout ([`attempt_lease`]): when
//! the worker's process dies, its renewals stop with its heartbeats, and another worker takes
//! the task over about one heartbeat timeout later (the first lease, taken at the fetch, is
//! the engine's `task_lease`; the attempt shortens it a third of the timeout after it starts).
//! While the process lives, the watchdog fails an attempt whose activity stopped heartbeating.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use duraflow_core::{ActivityError, ActivityOptions, Clock, Payload, Timestamp};
use duraflow_store::{StoreError, TaskWork};
use tracing::{debug, warn};

use crate::shared::Shared;

/// The heartbeats of one attempt, shared by its [`ActivityContext`](crate::ActivityContext)
/// (which records them) and the attempt (which writes them and watches for their end).
pub(crate) struct Heartbeats {
    clock: Arc<dyn Clock>,
    state: Mutex<Beats>,
}

struct Beats {
    /// The latest heartbeat, or the attempt's start.
    last: Timestamp,
    /// The latest details, and how many heartbeats with details there have been.
    details: Option<Payload>,
    recorded: u64,
    /// How many of them the store has (the count when the last write that held details began).
    written: u64,
}

impl fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let beats = self.lock();
        f.debug_struct("Heartbeats")
            .field("last", &beats.last)
            .field("recorded", &beats.recorded)
            .field("written", &beats.written)
            .finish_non_exhaustive()
    }
}

impl Heartbeats {
    /// The heartbeats of an attempt starting now: its start counts as the first.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        let last = clock.now_rounded_up();
        Arc::new(Heartbeats {
            clock,
            state: Mutex::new(Beats {
                last,
                details: None,
                recorded: 0,
                written: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Beats> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a heartbeat with `details` (to be written with the next renewal).
    pub(crate) fn beat(&self, details: Payload) {
        // Rounded up: a watchdog deadline computed from it never comes early.
        let now = self.clock.now_rounded_up();
        let mut beats = self.lock();
        beats.last = beats.last.max(now);
        beats.details = Some(details);
        beats.recorded += 1;
    }

    /// The latest heartbeat (or the attempt's start).
    fn last(&self) -> Timestamp {
        self.lock().last
    }

    /// The details the store does not have yet, with their count, to write.
    fn unwritten(&self) -> Option<(Payload, u64)> {
        let beats = self.lock();
        (beats.recorded > beats.written)
            .then(|| beats.details.clone().map(|d| (d, beats.recorded)))
            .flatten()
    }

    /// The store has the details up to heartbeat `count`.
    fn written(&self, count: u64) {
        let mut beats = self.lock();
        beats.written = beats.written.max(count);
    }
}

/// The lease an attempt of `options` keeps: the engine's task lease, no longer than the
/// activity's heartbeat timeout.
pub(crate) fn attempt_lease(task_lease: Duration, options: &ActivityOptions) -> Duration {
    match options.heartbeat_timeout {
        Some(timeout) => task_lease.min(timeout).max(Duration::from_millis(3)),
        None => task_lease,
    }
}

/// Renews the task's lease every third of [`attempt_lease`], with the details heartbeats
/// recorded since the last renewal; completes when the lease is lost.
pub(crate) async fn renew_lease(shared: &Shared, task: &TaskWork, beats: &Heartbeats) {
    let lease = attempt_lease(shared.options.task_lease, &task.options);
    let lease_ms = duraflow_core::duration_millis(lease);
    let mut lease_until = task.lease_until;
    let mut renewed = shared.clock.now();
    loop {
        // A third of a lease after the last renewal, and no later than two thirds before the
        // lease runs out (the fetch's lease may be longer than this attempt's).
        let renew_at = Timestamp::from_millis(
            (lease_until.as_millis() - lease_ms * 2 / 3).min(renewed.as_millis() + lease_ms / 3),
        );
        shared.clock.sleep_until(renew_at).await;
        let details = beats.unwritten();
        let now = shared.clock.now();
        let (payload, count) = details.map_or((None, 0), |(d, n)| (Some(d), n));
        match shared
            .store
            .renew_task(task.id, task.token, now, lease, payload)
            .await
        {
            Ok(until) => {
                lease_until = until;
                beats.written(count);
            }
            Err(StoreError::LeaseLost { .. } | StoreError::NotFound(_)) => return,
            Err(e) => {
                warn!(task = task.id.0, error = %e, "renewing an activity lease failed; retrying");
                // Try again a third of a lease from now.
                lease_until = now.plus(lease);
            }
        }
        renewed = now;
    }
}

/// Writes the details heartbeats recorded since the last renewal, if any, before an attempt
/// that is still leased gives its task back without a result.
pub(crate) async fn flush(shared: &Shared, task: &TaskWork, beats: &Heartbeats) {
    let Some((details, count)) = beats.unwritten() else {
        return;
    };
    let lease = attempt_lease(shared.options.task_lease, &task.options);
    let now = shared.clock.now();
    match shared
        .store
        .renew_task(task.id, task.token, now, lease, Some(details))
        .await
    {
        Ok(_) => beats.written(count),
        Err(e) => {
            debug!(task = task.id.0, error = %e, "the last heartbeat details were not written")
        }
    }
}

/// Completes when the task's heartbeat timeout has passed since the latest heartbeat (or the
/// attempt's start) on the engine's clock; never without a heartbeat timeout.
pub(crate) async fn watchdog(shared: &Shared, task: &TaskWork, beats: &Heartbeats) {
    match task.options.heartbeat_timeout {
        Some(timeout) => silence(shared.clock.as_ref(), beats, timeout).await,
        None => std::future::pending().await,
    }
}

/// The code of an attempt's failure when it sent no heartbeat within its heartbeat timeout
/// (a retry policy may name it as non-retryable).
const HEARTBEAT_TIMED_OUT: &str = "heartbeat_timed_out";

/// The error of an attempt that sent no heartbeat for `after`, its heartbeat timeout.
pub(crate) fn timed_out(after: Duration) -> ActivityError {
    ActivityError::retryable(format!(
        "no heartbeat for {after:?}, the heartbeat timeout: the activity stopped calling \
         ActivityContext::heartbeat (or blocked) and was cancelled"
    ))
    .with_code(HEARTBEAT_TIMED_OUT)
}

/// Completes when `timeout` has passed since the latest heartbeat (or the attempt's start).
async fn silence(clock: &dyn Clock, beats: &Heartbeats, timeout: Duration) {
    loop {
        let deadline = beats.last().plus_ceil(timeout);
        clock.sleep_until(deadline).await;
        // A heartbeat since moved the deadline on: wait for the new one.
        if beats.last().plus_ceil(timeout) <= clock.now() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use futures::FutureExt;

    #[test]
    fn the_lease_is_bounded_by_the_heartbeat_timeout() {
        let opts = |t: Option<u64>| ActivityOptions {
            heartbeat_timeout: t.map(Duration::from_secs),
            ..ActivityOptions::default()
        };
        let lease = Duration::from_secs(30);
        assert_eq!(attempt_lease(lease, &opts(None)), lease);
        assert_eq!(attempt_lease(lease, &opts(Some(60))), lease);
        assert_eq!(attempt_lease(lease, &opts(Some(5))), Duration::from_secs(5));
    }

    #[test]
    fn details_are_written_once_and_the_latest_wins() {
        let clock = Arc::new(ManualClock::new(Timestamp(0)));
        let beats = Heartbeats::new(clock);
        assert!(beats.unwritten().is_none());
        beats.beat(Payload::encode(&1).unwrap());
        beats.beat(Payload::encode(&2).unwrap());
        let (details, count) = beats.unwritten().unwrap();
        assert_eq!(details.decode::<u32>().unwrap(), 2);
        beats.beat(Payload::encode(&3).unwrap());
        beats.written(count);
        // A heartbeat during the write is still unwritten.
        assert_eq!(beats.unwritten().unwrap().0.decode::<u32>().unwrap(), 3);
        beats.written(3);
        assert!(beats.unwritten().is_none());
    }

    #[tokio::test]
    async fn the_watchdog_fires_only_after_a_silent_timeout() {
        let clock = Arc::new(ManualClock::new(Timestamp(0)));
        let beats = Heartbeats::new(clock.clone());
        let timeout = Duration::from_secs(10);
        let mut dog = Box::pin(silence(clock.as_ref(), &beats, timeout));
        clock.advance(Duration::from_secs(9));
        assert!((&mut dog).now_or_never().is_none());
        beats.beat(Payload::null());
        clock.advance(Duration::from_secs(9));
        assert!(
            (&mut dog).now_or_never().is_none(),
            "a heartbeat moves the deadline"
        );
        clock.advance(Duration::from_secs(1));
        assert!((&mut dog).now_or_never().is_some());
    }
}
