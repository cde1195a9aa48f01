//! Callbacks: `callback_created` opens an operation that an external party resolves by its
//! token (the turn registers the token with the store). `client.complete_callback` /
//! `fail_callback` arrive as `callback_completed` / `callback_failed`; `heartbeat_callback`
//! arrives as `callback_heartbeat`, which moves the heartbeat deadline. Timeouts use timers of
//! the callback's own operation: when one fires the run decides, from the journaled times,
//! whether the callback timed out (journaled as `callback_failed`, kind `timeout`) or the timer
//! is stale (a heartbeat moved the deadline) and dropped.

use super::{Transition, ABANDONED};

pub(super) const INITIAL: &str = "open";

pub(super) static TRANSITIONS: [Transition; 4] = [
    Transition::new(INITIAL, "callback_completed", "completed"),
    Transition::new(INITIAL, "callback_failed", "failed"),
    Transition::new(INITIAL, "callback_heartbeat", INITIAL),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];
