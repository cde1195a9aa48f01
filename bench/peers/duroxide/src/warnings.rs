//! Counts the warnings logged in the process (duroxide's, mostly), so that the results say
//! how often duroxide's dispatchers had to retry.
//!
//! Under load, duroxide's SQLite operations fail now and then with "database is locked"
//! (SQLite error 5 or 517, which its `busy_timeout` does not cover for a transaction that
//! started as a reader). The dispatcher logs a warning and retries: a fetch after 200 ms,
//! doubling up to 3 s; the commit of a turn (ack) after 10 ms, doubling. Those waits are part of what the peer measures; the counts say how
//! many there were. The warnings themselves are not printed unless `RUST_LOG` asks for them.

use std::collections::VecDeque;
use std::fmt::{Debug, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Warning and error events seen so far.
static WARNINGS: AtomicU64 = AtomicU64::new(0);
/// Of those, the ones whose message says "database is locked".
static LOCKED: AtomicU64 = AtomicU64::new(0);
/// The last few warnings, for the message of a failed workload.
static LAST: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
/// How many warnings [`LAST`] keeps.
const KEEP: usize = 8;

/// A layer counting warning and error events.
pub(crate) struct Counter;

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // More verbose levels compare greater.
        if *event.metadata().level() > Level::WARN {
            return;
        }
        WARNINGS.fetch_add(1, Ordering::Relaxed);
        let mut text = Text(format!("{}: ", event.metadata().target()));
        event.record(&mut text);
        if text.0.contains("database is locked") {
            LOCKED.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut last) = LAST.lock() {
            if last.len() == KEEP {
                last.pop_front();
            }
            last.push_back(text.0);
        }
    }
}

/// An event's fields as text.
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, "{}={value} ", field.name());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?} ");
        } else {
            let _ = write!(self.0, "{}={value:?} ", field.name());
        }
    }
}

/// The last warnings logged (at most a few), oldest first.
pub(crate) fn last() -> Vec<String> {
    LAST.lock()
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default()
}

/// The counts so far: (warnings and errors, "database is locked" among them).
pub(crate) fn counts() -> (u64, u64) {
    (
        WARNINGS.load(Ordering::Relaxed),
        LOCKED.load(Ordering::Relaxed),
    )
}
