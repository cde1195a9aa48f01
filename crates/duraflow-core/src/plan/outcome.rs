//! From how an execution ended to what the turn writes for it: status, the result for a
//! parent, what open children are told, and the next execution's start.

use crate::{
    AttemptStart, EventKind, Failure, FailureKind, MessageKind, NewMessage, OpResult, Outcome,
    ParentLink, Payload, Timestamp,
};

use super::{TurnEnd, TurnInstance, TurnPlan};

/// The start of the reason an open child is cancelled with when its parent was cancelled.
const CANCELLED_PARENT: &str = "the parent workflow was cancelled: ";
/// The start of the reason an open child is terminated with when its parent was terminated.
const TERMINATED_PARENT: &str = "the parent workflow was terminated: ";

/// The reason handed down to the children of an instance that ended for `reason`: `prefix`
/// once before the original reason, however deep the nesting (a grandchild is told of the
/// original cancellation, not of its parent's being told of it).
fn cascaded(prefix: &str, reason: &str) -> String {
    let mut original = reason;
    while let Some(rest) = original.strip_prefix(prefix) {
        original = rest;
    }
    format!("{prefix}{original}")
}

fn cancel_message(reason: &str) -> MessageKind {
    MessageKind::Cancel {
        reason: reason.to_owned(),
    }
}

/// The message that starts the execution after one that continued as new, carrying what the
/// instance was sent and the ending execution did not take: the external events it never
/// waited for (oldest first), then the messages this turn consumed but did not deliver because
/// the execution ended before reaching them. External events, cancellation and termination are
/// meant for the instance, not for one execution, so they carry over; results addressed to the
/// ending execution are stale and dropped.
pub(super) fn next_execution_start(
    instance: TurnInstance<'_>,
    carried_events: Vec<(String, Payload)>,
    undelivered: impl Iterator<Item = EventKind>,
    retry: Option<AttemptStart>,
    now: Timestamp,
) -> NewMessage {
    let mut carried: Vec<MessageKind> = carried_events
        .into_iter()
        .map(|(name, data)| MessageKind::Event { name, data })
        .collect();
    carried.extend(undelivered.filter_map(|kind| match kind {
        EventKind::EventRaised { name, data, .. } => Some(MessageKind::Event { name, data }),
        EventKind::CancelRequested { reason } => Some(MessageKind::Cancel { reason }),
        EventKind::TerminateRequested { reason } => Some(MessageKind::Terminate { reason }),
        _ => None,
    }));
    NewMessage {
        instance_id: instance.id.to_owned(),
        kind: MessageKind::Start {
            execution: instance.execution + 1,
            carried,
            retry: retry.map(Box::new),
        },
        visible_at: now,
    }
}

impl TurnPlan {
    /// Records how the execution stands after the turn, with the messages that go with it, all
    /// visible at `now`:
    ///
    /// - no `outcome`: it goes on;
    /// - completed, failed, cancelled or terminated: a `child_result` to the parent (`parent`,
    ///   the run's, or else the instance's), and to each of `open_children` (attached children
    ///   still running) a cancellation — for a terminated instance a termination — whose reason
    ///   says why (naming the original reason once, however deep the nesting);
    /// - continued as new: the next execution's start, carrying the events the run left
    ///   untaken and the external events, cancellations and terminations among `undelivered`
    ///   (the rest of the turn's deliveries, which the execution ended before reaching), in
    ///   send order.
    pub fn end(
        &mut self,
        instance: TurnInstance<'_>,
        outcome: Option<Outcome>,
        parent: Option<ParentLink>,
        open_children: Vec<String>,
        undelivered: impl Iterator<Item = EventKind>,
        now: Timestamp,
    ) {
        let Some(outcome) = outcome else {
            self.end = TurnEnd::Running;
            return;
        };
        let parent = parent.or_else(|| instance.parent.cloned());
        let (end, result, child_message) = match outcome {
            Outcome::Completed(output) => (
                TurnEnd::Completed(output.clone()),
                OpResult::Ok(output),
                cancel_message("the parent workflow completed"),
            ),
            Outcome::Failed(failure) => (
                TurnEnd::Failed(failure.clone()),
                OpResult::Err(failure),
                cancel_message("the parent workflow failed"),
            ),
            Outcome::Cancelled(reason) => {
                let failure = Failure::new(FailureKind::Cancelled, reason.clone());
                (
                    TurnEnd::Cancelled(failure.clone()),
                    OpResult::Err(failure),
                    cancel_message(&cascaded(CANCELLED_PARENT, &reason)),
                )
            }
            Outcome::Terminated(reason) => {
                let failure = Failure::new(FailureKind::Terminated, reason.clone());
                (
                    TurnEnd::Terminated(failure.clone()),
                    OpResult::Err(failure),
                    MessageKind::Terminate {
                        reason: cascaded(TERMINATED_PARENT, &reason),
                    },
                )
            }
            Outcome::ContinuedAsNew {
                input,
                carried_events,
            } => {
                self.end = TurnEnd::ContinuedAsNew(input);
                self.messages.push(next_execution_start(
                    instance,
                    carried_events,
                    undelivered,
                    None,
                    now,
                ));
                return;
            }
        };
        self.end = end;
        if let Some(link) = parent {
            self.messages.push(NewMessage {
                instance_id: link.instance_id,
                kind: MessageKind::ChildResult {
                    execution: link.execution,
                    op: link.op,
                    result,
                },
                visible_at: now,
            });
        }
        for child in open_children {
            self.messages.push(NewMessage {
                instance_id: child,
                kind: child_message.clone(),
                visible_at: now,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cascaded_reason_names_the_parent_once_at_any_depth() {
        let child = cascaded(CANCELLED_PARENT, "the customer cancelled");
        assert_eq!(
            child,
            "the parent workflow was cancelled: the customer cancelled"
        );
        let grandchild = cascaded(CANCELLED_PARENT, &child);
        assert_eq!(grandchild, child);
        assert_eq!(
            cascaded(TERMINATED_PARENT, &cascaded(TERMINATED_PARENT, "stop")),
            "the parent workflow was terminated: stop"
        );
    }
}
