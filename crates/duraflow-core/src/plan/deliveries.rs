//! From messages to the events a turn delivers.

use crate::{EventKind, MessageKind, OpResult};

use super::TurnInstance;

/// The delivered event an external or result message becomes, or `None` for a message that is
/// stale (a result addressed to an execution other than `current`) or is a start (see
/// [`deliveries`]).
fn message_event(current: u32, kind: MessageKind) -> Option<EventKind> {
    Some(match kind {
        MessageKind::ActivityResult {
            execution,
            op,
            result,
        } if execution == current => match result {
            OpResult::Ok(output) => EventKind::ActivityCompleted { op, output },
            OpResult::Err(failure) => EventKind::ActivityFailed { op, failure },
        },
        MessageKind::TimerFired { execution, op } if execution == current => {
            EventKind::TimerFired { op }
        }
        MessageKind::ChildResult {
            execution,
            op,
            result,
        } if execution == current => match result {
            OpResult::Ok(output) => EventKind::ChildCompleted { op, output },
            OpResult::Err(failure) => EventKind::ChildFailed { op, failure },
        },
        MessageKind::Event { name, data } => EventKind::EventRaised { name, data },
        MessageKind::Cancel { reason } => EventKind::CancelRequested { reason },
        MessageKind::Terminate { reason } => EventKind::TerminateRequested { reason },
        _ => return None,
    })
}

/// The events a turn delivers, in order, from the messages it took (in inbox order).
///
/// A turn that `begins` an execution (its journal is empty) delivers `workflow_started` first,
/// built from the instance (which holds the current execution's name, input and parent), then
/// the messages its start message carried over from the previous execution, then the other
/// messages in inbox order. Messages sent while the previous execution's last turn ran are
/// queued ahead of the start in the inbox, but were sent after everything carried, so this is
/// the order in which they were all sent, and no message can come before the start. Any other
/// turn skips start messages (a later start of an execution that has begun is a duplicate).
/// Results addressed to another execution are stale: they are taken and not delivered.
pub fn deliveries(
    instance: TurnInstance<'_>,
    begins: bool,
    messages: impl IntoIterator<Item = MessageKind>,
) -> Vec<EventKind> {
    let messages = messages.into_iter();
    let current = instance.execution;
    let mut first = Vec::new();
    let mut rest = Vec::with_capacity(messages.size_hint().0);
    if begins {
        first.push(EventKind::WorkflowStarted {
            name: instance.name.to_owned(),
            input: instance.input.clone(),
            parent: instance.parent.cloned(),
        });
    }
    for kind in messages {
        match kind {
            MessageKind::Start { execution, carried } => {
                if begins && execution == current {
                    first.extend(
                        carried
                            .into_iter()
                            .filter_map(|k| message_event(current, k)),
                    );
                }
            }
            kind => rest.extend(message_event(current, kind)),
        }
    }
    first.extend(rest);
    first
}
