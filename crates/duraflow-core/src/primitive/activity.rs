//! Activities: work run by a worker pool (in this process or another), retried by the worker
//! under the activity's retry policy; the workflow sees only the final result.
//!
//! `activity_scheduled` → the turn creates a task; the worker's final result comes back as an
//! `activity_result` message, delivered as `activity_completed` or `activity_failed`.

use super::{Transition, ABANDONED};
use crate::plan::TurnInstance;
use crate::{Event, EventKind, NewTask, TurnPlan};

pub(super) const INITIAL: &str = "scheduled";

pub(super) static TRANSITIONS: [Transition; 3] = [
    Transition::new(INITIAL, "activity_completed", "completed"),
    Transition::new(INITIAL, "activity_failed", "failed"),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];

/// `activity_scheduled` → a task.
pub(super) fn schedule(plan: &mut TurnPlan, instance: TurnInstance<'_>, ev: &Event) {
    if let EventKind::ActivityScheduled {
        op,
        name,
        input,
        options,
    } = &ev.kind
    {
        plan.tasks.push(NewTask {
            instance_id: instance.id.to_owned(),
            execution: instance.execution,
            op: op.clone(),
            name: name.clone(),
            input: input.clone(),
            options: options.as_ref().clone(),
            scheduled_at: ev.at,
        });
    }
}
