//! Waits for external events: `event_wait_started` registers a waiter for a name; the next
//! `event_raised` of that name (or one raised earlier and buffered) is handed to it.

use super::{Transition, ABANDONED};

pub(super) const INITIAL: &str = "waiting";

pub(super) static TRANSITIONS: [Transition; 2] = [
    Transition::new(INITIAL, "event_raised", "received"),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];
