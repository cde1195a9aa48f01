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
            OpResult::Err(failure) => EventKind::ActivityFailed {
                op,
                failure: Box::new(failure),
            },
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
            OpResult::Err(failure) => EventKind::ChildFailed {
                op,
                failure: Box::new(failure),
            },
        },
        MessageKind::CallbackResult {
            execution,
            op,
            result,
        } if execution == current => match result {
            OpResult::Ok(output) => EventKind::CallbackCompleted { op, output },
            OpResult::Err(failure) => EventKind::CallbackFailed {
                op,
                failure: Box::new(failure),
            },
        },
        MessageKind::CallbackHeartbeat { execution, op } if execution == current => {
            EventKind::CallbackHeartbeat {
                op,
                next_deadline: None,
            }
        }
        MessageKind::QueueEvent {
            execution,
            op,
            data,
            ..
        } if execution == current => EventKind::QueueEventReceived { op, data },
        MessageKind::EmitResult {
            execution,
            op,
            outcome,
        } if execution == current => EventKind::QueueEventEmitCompleted { op, outcome },
        MessageKind::Event { name, data } => EventKind::EventRaised {
            name,
            data,
            taken_by: None,
        },
        MessageKind::Cancel { reason } => EventKind::CancelRequested { reason },
        MessageKind::Terminate { reason } => EventKind::TerminateRequested { reason },
        _ => return None,
    })
}

/// What a turn delivers: the events, in order, and where each came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deliveries {
    /// The events to deliver, in order.
    pub events: Vec<EventKind>,
    /// How many of the first `events` begin the execution (its `workflow_started` and what
    /// its start carried over): they are delivered together, before the workflow first runs
    /// (see [`crate::WorkflowRun::begin`]). 0 for a turn that does not begin an execution.
    pub start_len: usize,
    /// For each of `events` after the start, the index (in the turn's messages) of the
    /// message it came from; increasing.
    pub sources: Vec<usize>,
    /// The turn begins an execution but its messages hold no start for it: it was fetched
    /// before the start message was visible (a store keeps an execution from being due before
    /// its start is, so this is a store that did not), and what the start carries over would
    /// be lost. Such a turn must deliver nothing: give it back, to be fetched again with its
    /// start.
    pub start_missing: bool,
}

impl Deliveries {
    /// Records `version` (the workflow's registered version) in the `workflow_started` this
    /// turn delivers, if it begins an execution; otherwise changes nothing.
    pub fn set_version(&mut self, version: Option<&str>) {
        if self.start_len == 0 {
            return;
        }
        if let Some(EventKind::WorkflowStarted { version: v, .. }) = self.events.first_mut() {
            *v = version.map(str::to_owned);
        }
    }

    /// How many of the turn's first messages are spent once the first `applied` events have
    /// been delivered: every message before the one the next event comes from (all
    /// `message_count` once every event is delivered). Start messages are spent as soon as the
    /// start is delivered, which is always first. A checkpoint of a turn consumes the spent
    /// messages, so that after a crash the rest is delivered again, and nothing twice.
    pub fn spent_before(&self, applied: usize, message_count: usize) -> usize {
        match applied.checked_sub(self.start_len) {
            Some(i) => self.sources.get(i).copied().unwrap_or(message_count),
            None => 0,
        }
    }
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
/// Results addressed to another execution are stale: they are taken and not delivered. A turn
/// that begins an execution without its start message is flagged
/// ([`Deliveries::start_missing`]).
pub fn deliveries(
    instance: TurnInstance<'_>,
    begins: bool,
    messages: impl IntoIterator<Item = MessageKind>,
) -> Deliveries {
    let messages = messages.into_iter();
    let current = instance.execution;
    let mut first = Vec::new();
    let mut rest = Vec::with_capacity(messages.size_hint().0);
    let mut sources = Vec::with_capacity(messages.size_hint().0);
    let mut retry = None;
    let mut start_seen = false;
    for (index, kind) in messages.enumerate() {
        match kind {
            MessageKind::Start {
                execution,
                carried,
                retry: attempt,
            } => {
                if begins && execution == current {
                    start_seen = true;
                    retry = attempt;
                    first.extend(
                        carried
                            .into_iter()
                            .filter_map(|k| message_event(current, k)),
                    );
                }
            }
            kind => {
                if let Some(event) = message_event(current, kind) {
                    rest.push(event);
                    sources.push(index);
                }
            }
        }
    }
    if begins {
        first.insert(
            0,
            EventKind::WorkflowStarted {
                name: instance.name.to_owned(),
                input: instance.input.clone(),
                parent: instance.parent.cloned().map(Box::new),
                headers: instance.options.headers.clone(),
                retry,
                version: None,
            },
        );
    }
    let start_len = first.len();
    first.extend(rest);
    Deliveries {
        events: first,
        start_len,
        sources,
        start_missing: begins && !start_seen,
    }
}
