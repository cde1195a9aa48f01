//! Durable timers: `timer_created` records the fire time; the turn sends the instance a
//! `timer_fired` message visible at that time, delivered as `timer_fired`.

use super::{Transition, ABANDONED};
use crate::plan::TurnInstance;
use crate::{Event, EventKind, TurnPlan};

pub(super) const INITIAL: &str = "created";

pub(super) static TRANSITIONS: [Transition; 2] = [
    Transition::new(INITIAL, "timer_fired", "fired"),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];

/// `timer_created` → a `timer_fired` message to the instance itself at the fire time.
pub(super) fn schedule(plan: &mut TurnPlan, instance: TurnInstance<'_>, ev: &Event) {
    if let EventKind::TimerCreated { op, fire_at } = &ev.kind {
        plan.timer(instance, op, *fire_at);
    }
}
