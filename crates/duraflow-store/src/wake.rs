//! When an instance's work is due, and whom a write wakes: the rules every store applies the
//! same way. A store that states one of them inside a SQL statement (`max(?2, not_before)`)
//! keeps it there; one that computes it in Rust calls these.

use duraflow_core::Timestamp;

use crate::notify::Notifier;
use crate::types::{InstanceInfo, TurnCommit};

/// Whom to wake once a write is durable (each flag names a [`Notifier`] channel).
///
/// Besides work that is visible at once, a store also wakes waiters for work that becomes
/// visible later: a dispatcher sleeping until the previous `next_due` must recompute it, or it
/// would oversleep a newly scheduled earlier deadline. Waiters re-check the store, so an early
/// wakeup costs one query.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Wake {
    /// Some instance may have a turn to run.
    pub turns: bool,
    /// Some activity task may be fetchable.
    pub tasks: bool,
    /// These instances finished (or changed execution): their watchers and the `instances`
    /// channel are woken (see [`Notifier::watch`]).
    pub instances: Vec<String>,
    /// The state of instances of `instances` that finished, as the commit left them, for
    /// their watchers in this process ([`Notifier::instances_finished`]): a store that has
    /// the row at hand fills it for the watched ones ([`Notifier::is_watched`]), so that a
    /// waiting client does not read what the commit just wrote. Optional: a watcher handed
    /// nothing reads the instance.
    pub finished: Vec<InstanceInfo>,
    /// Records were appended to the feed (woken in this process only: subscribers of other
    /// processes poll).
    pub feed: bool,
}

impl Wake {
    /// Adds another operation's wakeups.
    pub fn merge(&mut self, other: Wake) {
        self.turns |= other.turns;
        self.tasks |= other.tasks;
        self.instances.extend(other.instances);
        self.finished.extend(other.finished);
        self.feed |= other.feed;
    }

    /// The instance `id` finished or changed execution.
    pub fn instance_changed(&mut self, id: &str) {
        self.instances.push(id.to_owned());
    }

    /// The instances of [`Wake::instances`] whose state a store hands over
    /// ([`Wake::hand_over`]): those someone in this process watches, and not handed over yet.
    pub fn to_hand_over(&self, notifier: &Notifier) -> Vec<String> {
        self.instances
            .iter()
            .filter(|id| notifier.is_watched(id) && !self.finished.iter().any(|f| &f.id == *id))
            .cloned()
            .collect()
    }

    /// Hands over the state of an instance of [`Wake::to_hand_over`], as the write left it
    /// (read by the store where it costs it little: with the written rows at hand, before the
    /// wakeup), if it finished: its watchers then need not read it.
    pub fn hand_over(&mut self, info: InstanceInfo) {
        if info.status.is_terminal() {
            self.finished.push(info);
        }
    }

    /// Wakes the waiters of this process on `notifier`'s channels that this names.
    pub fn notify(self, notifier: &Notifier) {
        if self.turns {
            notifier.turns.notify_waiters();
        }
        if self.tasks {
            notifier.tasks.notify_waiters();
        }
        if !self.instances.is_empty() || !self.finished.is_empty() {
            notifier.instances_finished(self.instances.iter().map(String::as_str), self.finished);
        }
        if self.feed {
            notifier.feed.notify_waiters();
        }
    }
}

/// The instances a batch of task completions posted results to, for whom the batch wakes:
/// the dispatchers, for every such instance but those whose turn the batch leased itself (a
/// claimed turn needs nobody else).
#[derive(Debug, Default)]
pub struct PostedResults {
    instances: Vec<String>,
}

impl PostedResults {
    /// A result was posted to `instance`'s inbox.
    pub fn posted(&mut self, instance: String) {
        self.instances.push(instance);
    }

    /// The batch leased `instance`'s turn itself.
    pub fn claimed(&mut self, instance: &str) {
        self.instances.retain(|id| id != instance);
    }

    /// Adds the wakeups the batch calls for to `wake`.
    pub fn wake(&self, wake: &mut Wake) {
        wake.turns |= !self.instances.is_empty();
    }
}

/// When a message visible at `visible_at` makes its instance due: once it is visible, but not
/// before the instance's `not_before` (an abandoned turn's retry time, or a workflow retry's
/// backoff).
pub fn message_due_at(visible_at: Timestamp, not_before: Option<Timestamp>) -> Timestamp {
    not_before.map_or(visible_at, |nb| visible_at.max(nb))
}

/// What decides when an instance's work is due ([`instance_due_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueState {
    /// It has finished.
    pub finished: bool,
    /// When the lease of the turn that holds it runs out, if one does.
    pub lease_until: Option<Timestamp>,
    /// When its earliest message becomes visible, if it has any.
    pub earliest_message: Option<Timestamp>,
    /// No turn before this time (set by an abandoned turn or a retry's backoff).
    pub not_before: Option<Timestamp>,
    /// A turn was abandoned since the last commit that ended one: it is redone at
    /// `not_before` even with an empty inbox (a checkpoint can have consumed it).
    pub redo: bool,
}

/// When an instance's work is due (`None`: it has none): a finished instance never is; while a
/// turn holds its lease, when the lease runs out (even with an empty inbox, which a checkpoint
/// can leave: the turn is redone if its lease runs out); otherwise, with messages, when its
/// earliest message becomes visible (not before `not_before`, see [`message_due_at`]), and for
/// an abandoned turn with none, `not_before`.
pub fn instance_due_at(state: &DueState) -> Option<Timestamp> {
    if state.finished {
        return None;
    }
    if let Some(until) = state.lease_until {
        return Some(until);
    }
    match state.earliest_message {
        Some(visible) => Some(message_due_at(visible, state.not_before)),
        None if state.redo => state.not_before,
        None => None,
    }
}

/// The lease a checkpoint ([`TurnCommit::keep_lease`]) keeps: the turn goes on under the same
/// token until the returned time, when its instance is due again (so that a turn that died is
/// redone). `None` for a commit that ends its turn and frees the lease.
pub fn checkpoint_lease(commit: &TurnCommit) -> Option<Timestamp> {
    commit.keep_lease.map(|keep| commit.now.plus(keep))
}

/// Whether a commit that leaves its instance's lease at `lease_until` and its work due at
/// `due_at` ([`instance_due_at`]) wakes the dispatchers: when it frees the lease of an instance
/// that has work left (messages the turn did not consume can be fetched again now).
pub fn commit_wakes_turns(lease_until: Option<Timestamp>, due_at: Option<Timestamp>) -> bool {
    lease_until.is_none() && due_at.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(
        finished: bool,
        lease_until: Option<i64>,
        earliest_message: Option<i64>,
        not_before: Option<i64>,
        redo: bool,
    ) -> Option<i64> {
        instance_due_at(&DueState {
            finished,
            lease_until: lease_until.map(Timestamp),
            earliest_message: earliest_message.map(Timestamp),
            not_before: not_before.map(Timestamp),
            redo,
        })
        .map(|at| at.0)
    }

    #[test]
    fn an_instance_is_due_by_its_lease_its_messages_and_not_before() {
        // A finished instance is never due, whatever else holds.
        assert_eq!(due(true, Some(5), Some(1), Some(2), true), None);
        // A lease decides while it is held, messages or not.
        assert_eq!(due(false, Some(5), Some(1), Some(9), false), Some(5));
        assert_eq!(due(false, Some(5), None, None, false), Some(5));
        // Otherwise the earliest message, but not before `not_before`.
        assert_eq!(due(false, None, Some(3), None, false), Some(3));
        assert_eq!(due(false, None, Some(3), Some(7), false), Some(7));
        assert_eq!(due(false, None, Some(8), Some(7), false), Some(8));
        // Without messages, only an abandoned turn is due (at `not_before`).
        assert_eq!(due(false, None, None, Some(7), false), None);
        assert_eq!(due(false, None, None, Some(7), true), Some(7));
        assert!(commit_wakes_turns(None, Some(Timestamp(3))));
        assert!(!commit_wakes_turns(Some(Timestamp(5)), Some(Timestamp(5))));
        assert!(!commit_wakes_turns(None, None));
    }

    #[test]
    fn completions_wake_for_the_turns_they_did_not_claim() {
        let mut posted = PostedResults::default();
        let mut wake = Wake::default();
        posted.wake(&mut wake);
        assert!(!wake.turns);
        posted.posted("a".to_owned());
        posted.posted("a".to_owned());
        posted.claimed("a");
        posted.wake(&mut wake);
        assert!(!wake.turns);
        posted.posted("b".to_owned());
        posted.wake(&mut wake);
        assert!(wake.turns);
    }
}
