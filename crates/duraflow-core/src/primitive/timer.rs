//! Durable timers: `timer_created` records the fire time; the turn sends the instance a
//! `timer_fired` message visible at that time, delivered as `timer_fired`.

use super::{Transition, ABANDONED};

pub(super) const INITIAL: &str = "created";

pub(super) static TRANSITIONS: [Transition; 2] = [
    Transition::new(INITIAL, "timer_fired", "fired"),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];
