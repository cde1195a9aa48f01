//! Waiting for work: store wakeups, the next due time, a polling fallback, and shutdown.

use std::time::Duration;

use duraflow_core::{Clock, Timestamp};
use tokio_util::sync::CancellationToken;

/// Waits until `notified` fires, the clock reaches `due`, `poll` of real time passes, or `stop`
/// is cancelled, whichever comes first.
pub(crate) async fn wait_for_work(
    notified: Option<std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>>,
    clock: &dyn Clock,
    due: Option<Timestamp>,
    poll: Duration,
    stop: &CancellationToken,
) {
    let notified = async {
        match notified {
            Some(n) => n.await,
            None => std::future::pending().await,
        }
    };
    let due = async {
        match due {
            Some(t) => clock.sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = notified => {}
        _ = due => {}
        _ = tokio::time::sleep(poll) => {}
        _ = stop.cancelled() => {}
    }
}

/// Exponential backoff for retrying store calls: from `initial`, doubling, at most 10 s.
pub(crate) struct Backoff {
    initial: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration) -> Self {
        Backoff {
            initial,
            next: initial,
        }
    }

    /// The next wait.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(10));
        d
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}
