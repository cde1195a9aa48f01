//! Clocks: the system clock, and a manual clock for tests that use virtual time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use duraflow_core::{Clock, Sleep, Timestamp};
use tokio::sync::watch;

/// The system's wall clock, with tokio timers for sleeping.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now_system()
    }

    fn now_rounded_up(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::EPOCH.plus_ceil(since_epoch)
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let wait = deadline.since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to: timers, leases and retry backoff under it fire exactly
/// when a test advances it past their time, and never early.
///
/// It keeps nanoseconds, as the system clock does: [`Clock::now`] rounds down to whole
/// milliseconds and [`Clock::now_rounded_up`] rounds up, so a test can put the present in the
/// middle of a millisecond.
///
/// ```
/// use std::time::Duration;
/// use duraflow_core::{Clock, Timestamp};
/// use duraflow_runtime::ManualClock;
///
/// let clock = ManualClock::new(Timestamp::from_millis(1_000));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Timestamp::from_millis(3_000));
/// clock.advance(Duration::from_micros(400));
/// assert_eq!(clock.now(), Timestamp::from_millis(3_000));
/// assert_eq!(clock.now_rounded_up(), Timestamp::from_millis(3_001));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    /// Nanoseconds since the Unix epoch.
    nanos: Arc<watch::Sender<i128>>,
}

const NANOS_PER_MILLI: i128 = 1_000_000;

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            nanos: Arc::new(watch::Sender::new(
                i128::from(start.as_millis()) * NANOS_PER_MILLI,
            )),
        }
    }

    /// A clock showing the current system time (then frozen there).
    pub fn starting_now() -> Self {
        Self::new(Timestamp::now_system())
    }

    /// Moves the clock forward by `d`, waking every sleeper whose deadline has come.
    pub fn advance(&self, d: Duration) {
        let d = i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
        self.nanos.send_modify(|t| *t = t.saturating_add(d));
    }

    /// Moves the clock to `t` if that is later than now (a clock never goes back).
    pub fn set(&self, t: Timestamp) {
        let t = i128::from(t.as_millis()) * NANOS_PER_MILLI;
        self.nanos.send_if_modified(|cur| {
            if t > *cur {
                *cur = t;
                true
            } else {
                false
            }
        });
    }
}

/// Whole milliseconds of `nanos`, rounded down (`floor`) or up, saturating.
fn millis(nanos: i128, up: bool) -> Timestamp {
    let ms = if up {
        nanos.div_euclid(NANOS_PER_MILLI) + i128::from(nanos.rem_euclid(NANOS_PER_MILLI) != 0)
    } else {
        nanos.div_euclid(NANOS_PER_MILLI)
    };
    Timestamp::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        millis(*self.nanos.borrow(), false)
    }

    fn now_rounded_up(&self) -> Timestamp {
        millis(*self.nanos.borrow(), true)
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut rx = self.nanos.subscribe();
        Box::pin(async move {
            loop {
                if millis(*rx.borrow_and_update(), false) >= deadline {
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
