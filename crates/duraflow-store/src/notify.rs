//! In-process wakeups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::types::InstanceInfo;

/// Wakes dispatchers, workers and waiting clients in the same process when a store changes, so
/// the hot path does not poll. Waiters must `enable` their `notified()` future before checking
/// the store, then await it: the store calls `notify_waiters`.
#[derive(Debug, Default)]
pub struct Notifier {
    /// Some instance has a message visible now.
    pub turns: Notify,
    /// Some activity task is visible now.
    pub tasks: Notify,
    /// Some instance finished (or changed execution). Every waiter on it wakes for every such
    /// instance: to wait for one instance, [`Notifier::watch`] it.
    pub instances: Notify,
    /// A commit in this process appended records to the feed.
    pub feed: Notify,
    /// The instances someone [watches](Notifier::watch), by id.
    watched: Mutex<HashMap<String, Watched>>,
}

/// The wakeup of one watched instance, how many [`InstanceWatch`]es share it, and the state a
/// commit that finished the instance handed over with its latest wakeup.
#[derive(Debug)]
struct Watched {
    notify: Arc<Notify>,
    watchers: usize,
    finished: Option<InstanceInfo>,
}

impl Notifier {
    /// A notifier nobody waits on yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches the instance `id`: the watch's [`InstanceWatch::notified`] wakes when that
    /// instance finishes or changes execution, and not for other instances, so that a thousand
    /// clients each waiting for their own instance do not all look at the store whenever any
    /// one of them finishes. Like the channels, enable the future before reading the instance.
    pub fn watch(&self, id: &str) -> InstanceWatch<'_> {
        let mut watched = self.watched();
        let entry = watched.entry(id.to_owned()).or_insert_with(|| Watched {
            notify: Arc::new(Notify::new()),
            watchers: 0,
            finished: None,
        });
        entry.watchers += 1;
        InstanceWatch {
            notifier: self,
            id: id.to_owned(),
            notify: entry.notify.clone(),
        }
    }

    /// Wakes the waiters of [`Notifier::instances`] and the watchers of each of `ids`, which
    /// finished or changed execution.
    pub fn instances_changed<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        self.instances_finished(ids, Vec::new());
    }

    /// Wakes the waiters of [`Notifier::instances`] and the watchers of each of `ids`, which
    /// finished or changed execution, handing each watcher of an instance in `finished` its
    /// state as the commit that finished it left it ([`InstanceWatch::finished`]), so that the
    /// watcher need not read it. A watcher of any other of `ids` is handed nothing.
    pub fn instances_finished<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        finished: Vec<InstanceInfo>,
    ) {
        self.instances.notify_waiters();
        let mut watched = self.watched();
        for id in ids {
            if let Some(w) = watched.get_mut(id) {
                w.finished = None;
                w.notify.notify_waiters();
            }
        }
        for info in finished {
            if let Some(w) = watched.get_mut(&info.id) {
                let notify = w.notify.clone();
                w.finished = Some(info);
                notify.notify_waiters();
            }
        }
    }

    /// Wakes the waiters of [`Notifier::instances`] and every watcher: some instances changed,
    /// and which is not known (a notification that names none, a lost connection).
    pub fn all_instances_changed(&self) {
        self.instances.notify_waiters();
        for w in self.watched().values_mut() {
            w.finished = None;
            w.notify.notify_waiters();
        }
    }

    /// Whether anyone in this process [watches](Notifier::watch) the instance `id`: a store
    /// hands over the state of a finished instance only to watchers
    /// ([`Notifier::instances_finished`]).
    pub fn is_watched(&self, id: &str) -> bool {
        self.watched().contains_key(id)
    }

    /// Wakes every waiter: of turns, of tasks, of the feed, and of every instance. Something
    /// changed and what is not known (another process committed, notifications were lost).
    pub fn wake_all(&self) {
        self.turns.notify_waiters();
        self.tasks.notify_waiters();
        self.feed.notify_waiters();
        self.all_instances_changed();
    }

    /// The ids of the watched instances: for a store that learns that something changed
    /// without learning which instances, and looks at these to wake only the watchers of those
    /// that did.
    pub fn watched_ids(&self) -> Vec<String> {
        self.watched().keys().cloned().collect()
    }

    /// How many instances are watched.
    pub fn watched_instances(&self) -> usize {
        self.watched().len()
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        // Every update of the map is a single insert, increment or removal: a panic elsewhere
        // while the lock was held leaves nothing half-written.
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A watch on one instance (see [`Notifier::watch`]); dropping it ends the watch.
#[derive(Debug)]
pub struct InstanceWatch<'a> {
    notifier: &'a Notifier,
    id: String,
    notify: Arc<Notify>,
}

impl InstanceWatch<'_> {
    /// A future that completes at the next change of the instance after it is enabled (or
    /// first polled).
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The instance's state as the commit that finished it left it, when the latest wakeup
    /// of this watch was that commit's and the store handed it over (see
    /// [`Notifier::instances_finished`]); `None` after any other wakeup, or when the store
    /// handed nothing over (the watcher then reads the instance).
    pub fn finished(&self) -> Option<InstanceInfo> {
        self.notifier
            .watched()
            .get(&self.id)
            .and_then(|w| w.finished.clone())
    }
}

impl Drop for InstanceWatch<'_> {
    fn drop(&mut self) {
        let mut watched = self.notifier.watched();
        if let Some(w) = watched.get_mut(&self.id) {
            w.watchers -= 1;
            if w.watchers == 0 {
                watched.remove(&self.id);
            }
        }
    }
}

/// Whether an enabled `Notified` future (or any future) has completed, without waiting: for
/// tests of wakeups.
#[cfg(any(test, feature = "conformance"))]
pub(crate) fn fired<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    future.poll(&mut cx).is_ready()
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use super::*;

    /// The next change of `watch`'s instance, enabled.
    fn next_change<'a>(watch: &'a InstanceWatch<'_>) -> Pin<Box<Notified<'a>>> {
        let mut changed = Box::pin(watch.notified());
        changed.as_mut().enable();
        changed
    }

    #[test]
    fn a_watch_wakes_for_its_own_instance_only() {
        let notifier = Notifier::new();
        let (a, b) = (notifier.watch("a"), notifier.watch("b"));
        let (mut a_changed, mut b_changed) = (next_change(&a), next_change(&b));
        let mut any = Box::pin(notifier.instances.notified());
        any.as_mut().enable();

        notifier.instances_changed(["b", "c"]);
        assert!(!fired(a_changed.as_mut()), "b and c are not a");
        assert!(fired(b_changed.as_mut()), "b changed");
        assert!(fired(any.as_mut()), "the channel wakes for every instance");

        notifier.instances_changed(["a"]);
        assert!(fired(a_changed.as_mut()), "a changed");
    }

    #[test]
    fn an_unknown_change_wakes_every_watch() {
        let notifier = Notifier::new();
        let (a, b) = (notifier.watch("a"), notifier.watch("b"));
        let (mut a_changed, mut b_changed) = (next_change(&a), next_change(&b));
        notifier.all_instances_changed();
        assert!(fired(a_changed.as_mut()));
        assert!(fired(b_changed.as_mut()));
    }

    #[test]
    fn watches_of_one_instance_share_it_until_the_last_is_dropped() {
        let notifier = Notifier::new();
        let first = notifier.watch("a");
        let second = notifier.watch("a");
        assert_eq!(notifier.watched_instances(), 1);
        drop(first);
        assert_eq!(notifier.watched_instances(), 1, "the second still watches");
        let mut changed = next_change(&second);
        notifier.instances_changed(["a"]);
        assert!(fired(changed.as_mut()));
        drop(changed);
        drop(second);
        assert_eq!(notifier.watched_instances(), 0, "nothing left behind");
    }

    fn completed(id: &str) -> InstanceInfo {
        InstanceInfo {
            id: id.to_owned(),
            name: "wf".into(),
            status: crate::types::InstanceStatus::Completed,
            execution: 1,
            input: duraflow_core::Payload::null(),
            output: Some(duraflow_core::Payload::null()),
            failure: None,
            parent: None,
            queue: duraflow_core::DEFAULT_QUEUE.into(),
            options: Default::default(),
            attempt: 1,
            created_at: duraflow_core::Timestamp(1),
            updated_at: duraflow_core::Timestamp(2),
            version: None,
            journal_len: None,
            last_event_at: None,
        }
    }

    #[test]
    fn a_finished_state_is_handed_to_the_watchers_of_its_latest_wakeup_only() {
        let notifier = Notifier::new();
        let (a, b) = (notifier.watch("a"), notifier.watch("b"));
        let mut a_changed = next_change(&a);
        notifier.instances_finished(["a", "c"], vec![completed("a"), completed("c")]);
        assert!(fired(a_changed.as_mut()), "a finished");
        assert_eq!(a.finished(), Some(completed("a")));
        assert_eq!(b.finished(), None, "b did not finish");
        assert!(
            !notifier.is_watched("c"),
            "nothing is kept for an unwatched instance"
        );

        // A later wakeup of a that hands nothing over (another process's change, say) takes
        // the state back: the watcher reads the instance.
        notifier.instances_changed(["a"]);
        assert_eq!(a.finished(), None);
        notifier.instances_finished(["b"], vec![completed("b")]);
        notifier.all_instances_changed();
        assert_eq!(
            b.finished(),
            None,
            "an unknown change takes every state back"
        );
    }
}
