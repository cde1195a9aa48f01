//! The durable primitives, one module each, and the state machine every operation of them runs.
//!
//! An operation is started by the issued event of its primitive (see [`Primitive::issued_type`])
//! and then moves between named states as journal events reach it. Each primitive lists its
//! legal moves in a transition table ([`Primitive::transitions`]); the replay state keeps every
//! open operation's current state and accepts a delivered event only when the table has a row
//! for it. A duplicate, stale or misrouted delivery therefore has no row and is refused, and a
//! recorded one fails replay as nondeterminism.
//!
//! Every row counts whether it has been taken ([`Transition::taken`]); the test
//! `transition_coverage` drives scenarios until every row of every table has been taken, so a
//! row no test reaches is found (in the manner of Temporal sdk-core's transition coverage).
//!
//! Adding a primitive means adding a module here with its table and a variant to
//! [`Primitive`].

mod activity;
mod callback;
mod child;
pub(crate) mod context;
mod event_wait;
mod queue_event;
mod step;
mod timer;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::plan::{ExistingInstance, TurnInstance};
use crate::{Event, TurnPlan};

/// One row of a primitive's transition table: in state `from`, the journal event `event`
/// (its type name, or a pseudo-event such as `abandoned` for what the code does) moves the
/// operation to state `to`.
#[derive(Debug)]
pub struct Transition {
    /// The state the row applies in.
    pub from: &'static str,
    /// The event type that moves the operation.
    pub event: &'static str,
    /// The state it moves to.
    pub to: &'static str,
    taken: AtomicBool,
}

impl Transition {
    pub(crate) const fn new(from: &'static str, event: &'static str, to: &'static str) -> Self {
        Transition {
            from,
            event,
            to,
            taken: AtomicBool::new(false),
        }
    }

    /// Whether this process has taken the row (for the transition-coverage test).
    pub fn taken(&self) -> bool {
        self.taken.load(Ordering::Relaxed)
    }

    fn take(&self) {
        // A load first: once set, the flag is only read, so cores share the cache line.
        if !self.taken.load(Ordering::Relaxed) {
            self.taken.store(true, Ordering::Relaxed);
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} --{}--> {}", self.from, self.event, self.to)
    }
}

/// Whether two state or event names are the same. The names replay compares are the tables'
/// and the events' own constants, so most are the same string in memory: that is checked
/// first, before the bytes.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

/// The pseudo-event of an operation whose future was dropped before it completed.
pub const ABANDONED: &str = "abandoned";

/// The durable primitive an operation is: which issued event starts it, and the transition
/// table of its states. Operations are told apart by this type, never by event names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Primitive {
    /// An activity: `activity_scheduled`, completed by `activity_completed`/`activity_failed`.
    Activity,
    /// A durable timer: `timer_created`, completed by `timer_fired`.
    Timer,
    /// An inline step: `step_started`, completed by `step_completed`/`step_failed`, or
    /// retried after `step_retrying` and its backoff timer.
    Step,
    /// A wait for an external event: `event_wait_started`, handed the next `event_raised` of
    /// its name.
    EventWait,
    /// A child workflow: `child_started`, completed by `child_completed`/`child_failed`.
    Child,
    /// A child context: `context_started`, ended by its body's `context_completed` or
    /// `context_failed`.
    Context,
    /// A callback: `callback_created`, resolved by `callback_completed`/`callback_failed`,
    /// kept alive by `callback_heartbeat`.
    Callback,
    /// An emit of a queue-wide event: `queue_event_emit_started`, completed by
    /// `queue_event_emit_completed` (what the emit did).
    QueueEventEmit,
    /// An await of a queue-wide event: `queue_event_await_started`, completed by
    /// `queue_event_received`, or timed out by a `timer_fired` of its own operation.
    QueueEventAwait,
}

impl Primitive {
    /// Every primitive.
    pub const ALL: [Primitive; 9] = [
        Primitive::Activity,
        Primitive::Timer,
        Primitive::Step,
        Primitive::EventWait,
        Primitive::Child,
        Primitive::Context,
        Primitive::Callback,
        Primitive::QueueEventEmit,
        Primitive::QueueEventAwait,
    ];

    /// The type name of the issued event that starts an operation of this primitive.
    pub fn issued_type(self) -> &'static str {
        match self {
            Primitive::Activity => "activity_scheduled",
            Primitive::Timer => "timer_created",
            Primitive::Step => "step_started",
            Primitive::EventWait => "event_wait_started",
            Primitive::Child => "child_started",
            Primitive::Context => "context_started",
            Primitive::Callback => "callback_created",
            Primitive::QueueEventEmit => "queue_event_emit_started",
            Primitive::QueueEventAwait => "queue_event_await_started",
        }
    }

    /// The state an operation is in once its issued event is journaled.
    pub fn initial(self) -> &'static str {
        match self {
            Primitive::Activity => activity::INITIAL,
            Primitive::Timer => timer::INITIAL,
            Primitive::Step => step::INITIAL,
            Primitive::EventWait => event_wait::INITIAL,
            Primitive::Child => child::INITIAL,
            Primitive::Context => context::INITIAL,
            Primitive::Callback => callback::INITIAL,
            Primitive::QueueEventEmit => queue_event::EMIT_INITIAL,
            Primitive::QueueEventAwait => queue_event::AWAIT_INITIAL,
        }
    }

    /// The primitive's transition table.
    pub fn transitions(self) -> &'static [Transition] {
        match self {
            Primitive::Activity => &activity::TRANSITIONS,
            Primitive::Timer => &timer::TRANSITIONS,
            Primitive::Step => &step::TRANSITIONS,
            Primitive::EventWait => &event_wait::TRANSITIONS,
            Primitive::Child => &child::TRANSITIONS,
            Primitive::Context => &context::TRANSITIONS,
            Primitive::Callback => &callback::TRANSITIONS,
            Primitive::QueueEventEmit => &queue_event::EMIT_TRANSITIONS,
            Primitive::QueueEventAwait => &queue_event::AWAIT_TRANSITIONS,
        }
    }

    /// The row for `event` in state `from`, if the table has one.
    pub fn row(self, from: &str, event: &str) -> Option<&'static Transition> {
        self.transitions()
            .iter()
            .find(|t| same_name(t.from, from) && same_name(t.event, event))
    }

    /// Takes the row for `event` in state `from`: returns the state it leads to, and counts
    /// the row as taken. `None` when the table has no such row (the event is not legal there).
    pub(crate) fn step(self, from: &str, event: &str) -> Option<&'static str> {
        let row = self.row(from, event)?;
        row.take();
        Some(row.to)
    }

    /// Whether `state` ends the operation (no row leaves it).
    pub fn is_final(self, state: &str) -> bool {
        !self.transitions().iter().any(|t| same_name(t.from, state))
    }

    /// Adds to `plan` what a turn must write for `ev`, an event of an operation of this
    /// primitive in the turn's new events (a task, timer messages, a child instance, a
    /// callback's token, a queue-wide emit or await...).
    pub(crate) fn schedule(
        self,
        plan: &mut TurnPlan,
        instance: TurnInstance<'_>,
        ev: &Event,
        existing: &[ExistingInstance],
    ) {
        match self {
            Primitive::Activity => activity::schedule(plan, instance, ev),
            Primitive::Timer => timer::schedule(plan, instance, ev),
            Primitive::Step => step::schedule(plan, instance, ev),
            Primitive::Child => child::schedule(plan, instance, ev, existing),
            Primitive::Callback => callback::schedule(plan, instance, ev),
            Primitive::QueueEventEmit => queue_event::schedule_emit(plan, instance, ev),
            Primitive::QueueEventAwait => queue_event::schedule_await(plan, instance, ev),
            // Nothing of their own: events are buffered by name, a context's body derives
            // its operations' effects.
            Primitive::EventWait | Primitive::Context => {}
        }
    }

    /// The rows no code in this process has taken yet.
    pub fn untaken(self) -> impl Iterator<Item = &'static Transition> {
        self.transitions().iter().filter(|t| !t.taken())
    }
}

impl fmt::Display for Primitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.issued_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_well_formed() {
        for p in Primitive::ALL {
            let rows = p.transitions();
            assert!(!rows.is_empty(), "{p} has no rows");
            assert!(
                rows.iter().any(|t| t.from == p.initial()),
                "{p}: nothing leaves the initial state"
            );
            for (i, a) in rows.iter().enumerate() {
                for b in &rows[i + 1..] {
                    assert!(
                        !(a.from == b.from && a.event == b.event),
                        "{p}: two rows for {} in {}",
                        a.event,
                        a.from
                    );
                }
                // Every state is reachable from the initial one.
                assert!(
                    a.from == p.initial() || rows.iter().any(|t| t.to == a.from),
                    "{p}: state {} cannot be reached",
                    a.from
                );
            }
        }
    }
}
