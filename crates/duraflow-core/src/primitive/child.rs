//! Child workflows: `child_started` makes the turn create the child instance (with a parent
//! link unless detached); an attached child's end comes back as a `child_result` message,
//! delivered as `child_completed` or `child_failed`. A detached child is done once started.
//! The workflow may give up on an attached child (`child_cancelled`, an `invoke` that timed
//! out): the child is sent a cancellation and its result is refused.

use super::{Transition, ABANDONED};
use crate::plan::{ExistingInstance, TurnInstance};
use crate::{
    Event, EventKind, Failure, FailureKind, InstanceOptions, MessageKind, NewInstance, NewMessage,
    OpResult, ParentLink, TurnPlan,
};

pub(super) const INITIAL: &str = "started";

pub(super) static TRANSITIONS: [Transition; 5] = [
    Transition::new(INITIAL, "child_completed", "completed"),
    Transition::new(INITIAL, "child_failed", "failed"),
    Transition::new(INITIAL, "detached", "detached"),
    Transition::new(INITIAL, "child_cancelled", "cancelled"),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];

/// `child_started` → the child instance (with the parent link unless detached), or, when
/// `existing` holds another instance of that id, a failed `child_result` to the instance
/// itself (nothing for a detached child); `child_cancelled` → a cancellation to the child.
pub(super) fn schedule(
    plan: &mut TurnPlan,
    instance: TurnInstance<'_>,
    ev: &Event,
    existing: &[ExistingInstance],
) {
    match &ev.kind {
        EventKind::ChildCancelled {
            instance_id,
            reason,
            ..
        } => plan.messages.push(NewMessage {
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
            queue,
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
            if !taken {
                plan.instances.push(NewInstance {
                    id: instance_id.clone(),
                    name: name.clone(),
                    input: input.clone(),
                    parent,
                    queue: queue.clone().unwrap_or_else(|| instance.queue.to_owned()),
                    created_at: ev.at,
                    start_at: None,
                    options: InstanceOptions::default(),
                });
                return;
            }
            if let Some(link) = parent {
                let failure = Failure::new(
                    FailureKind::Application,
                    format!(
                        "cannot start child workflow {name:?}: instance id {instance_id:?} is \
                         already in use"
                    ),
                )
                .at(format!("child workflow {name:?}"), op);
                plan.messages.push(NewMessage {
                    instance_id: instance.id.to_owned(),
                    kind: MessageKind::ChildResult {
                        execution: link.execution,
                        op: link.op,
                        result: OpResult::Err(failure),
                    },
                    visible_at: ev.at,
                });
            }
        }
        _ => {}
    }
}
