//! Inline steps: code run in the workflow's own process, each attempt journaled.
//!
//! `step_started` (attempt 1, and again for each retry) → the closure runs; its result is
//! journaled as `step_completed`, `step_failed` (final), or `step_retrying` (the attempt failed
//! and the retry policy allows another at `retry_at`). A retrying step waits on a durable timer:
//! the turn sends the instance a `timer_fired` for the step's own operation at `retry_at`, and
//! the step then issues `step_started` for the next attempt.
//!
//! Durability depends on the step's semantics: at-least-once steps make their result durable
//! before the workflow moves past them; at-most-once steps make their `step_started` durable
//! before the closure runs, and an attempt found started with no result is recorded as failed
//! (`step_interrupted`) without running it again.
//!
//! `retry_due` lasts only from the timer's delivery to the step's next poll, which follows at
//! once, so a step is never dropped in it.

use super::{Transition, ABANDONED};
use crate::plan::TurnInstance;
use crate::{Event, EventKind, TurnPlan};

pub(super) const INITIAL: &str = "running";

pub(super) static TRANSITIONS: [Transition; 7] = [
    Transition::new(INITIAL, "step_completed", "completed"),
    Transition::new(INITIAL, "step_failed", "failed"),
    Transition::new(INITIAL, "step_retrying", "backing_off"),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
    Transition::new("backing_off", "timer_fired", "retry_due"),
    Transition::new("backing_off", ABANDONED, ABANDONED),
    Transition::new("retry_due", "step_started", INITIAL),
];

/// `step_retrying` → a `timer_fired` of the step's own operation at the retry time.
pub(super) fn schedule(plan: &mut TurnPlan, instance: TurnInstance<'_>, ev: &Event) {
    if let EventKind::StepRetrying { op, retry_at, .. } = &ev.kind {
        plan.timer(instance, op, *retry_at);
    }
}
