//! Clocks: the system clock, and a manual clock for tests that use virtual time.

use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{Clock, Sleep, Timestamp};
use tokio::sync::watch;

/// The system's wall clock, with tokio timers for sleeping.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now_system()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let wait = deadline.since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to: timers, leases and retry backoff under it fire exactly
/// when a test advances it past their time, and never early.
///
/// ```
/// use std::time::Duration;
/// use duraflow_core::{Clock, Timestamp};
/// use duraflow_runtime::ManualClock;
///
/// let clock = ManualClock::new(Timestamp::from_millis(1_000));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Timestamp::from_millis(3_000));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// A clock showing the current system time (then frozen there).
    pub fn starting_now() -> Self {
        Self::new(Timestamp::now_system())
    }

    /// Moves the clock forward by `d`, waking every sleeper whose deadline has come.
    pub fn advance(&self, d: Duration) {
        self.now.send_modify(|t| *t = t.plus(d));
    }

    /// Moves the clock to `t` if that is later than now (a clock never goes back).
    pub fn set(&self, t: Timestamp) {
        self.now.send_if_modified(|cur| {
            if t > *cur {
                *cur = t;
                true
            } else {
                false
            }
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= deadline {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone: nothing will ever move time again.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_only_when_advanced_past_deadline() {
        let clock = ManualClock::new(Timestamp(0));
        let mut sleep = clock.sleep_until(Timestamp(1_000));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_millis(999));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_millis(1));
        sleep.await;
        clock.set(Timestamp(10));
        assert_eq!(clock.now(), Timestamp(1_000), "a clock never goes back");
    }
}
