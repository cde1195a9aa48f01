//! Due instances a fetch passed over because another transaction held their rows.
//!
//! A turn fetch leases rows `FOR UPDATE SKIP LOCKED`, so that concurrent fetches do not wait
//! for each other. A row it skips is one some other transaction holds at that moment: a task
//! completion or a commit posting to the instance, another process's fetch, an admission.
//! When that transaction ends it may wake nobody: a write announces a turn where it makes an
//! instance due, and this one was due already; a write of this process wakes this process's
//! dispatcher (see `ops::tasks` and `ops::commit`), but one of another process sends no
//! notification for it (a `NOTIFY` at each such commit cost batched starts 7%). Without
//! more, the dispatcher whose fetch skipped the row would find nothing due after now
//! (`next_due` reads only future times), sleep out its poll interval (1 s by default) and only
//! then run the turn.
//!
//! So a fetch that leased fewer turns than it asked for while some due candidate went
//! unleased wakes this process's dispatchers again a moment later, to fetch once the holder
//! has committed. Row locks on instances are held for one short transaction, so one retry
//! usually finds the row; the delay doubles while fetches keep skipping (a row held longer,
//! say by an operator's open transaction, costs a retry every [`LONGEST`] rather than a busy
//! loop) and starts again at [`FIRST`] after a fetch that skipped nothing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use duraflow_store::Notifier;

use crate::listen;

/// The delay before the first retry after a fetch skipped a row: about one short
/// transaction.
pub(crate) const FIRST: Duration = Duration::from_millis(2);

/// The longest delay between retries while fetches keep skipping.
pub(crate) const LONGEST: Duration = Duration::from_millis(256);

/// Schedules the dispatchers' retries after fetches that skipped held rows.
#[derive(Debug, Default)]
pub(crate) struct SkippedRows {
    /// Fetches in a row that skipped something.
    streak: AtomicU32,
}

impl SkippedRows {
    /// Called after every turn fetch: when it `skipped` a held due row, wakes this process's
    /// turn dispatchers after the streak's delay.
    pub(crate) fn after_fetch(&self, skipped: bool, notifier: &Arc<Notifier>) {
        if !skipped {
            self.streak.store(0, Ordering::Relaxed);
            return;
        }
        let delay = retry_delay(self.streak.fetch_add(1, Ordering::Relaxed));
        let notifier = Arc::clone(notifier);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            listen::wake(&notifier, listen::TURNS);
        });
    }
}

/// The delay before the retry after the `streak`-th skipping fetch in a row (0 for the first):
/// [`FIRST`], doubled each time, at most [`LONGEST`].
fn retry_delay(streak: u32) -> Duration {
    FIRST
        .checked_mul(1 << streak.min(16))
        .map_or(LONGEST, |d| d.min(LONGEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_the_longest() {
        assert_eq!(retry_delay(0), FIRST);
        assert_eq!(retry_delay(1), FIRST * 2);
        assert_eq!(retry_delay(3), FIRST * 8);
        assert_eq!(retry_delay(7), LONGEST);
        assert_eq!(retry_delay(8), LONGEST);
        assert_eq!(retry_delay(u32::MAX), LONGEST);
    }
}
