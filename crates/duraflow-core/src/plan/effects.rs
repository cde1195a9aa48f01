//! From the operations a workflow issued to the tasks, timer messages, child instances,
//! callback tokens and queue-wide emits and awaits that carry them out. What each primitive
//! derives is in its own module of `crate::primitive`; this module walks the turn's new events
//! and hands each to its primitive.

use crate::{Event, EventKind, MessageKind, NewMessage, OpId, ParentLink, Timestamp};

use super::{TurnInstance, TurnPlan};

/// An instance that already exists under an id a `child_started` event asks for, with its
/// parent link (the runtime reads it from the store; see [`started_children`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ExistingInstance {
    /// Its id.
    pub id: String,
    /// Its parent, if it is an attached child.
    pub parent: Option<ParentLink>,
}

/// The instance ids of the children started by `new_events`, in journal order: the ids whose
/// instances [`TurnPlan::schedule`] needs to know about.
pub fn started_children(new_events: &[Event]) -> impl Iterator<Item = &str> {
    new_events.iter().filter_map(|ev| match &ev.kind {
        EventKind::ChildStarted { instance_id, .. } => Some(instance_id.as_str()),
        _ => None,
    })
}

impl TurnPlan {
    /// A `timer_fired` message for `op` to the instance itself, visible at `at`.
    pub(crate) fn timer(&mut self, instance: TurnInstance<'_>, op: &OpId, at: Timestamp) {
        self.messages.push(NewMessage {
            instance_id: instance.id.to_owned(),
            kind: MessageKind::TimerFired {
                execution: instance.execution,
                op: op.clone(),
            },
            visible_at: at,
        });
    }

    /// Adds the side effects of the turn's new journal events, each derived by the module of
    /// its primitive (`duraflow_core::primitive`): `activity_scheduled` → a task;
    /// `timer_created` (and a step's `step_retrying`) → a `timer_fired` message to the instance
    /// itself, visible at the fire (retry) time; `child_started` → a child instance (with the
    /// parent link unless detached), or, when `existing` holds an instance of that id that is
    /// not this very child, a failed `child_result` to the instance instead of waiting for a
    /// result that would never come (nothing at all for a detached child); `child_cancelled` →
    /// a cancellation to the child; `callback_created` → the callback's token registered, and
    /// timers of its operation at its timeout and first heartbeat deadline; a journaled
    /// heartbeat → a timer at its new deadline; a callback timed out → its token closed;
    /// `queue_event_emit_started` → an emit in the instance's queue;
    /// `queue_event_await_started` → an await there, and a timer of its operation at its
    /// `timeout_at`.
    pub fn schedule(
        &mut self,
        instance: TurnInstance<'_>,
        new_events: &[Event],
        existing: &[ExistingInstance],
    ) {
        for ev in new_events {
            if matches!(ev.kind, EventKind::WorkflowStarted { .. }) {
                self.limit_duration(instance, ev);
            }
            if let Some(primitive) = ev.kind.primitive() {
                primitive.schedule(self, instance, ev, existing);
            }
        }
    }
}
