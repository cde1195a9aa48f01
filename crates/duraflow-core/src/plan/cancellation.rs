//! Cancellation policies (`InstanceOptions::cancellation`): an instance that waited too long
//! for its first turn, or runs too long, is cancelled as a client's cancel would cancel it.

use crate::{Event, EventKind, MessageKind, NewMessage, Timestamp};

use super::{Deliveries, TurnInstance, TurnPlan};

/// Why an instance that became due at `due_at` and is first taken at `now` is cancelled at
/// once, if its policy's `max_pending` has passed by then; `None` otherwise. Only the first
/// execution's first turn is checked (a retried attempt or a continue-as-new has started).
pub fn pending_too_long(
    instance: TurnInstance<'_>,
    due_at: Timestamp,
    now: Timestamp,
) -> Option<String> {
    let max = instance.options.cancellation?.max_pending?;
    if instance.execution != 1 || now <= due_at.plus(max) {
        return None;
    }
    Some(format!(
        "the instance did not start within its max_pending of {max:?} (due at {due_at:?}, \
         first taken at {now:?}): cancelled by its cancellation policy"
    ))
}

impl Deliveries {
    /// Delivers a cancellation with `reason` as part of the execution's start, after what the
    /// start carried and before anything else, so that the workflow is cancelled before it
    /// first runs.
    pub fn cancel_at_start(&mut self, reason: String) {
        self.events
            .insert(self.start_len, EventKind::CancelRequested { reason });
        self.start_len += 1;
    }
}

impl TurnPlan {
    /// The instance's `max_duration` timer: a cancellation to itself, visible `max_duration`
    /// after its first execution started (`started` is that execution's `workflow_started`).
    /// It is sent with the commit that journals the start, so exactly once; it outlives
    /// continue-as-new and retried attempts, and is dropped with the inbox when the instance
    /// finishes first.
    pub(super) fn limit_duration(&mut self, instance: TurnInstance<'_>, started: &Event) {
        let Some(max) = instance.options.cancellation.and_then(|c| c.max_duration) else {
            return;
        };
        if instance.execution != 1 {
            return;
        }
        self.messages.push(NewMessage {
            instance_id: instance.id.to_owned(),
            kind: MessageKind::Cancel {
                reason: format!(
                    "the instance ran longer than its max_duration of {max:?}: cancelled by \
                     its cancellation policy"
                ),
            },
            visible_at: started.at.plus(max),
        });
    }
}
