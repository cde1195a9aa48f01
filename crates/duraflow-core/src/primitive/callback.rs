//! Callbacks: `callback_created` opens an operation that an external party resolves by its
//! token (the turn registers the token with the store). `client.complete_callback` /
//! `fail_callback` arrive as `callback_completed` / `callback_failed`; `heartbeat_callback`
//! arrives as `callback_heartbeat`, which moves the heartbeat deadline. Timeouts use timers of
//! the callback's own operation: when one fires the run decides, from the journaled times,
//! whether the callback timed out (journaled as `callback_failed`, kind `timeout`) or the timer
//! is stale (a heartbeat moved the deadline) and dropped.

use super::{Transition, ABANDONED};
use crate::plan::TurnInstance;
use crate::{Event, EventKind, FailureKind, NewCallback, TurnPlan};

pub(super) const INITIAL: &str = "open";

pub(super) static TRANSITIONS: [Transition; 4] = [
    Transition::new(INITIAL, "callback_completed", "completed"),
    Transition::new(INITIAL, "callback_failed", "failed"),
    Transition::new(INITIAL, "callback_heartbeat", INITIAL),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];

/// `callback_created` → its token registered, and timers of its operation at its timeout and
/// first heartbeat deadline; a journaled heartbeat → a timer at its new deadline; a callback
/// that timed out → its token closed.
pub(super) fn schedule(plan: &mut TurnPlan, instance: TurnInstance<'_>, ev: &Event) {
    match &ev.kind {
        EventKind::CallbackCreated {
            op,
            name,
            token,
            timeout_at,
            heartbeat_timeout,
        } => {
            plan.callbacks.push(NewCallback {
                token: token.clone(),
                instance_id: instance.id.to_owned(),
                execution: instance.execution,
                op: op.clone(),
                name: name.clone(),
                timeout_at: *timeout_at,
                created_at: ev.at,
            });
            let deadlines = [*timeout_at, heartbeat_timeout.map(|h| ev.at.plus_ceil(h))];
            for at in deadlines.into_iter().flatten() {
                plan.timer(instance, op, at);
            }
        }
        EventKind::CallbackHeartbeat {
            op,
            next_deadline: Some(at),
        } => plan.timer(instance, op, *at),
        EventKind::CallbackFailed { op, failure }
            if failure.kind == FailureKind::Timeout
                && failure
                    .code
                    .as_deref()
                    .is_some_and(|c| c.starts_with("callback_")) =>
        {
            plan.timed_out_callbacks.push(op.clone())
        }
        _ => {}
    }
}
