//! Counts the warnings logged in the process (duroxide's, mostly), so that the results say
//! how often duroxide's dispatchers had to retry.
//!
//! Under load, duroxide's SQLite fetches fail now and then with "database is locked" (SQLite
//! error 5 or 517, which its `busy_timeout` does not cover for a transaction that started as a
//! reader), and the dispatcher logs a warning and backs off for 200 ms, doubling up to 3 s,
//! before it fetches again. Those waits are part of what the peer measures; the counts say how
//! many there were. The warnings themselves are not printed unless `RUST_LOG` asks for them.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Warning and error events seen so far.
static WARNINGS: AtomicU64 = AtomicU64::new(0);
/// Of those, the ones whose message says "database is locked".
static LOCKED: AtomicU64 = AtomicU64::new(0);

/// A layer counting warning and error events.
pub(crate) struct Counter;

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // More verbose levels compare greater.
        if *event.metadata().level() > Level::WARN {
            return;
        }
        WARNINGS.fetch_add(1, Ordering::Relaxed);
        let mut locked = Locked(false);
        event.record(&mut locked);
        if locked.0 {
            LOCKED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether any field of an event says "database is locked".
struct Locked(bool);

impl Visit for Locked {
    fn record_str(&mut self, _field: &Field, value: &str) {
        self.0 |= value.contains("database is locked");
    }

    fn record_debug(&mut self, _field: &Field, value: &dyn Debug) {
        self.0 |= format!("{value:?}").contains("database is locked");
    }
}

/// The counts so far: (warnings and errors, "database is locked" among them).
pub(crate) fn counts() -> (u64, u64) {
    (
        WARNINGS.load(Ordering::Relaxed),
        LOCKED.load(Ordering::Relaxed),
    )
}
