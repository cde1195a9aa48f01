//! From the operations a workflow issued to the tasks, timer messages and child instances
//! that carry them out.

use crate::{
    Event, EventKind, Failure, FailureKind, MessageKind, NewCallback, NewInstance, NewMessage,
    NewTask, OpId, OpResult, ParentLink, Timestamp,
};

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
    fn timer(&mut self, instance: TurnInstance<'_>, op: &OpId, at: Timestamp) {
        self.messages.push(NewMessage {
            instance_id: instance.id.to_owned(),
            kind: MessageKind::TimerFired {
                execution: instance.execution,
                op: op.clone(),
            },
            visible_at: at,
        });
    }

    /// Adds the side effects of the operations issued in `new_events` (the turn's new journal
    /// events): `activity_scheduled` → a task; `timer_created` (and a step's `step_retrying`) → a
    /// `timer_fired` message to the instance itself, visible at the fire (retry) time; `child_started` → a child instance (with the
    /// parent link unless detached), or, when `existing` holds an instance of that id that is
    /// not this very child, a failed `child_result` to the instance instead of waiting for a
    /// result that would never come (nothing at all for a detached child); `child_cancelled` →
    /// a cancellation to the child; `callback_created` → the callback's token registered, and
    /// timers of its operation at its timeout and first heartbeat deadline; a journaled
    /// heartbeat → a timer at its new deadline; a callback timed out → its token closed.
    pub fn schedule(
        &mut self,
        instance: TurnInstance<'_>,
        new_events: &[Event],
        existing: &[ExistingInstance],
    ) {
        for ev in new_events {
            match &ev.kind {
                EventKind::ActivityScheduled {
                    op,
                    name,
                    input,
                    options,
                } => self.tasks.push(NewTask {
                    instance_id: instance.id.to_owned(),
                    execution: instance.execution,
                    op: op.clone(),
                    name: name.clone(),
                    input: input.clone(),
                    options: options.clone(),
                    scheduled_at: ev.at,
                }),
                // A step's retry waits on a timer of the step's own operation.
                EventKind::TimerCreated { op, fire_at: at }
                | EventKind::StepRetrying {
                    op, retry_at: at, ..
                } => self.timer(instance, op, *at),
                EventKind::CallbackCreated {
                    op,
                    name,
                    token,
                    timeout_at,
                    heartbeat_timeout,
                } => {
                    self.callbacks.push(NewCallback {
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
                        self.timer(instance, op, at);
                    }
                }
                EventKind::CallbackHeartbeat {
                    op,
                    next_deadline: Some(at),
                } => self.timer(instance, op, *at),
                EventKind::CallbackFailed { op, failure }
                    if failure.kind == FailureKind::Timeout
                        && failure
                            .code
                            .as_deref()
                            .is_some_and(|c| c.starts_with("callback_")) =>
                {
                    self.timed_out_callbacks.push(op.clone())
                }
                EventKind::ChildCancelled {
                    instance_id,
                    reason,
                    ..
                } => self.messages.push(NewMessage {
                    instance_id: instance_id.clone(),
                    kind: MessageKind::Cancel {
                        reason: reason.clone(),
                    },
                    visible_at: ev.at,
                }),
                EventKind::ChildStarted {
                    op,
                    name,
                    instance_id,
                    input,
                    detached,
                } => {
                    let parent = (!detached).then(|| ParentLink {
                        instance_id: instance.id.to_owned(),
                        execution: instance.execution,
                        op: op.clone(),
                    });
                    // An id already used by another instance cannot be this child.
                    let taken = existing
                        .iter()
                        .any(|e| e.id == *instance_id && e.parent != parent);
                    if taken {
                        if let Some(link) = parent {
                            let failure = Failure::new(
                                FailureKind::Application,
                                format!(
                                    "cannot start child workflow {name:?}: instance id \
                                     {instance_id:?} is already in use"
                                ),
                            )
                            .at(format!("child workflow {name:?}"), op);
                            self.messages.push(NewMessage {
                                instance_id: instance.id.to_owned(),
                                kind: MessageKind::ChildResult {
                                    execution: link.execution,
                                    op: link.op,
                                    result: OpResult::Err(failure),
                                },
                                visible_at: ev.at,
                            });
                        }
                        continue;
                    }
                    self.instances.push(NewInstance {
                        id: instance_id.clone(),
                        name: name.clone(),
                        input: input.clone(),
                        parent,
                        created_at: ev.at,
                    });
                }
                _ => {}
            }
        }
    }
}
