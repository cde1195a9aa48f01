//! One workflow turn: replay the journal, apply the new messages, and turn what the workflow
//! did into a [`TurnCommit`].

use duraflow_core::{Event, EventKind, Failure, FailureKind, Outcome, ParentLink, WorkflowRun};
use duraflow_store::{
    InstanceInfo, InstanceStatus, Journal, MessageKind, NewInstance, NewMessage, NewTask, OpResult,
    StoreError, TurnCommit, TurnWork,
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

/// The delivered event a message becomes, or `None` for a message that is stale (addressed to
/// an earlier execution).
fn message_event(instance: &InstanceInfo, kind: MessageKind) -> Option<EventKind> {
    let current = instance.execution;
    Some(match kind {
        MessageKind::Start { execution } if execution == current => EventKind::WorkflowStarted {
            name: instance.name.clone(),
            input: instance.input.clone(),
            parent: instance.parent.clone(),
        },
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
    let deliveries: Vec<EventKind> = messages
        .into_iter()
        .filter_map(|m| message_event(&instance, m.kind))
        .collect();
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
                let finished = apply_outcome(&instance, outcome, None, Vec::new(), &mut commit);
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
        &mut commit,
    );
    if commit.continue_as_new.is_some() {
        forward_to_next_execution(&instance, deliveries, &mut commit);
    }
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

/// Messages this turn consumed but did not deliver because the execution continued as new
/// before reaching them: external events, cancellation and termination are meant for the
/// instance, not for one execution, so they are sent again for the next execution (after the
/// events the execution carried over, keeping their order). Results addressed to the execution
/// that ended are stale and dropped.
fn forward_to_next_execution(
    instance: &InstanceInfo,
    undelivered: impl Iterator<Item = EventKind>,
    commit: &mut TurnCommit,
) {
    for kind in undelivered {
        let kind = match kind {
            EventKind::EventRaised { name, data } => MessageKind::Event { name, data },
            EventKind::CancelRequested { reason } => MessageKind::Cancel { reason },
            EventKind::TerminateRequested { reason } => MessageKind::Terminate { reason },
            _ => continue,
        };
        commit.messages.push(NewMessage {
            instance_id: instance.id.clone(),
            kind,
            visible_at: commit.now,
        });
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
/// cancellation of open children, and the next execution for continue-as-new. Returns whether
/// the instance finished.
fn apply_outcome(
    instance: &InstanceInfo,
    outcome: Option<Outcome>,
    parent: Option<ParentLink>,
    open_children: Vec<String>,
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
                cancel_message(&format!("the parent workflow was cancelled: {reason}")),
            )
        }
        Outcome::Terminated(reason) => {
            let failure = Failure::new(FailureKind::Terminated, reason.clone());
            commit.failure = Some(failure.clone());
            (
                InstanceStatus::Terminated,
                OpResult::Err(failure),
                MessageKind::Terminate {
                    reason: format!("the parent workflow was terminated: {reason}"),
                },
            )
        }
        Outcome::ContinuedAsNew {
            input,
            carried_events,
        } => {
            commit.status = InstanceStatus::Running;
            commit.continue_as_new = Some(input);
            commit.messages.push(NewMessage {
                instance_id: instance.id.clone(),
                kind: MessageKind::Start {
                    execution: instance.execution + 1,
                },
                visible_at: now,
            });
            for (name, data) in carried_events {
                commit.messages.push(NewMessage {
                    instance_id: instance.id.clone(),
                    kind: MessageKind::Event { name, data },
                    visible_at: now,
                });
            }
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

fn cancel_message(reason: &str) -> MessageKind {
    MessageKind::Cancel {
        reason: reason.to_owned(),
    }
}
