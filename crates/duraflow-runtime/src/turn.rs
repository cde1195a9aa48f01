//! One workflow turn: replay the journal, apply the new messages, and turn what the workflow
//! did into a [`TurnCommit`].

use duraflow_core::{
    Event, EventKind, Failure, FailureKind, Outcome, ParentLink, Payload, Timestamp, WorkflowRun,
};
use duraflow_store::{
    InstanceInfo, InstanceStatus, Journal, Message, MessageKind, NewInstance, NewMessage, NewTask,
    OpResult, StoreError, TurnCommit, TurnWork,
};

use crate::engine::Inner;

/// What to do with a fetched turn.
pub(crate) enum TurnDecision {
    /// Commit it; `finished` says whether the instance ends with it. `run` is the workflow it
    /// ran: once the commit succeeds it is kept warm if its execution goes on, and dropped
    /// otherwise.
    Commit {
        commit: Box<TurnCommit>,
        finished: bool,
        run: Option<WorkflowRun>,
    },
    /// Give the lease back and try again later.
    Abandon { reason: String },
}

/// The delivered event an external or result message becomes, or `None` for a message that is
/// stale (a result addressed to an earlier execution) or is a start (see [`deliveries`]).
fn message_event(instance: &InstanceInfo, kind: MessageKind) -> Option<EventKind> {
    let current = instance.execution;
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

/// The events a turn delivers, in order.
///
/// A turn that begins an execution (its journal is empty) delivers `workflow_started` first,
/// built from the instance (which holds the current execution's name, input and parent), then
/// the messages its start message carried over from the previous execution, then the other
/// messages in inbox order. Messages sent while the previous execution's last turn ran are
/// queued ahead of the start in the inbox, but were sent after everything carried, so this is
/// the order in which they were all sent, and no message can come before the start. Any other
/// turn skips start messages (a later start of an execution that has begun is a duplicate).
fn deliveries(instance: &InstanceInfo, begins: bool, messages: Vec<Message>) -> Vec<EventKind> {
    let mut first = Vec::new();
    let mut rest = Vec::with_capacity(messages.len());
    if begins {
        first.push(EventKind::WorkflowStarted {
            name: instance.name.clone(),
            input: instance.input.clone(),
            parent: instance.parent.clone(),
        });
    }
    for m in messages {
        match m.kind {
            MessageKind::Start { execution, carried } => {
                if begins && execution == instance.execution {
                    first.extend(
                        carried
                            .into_iter()
                            .filter_map(|k| message_event(instance, k)),
                    );
                }
            }
            kind => rest.extend(message_event(instance, kind)),
        }
    }
    first.extend(rest);
    first
}

/// Where a turn's workflow comes from: kept warm in memory, or to be replayed from its journal.
enum Start {
    Warm(WorkflowRun),
    Replay(Vec<Event>),
}

/// The workflow a turn continues: the warm run when the store left the journal unread (and
/// this engine still holds it), else the journal to replay, read now if the store did not.
async fn start_of(
    inner: &Inner,
    instance: &InstanceInfo,
    journal: Journal,
) -> Result<Start, StoreError> {
    let warm = inner.warm.take(&instance.id);
    match journal {
        Journal::Events(events) => Ok(Start::Replay(events)),
        Journal::Cached => match warm {
            Some(w) if w.execution == instance.execution => Ok(Start::Warm(w.run)),
            // Dropped from the cache since the fetch: read and replay.
            _ => inner
                .store
                .journal(&instance.id, Some(instance.execution))
                .await
                .map(Start::Replay),
        },
    }
}

/// Runs one turn.
pub(crate) async fn run_turn(inner: &Inner, work: TurnWork) -> TurnDecision {
    let TurnWork {
        instance,
        journal,
        messages,
        token,
    } = work;
    let start = match journal {
        Ok(j) => start_of(inner, &instance, j).await,
        Err(e) => Err(e),
    };
    let start = match start {
        Ok(start) => start,
        Err(e) => return unreadable_journal(inner, instance, messages, token, e),
    };
    let now = inner.clock.now();
    let consumed = messages.iter().map(|m| m.id).collect();
    let begins = matches!(&start, Start::Replay(journal) if journal.is_empty());
    let deliveries = deliveries(&instance, begins, messages);
    let mut commit = TurnCommit {
        instance_id: instance.id.clone(),
        token,
        execution: instance.execution,
        journal_base: 0,
        new_events: Vec::new(),
        consumed,
        messages: Vec::new(),
        new_instances: Vec::new(),
        tasks: Vec::new(),
        status: InstanceStatus::Running,
        output: None,
        failure: None,
        continue_as_new: None,
        claim_tasks: None,
        now,
    };

    let mut run = match start {
        Start::Warm(run) => run,
        Start::Replay(journal) => {
            commit.journal_base = journal.len();
            let Some(workflow) = inner.registry.workflow(&instance.name) else {
                let outcome =
                    unknown_workflow_turn(inner, &instance, &journal, deliveries, &mut commit);
                let finished = apply_outcome(
                    &instance,
                    outcome,
                    None,
                    Vec::new(),
                    std::iter::empty(),
                    &mut commit,
                );
                return TurnDecision::Commit {
                    commit: Box::new(commit),
                    finished,
                    run: None,
                };
            };
            WorkflowRun::live(
                instance.id.clone(),
                instance.execution,
                journal,
                workflow.clone(),
                inner.clock.clone(),
            )
        }
    };
    commit.journal_base = run.journal_len();
    run.replay().await;
    let mut deliveries = deliveries.into_iter();
    while run.outcome().is_none() {
        let Some(kind) = deliveries.next() else {
            break;
        };
        run.deliver(inner.clock.now(), kind).await;
    }
    commit.new_events = run.uncommitted_events();
    schedule_actions(inner, &instance, &mut commit).await;
    let finished = apply_outcome(
        &instance,
        run.outcome().cloned(),
        run.parent(),
        run.open_children(),
        deliveries,
        &mut commit,
    );
    commit.now = inner.clock.now();
    // Returned even when the execution has ended: dropping a long run (its journal, its maps)
    // takes time, which the caller spends after the commit rather than before it.
    TurnDecision::Commit {
        commit: Box::new(commit),
        finished,
        run: Some(run),
    }
}

/// A turn for an instance whose journal cannot be read. A corrupt journal cannot be replayed, so
/// the instance fails with an error naming the instance and the unreadable event (its journal
/// is kept as it is, for inspection); any other read error is retried later.
fn unreadable_journal(
    inner: &Inner,
    instance: InstanceInfo,
    messages: Vec<duraflow_store::Message>,
    token: duraflow_store::LeaseToken,
    error: StoreError,
) -> TurnDecision {
    let StoreError::CorruptJournal { journal_len, .. } = &error else {
        return TurnDecision::Abandon {
            reason: format!(
                "cannot read the journal of instance {:?}: {error}",
                instance.id
            ),
        };
    };
    let now = inner.clock.now();
    let failure = Failure::new(
        FailureKind::Internal,
        format!("the journal cannot be replayed: {error}"),
    );
    let mut commit = TurnCommit {
        instance_id: instance.id.clone(),
        token,
        execution: instance.execution,
        journal_base: *journal_len,
        new_events: Vec::new(),
        consumed: messages.iter().map(|m| m.id).collect(),
        messages: Vec::new(),
        new_instances: Vec::new(),
        tasks: Vec::new(),
        status: InstanceStatus::Running,
        output: None,
        failure: None,
        continue_as_new: None,
        claim_tasks: None,
        now,
    };
    let finished = apply_outcome(
        &instance,
        Some(Outcome::Failed(failure)),
        None,
        Vec::new(),
        std::iter::empty(),
        &mut commit,
    );
    TurnDecision::Commit {
        commit: Box::new(commit),
        finished,
        run: None,
    }
}

/// A turn for an instance whose workflow this engine does not have: cancel and terminate still
/// work; anything else fails the instance with a clear error.
fn unknown_workflow_turn(
    inner: &Inner,
    instance: &InstanceInfo,
    journal: &[Event],
    deliveries: Vec<EventKind>,
    commit: &mut TurnCommit,
) -> Option<Outcome> {
    let now = inner.clock.now();
    for kind in &deliveries {
        let outcome = match kind {
            EventKind::CancelRequested { reason } => Outcome::Cancelled(reason.clone()),
            EventKind::TerminateRequested { reason } => Outcome::Terminated(reason.clone()),
            _ => continue,
        };
        commit.new_events.push(Event {
            at: now,
            kind: kind.clone(),
        });
        return Some(outcome);
    }
    if deliveries.is_empty() {
        return None;
    }
    if journal.is_empty() {
        if let Some(start) = deliveries
            .iter()
            .find(|k| matches!(k, EventKind::WorkflowStarted { .. }))
        {
            commit.new_events.push(Event {
                at: now,
                kind: start.clone(),
            });
        }
    }
    let failure = Failure::new(
        FailureKind::UnknownWorkflow,
        format!(
            "no workflow named {:?} is registered with the engine that ran this instance \
             (registered: {}); register it and start the instance again",
            instance.name,
            inner.registry.workflow_names().join(", ")
        ),
    );
    commit.new_events.push(Event {
        at: now,
        kind: EventKind::WorkflowFailed {
            failure: failure.clone(),
        },
    });
    Some(Outcome::Failed(failure))
}

/// The message that starts the execution after one that continued as new, carrying what the
/// instance was sent and the ending execution did not take: the external events it never
/// waited for (oldest first), then the messages this turn consumed but did not deliver because
/// the execution ended before reaching them. External events, cancellation and termination are
/// meant for the instance, not for one execution, so they carry over; results addressed to the
/// ending execution are stale and dropped.
fn next_execution_start(
    instance: &InstanceInfo,
    carried_events: Vec<(String, Payload)>,
    undelivered: impl Iterator<Item = EventKind>,
    now: Timestamp,
) -> NewMessage {
    let mut carried: Vec<MessageKind> = carried_events
        .into_iter()
        .map(|(name, data)| MessageKind::Event { name, data })
        .collect();
    carried.extend(undelivered.filter_map(|kind| match kind {
        EventKind::EventRaised { name, data } => Some(MessageKind::Event { name, data }),
        EventKind::CancelRequested { reason } => Some(MessageKind::Cancel { reason }),
        EventKind::TerminateRequested { reason } => Some(MessageKind::Terminate { reason }),
        _ => None,
    }));
    NewMessage {
        instance_id: instance.id.clone(),
        kind: MessageKind::Start {
            execution: instance.execution + 1,
            carried,
        },
        visible_at: now,
    }
}

/// Turns the operations the workflow issued into tasks, timer messages and child instances.
async fn schedule_actions(inner: &Inner, instance: &InstanceInfo, commit: &mut TurnCommit) {
    for ev in &commit.new_events {
        match &ev.kind {
            EventKind::ActivityScheduled {
                op,
                name,
                input,
                options,
            } => commit.tasks.push(NewTask {
                instance_id: instance.id.clone(),
                execution: instance.execution,
                op: op.clone(),
                name: name.clone(),
                input: input.clone(),
                options: options.clone(),
                scheduled_at: ev.at,
            }),
            EventKind::TimerCreated { op, fire_at } => commit.messages.push(NewMessage {
                instance_id: instance.id.clone(),
                kind: MessageKind::TimerFired {
                    execution: instance.execution,
                    op: op.clone(),
                },
                visible_at: *fire_at,
            }),
            EventKind::ChildStarted {
                op,
                name,
                instance_id,
                input,
                detached,
            } => {
                let parent = (!detached).then(|| ParentLink {
                    instance_id: instance.id.clone(),
                    execution: instance.execution,
                    op: op.clone(),
                });
                // An id already used by another instance cannot be this child: report it to
                // the parent instead of waiting for a result that will never come.
                if let Ok(Some(existing)) = inner.store.instance(instance_id).await {
                    if existing.parent != parent {
                        if let Some(link) = parent {
                            commit.messages.push(NewMessage {
                                instance_id: instance.id.clone(),
                                kind: MessageKind::ChildResult {
                                    execution: link.execution,
                                    op: link.op,
                                    result: OpResult::Err(
                                        Failure::new(
                                            FailureKind::Application,
                                            format!(
                                                "cannot start child workflow {name:?}: instance \
                                                 id {instance_id:?} is already in use"
                                            ),
                                        )
                                        .at(format!("child workflow {name:?}"), op),
                                    ),
                                },
                                visible_at: ev.at,
                            });
                        }
                        continue;
                    }
                }
                commit.new_instances.push(NewInstance {
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

/// Records how the execution ended: status, output or failure, the result for a parent,
/// cancellation of open children, and the next execution for continue-as-new (carrying the
/// `undelivered` rest of the turn's deliveries). Returns whether the instance finished.
fn apply_outcome(
    instance: &InstanceInfo,
    outcome: Option<Outcome>,
    parent: Option<ParentLink>,
    open_children: Vec<String>,
    undelivered: impl Iterator<Item = EventKind>,
    commit: &mut TurnCommit,
) -> bool {
    let now = commit.now;
    let Some(outcome) = outcome else {
        commit.status = InstanceStatus::Running;
        return false;
    };
    let parent = parent.or_else(|| instance.parent.clone());
    let (status, result, child_message) = match outcome {
        Outcome::Completed(output) => {
            commit.output = Some(output.clone());
            (
                InstanceStatus::Completed,
                OpResult::Ok(output),
                cancel_message("the parent workflow completed"),
            )
        }
        Outcome::Failed(failure) => {
            commit.failure = Some(failure.clone());
            (
                InstanceStatus::Failed,
                OpResult::Err(failure),
                cancel_message("the parent workflow failed"),
            )
        }
        Outcome::Cancelled(reason) => {
            let failure = Failure::new(FailureKind::Cancelled, reason.clone());
            commit.failure = Some(failure.clone());
            (
                InstanceStatus::Cancelled,
                OpResult::Err(failure),
                cancel_message(&cascaded(CANCELLED_PARENT, &reason)),
            )
        }
        Outcome::Terminated(reason) => {
            let failure = Failure::new(FailureKind::Terminated, reason.clone());
            commit.failure = Some(failure.clone());
            (
                InstanceStatus::Terminated,
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
            commit.status = InstanceStatus::Running;
            commit.continue_as_new = Some(input);
            commit.messages.push(next_execution_start(
                instance,
                carried_events,
                undelivered,
                now,
            ));
            return false;
        }
    };
    commit.status = status;
    if let Some(link) = parent {
        commit.messages.push(NewMessage {
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
        commit.messages.push(NewMessage {
            instance_id: child,
            kind: child_message.clone(),
            visible_at: now,
        });
    }
    true
}

const CANCELLED_PARENT: &str = "the parent workflow was cancelled: ";
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
