//! In-process wakeups.

use tokio::sync::Notify;

/// Wakes dispatchers, workers and waiting clients in the same process when a store changes, so
/// the hot path does not poll. Waiters must `enable` their `notified()` future before checking
/// the store, then await it: the store calls `notify_waiters`.
#[derive(Debug, Default)]
pub struct Notifier {
    /// Some instance has a message visible now.
    pub turns: Notify,
    /// Some activity task is visible now.
    pub tasks: Notify,
    /// Some instance finished (or changed execution).
    pub instances: Notify,
    /// A commit in this process appended records to the feed.
    pub feed: Notify,
}

impl Notifier {
    /// A notifier nobody waits on yet.
    pub fn new() -> Self {
        Self::default()
    }
}
