//! Queue-wide events (the tensorzero `durable` model): `queue_event_emit_started` emits an
//! event in the instance's queue and `queue_event_await_started` awaits one there.
//!
//! An emit is carried out by the turn's commit (the store keeps the first emit of a name in a
//! queue and answers its awaits); the store then sends the emitting operation what it did,
//! delivered as `queue_event_emit_completed`. So replay, which reads the outcome from the
//! journal, never emits again.
//!
//! An await is registered with the store by the turn's commit; the event's data arrives as
//! `queue_event_received` (at once when it was emitted before). With a timeout, a timer of the
//! await's own operation fires at `timeout_at`: whichever of the two is journaled first decides
//! the await, so replay takes the same branch, and the other is refused as stale.

use super::{Transition, ABANDONED};
use crate::plan::TurnInstance;
use crate::{Event, EventKind, NewAwait, NewEmit, TurnPlan};

/// The state an emit starts in.
pub(super) const EMIT_INITIAL: &str = "emitting";

/// The emit's table.
pub(super) static EMIT_TRANSITIONS: [Transition; 2] = [
    Transition::new(EMIT_INITIAL, "queue_event_emit_completed", "emitted"),
    Transition::new(EMIT_INITIAL, ABANDONED, ABANDONED),
];

/// The state an await starts in.
pub(super) const AWAIT_INITIAL: &str = "awaiting";

/// The await's table.
pub(super) static AWAIT_TRANSITIONS: [Transition; 3] = [
    Transition::new(AWAIT_INITIAL, "queue_event_received", "received"),
    Transition::new(AWAIT_INITIAL, "timer_fired", "timed_out"),
    Transition::new(AWAIT_INITIAL, ABANDONED, ABANDONED),
];

/// `queue_event_emit_started` → the emit, in the instance's queue.
pub(super) fn schedule_emit(plan: &mut TurnPlan, instance: TurnInstance<'_>, ev: &Event) {
    if let EventKind::QueueEventEmitStarted { op, name, data } = &ev.kind {
        plan.emits.push(NewEmit {
            instance_id: instance.id.to_owned(),
            execution: instance.execution,
            op: op.clone(),
            queue: instance.queue.to_owned(),
            name: name.clone(),
            data: data.clone(),
        });
    }
}

/// `queue_event_await_started` → the await registered in the instance's queue, and a timer of
/// its operation at its timeout.
pub(super) fn schedule_await(plan: &mut TurnPlan, instance: TurnInstance<'_>, ev: &Event) {
    if let EventKind::QueueEventAwaitStarted {
        op,
        name,
        timeout_at,
    } = &ev.kind
    {
        plan.awaits.push(NewAwait {
            instance_id: instance.id.to_owned(),
            execution: instance.execution,
            op: op.clone(),
            queue: instance.queue.to_owned(),
            name: name.clone(),
        });
        if let Some(at) = timeout_at {
            plan.timer(instance, op, *at);
        }
    }
}
