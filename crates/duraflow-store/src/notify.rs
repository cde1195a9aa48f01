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

/// The wakeup of one watched instance, how many [`InstanceWatch`]es share it, how many times
/// it was woken, and the state a commit that finished the instance handed over, with the count
/// of its wakeup.
#[derive(Debug)]
struct Watched {
    notify: Arc<Notify>,
    watchers: usize,
    changes: u64,
    finished: Option<(u64, InstanceInfo)>,
}

impl Watched {
    /// Counts a wakeup, with the state handed over with it, and wakes the watchers.
    fn change(&mut self, finished: Option<InstanceInfo>) {
        self.changes += 1;
        if let Some(info) = finished {
            self.finished = Some((self.changes, info));
        }
        self.notify.notify_waiters();
    }
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
            changes: 0,
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
    /// state as the commit that finished it left it ([`InstanceWatch::finished_after`]), so
    /// that the watcher need not read it.
    pub fn instances_finished<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        finished: Vec<InstanceInfo>,
    ) {
        self.instances.notify_waiters();
        let mut watched = self.watched();
        let mut finished: HashMap<String, InstanceInfo> = finished
            .into_iter()
            .map(|info| (info.id.clone(), info))
            .collect();
        for id in ids {
            if let Some(w) = watched.get_mut(id) {
                w.change(finished.remove(id));
            }
        }
        for (id, info) in finished {
            if let Some(w) = watched.get_mut(&id) {
                w.change(Some(info));
            }
        }
    }

    /// Wakes the waiters of [`Notifier::instances`] and every watcher: some instances changed,
    /// and which is not known (a notification that names none, a lost connection).
    pub fn all_instances_changed(&self) {
        self.instances.notify_waiters();
        for w in self.watched().values_mut() {
            w.change(None);
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

    /// How many times the instance was woken so far: take it once the future of
    /// [`InstanceWatch::notified`] is enabled, before reading the instance, and give it to
    /// [`InstanceWatch::finished_after`] once the future has completed.
    pub fn changes(&self) -> u64 {
        self.notifier
            .watched()
            .get(&self.id)
            .map_or(0, |w| w.changes)
    }

    /// The instance's state as a commit that finished it left it, when that commit's wakeup
    /// came after `changes` (from [`InstanceWatch::changes`]) and the store handed the state
    /// over with it (see [`Notifier::instances_finished`]): the instance finished while the
    /// watcher waited, and this is what a read at that moment returned. `None` when no such
    /// wakeup handed anything over: the watcher then reads the instance. Other wakeups before
    /// or after it (the same commit announced again through the database, say) do not matter.
    pub fn finished_after(&self, changes: u64) -> Option<InstanceInfo> {
        let watched = self.notifier.watched();
        let (at, info) = watched.get(&self.id)?.finished.as_ref()?;
        (*at > changes).then(|| info.clone())
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
    fn a_finished_state_is_handed_to_the_watchers_that_waited_when_it_finished() {
        let notifier = Notifier::new();
        let (a, b) = (notifier.watch("a"), notifier.watch("b"));
        let mut a_changed = next_change(&a);
        let (a_seen, b_seen) = (a.changes(), b.changes());
        notifier.instances_finished(["a", "c"], vec![completed("a"), completed("c")]);
        assert!(fired(a_changed.as_mut()), "a finished");
        assert_eq!(a.finished_after(a_seen), Some(completed("a")));
        assert_eq!(b.finished_after(b_seen), None, "b did not finish");
        assert!(
            !notifier.is_watched("c"),
            "nothing is kept for an unwatched instance"
        );

        // The same finish announced again (another wakeup that hands nothing over) does not
        // take it back from a watcher that was waiting when it finished...
        notifier.instances_changed(["a"]);
        notifier.all_instances_changed();
        assert_eq!(a.finished_after(a_seen), Some(completed("a")));
        // ...but a watcher that began waiting after the finish is handed nothing.
        let a_seen = a.changes();
        notifier.instances_changed(["a"]);
        assert_eq!(a.finished_after(a_seen), None);

        // Announced through the database before the commit's own wakeup: still handed over.
        let b_seen = b.changes();
        notifier.instances_changed(["b"]);
        notifier.instances_finished(["b"], vec![completed("b")]);
        assert_eq!(b.finished_after(b_seen), Some(completed("b")));
    }
}
