//! One workflow turn: replay the journal, apply the new messages, and turn what the workflow
//! did into a [`TurnCommit`]. What to deliver and what to write is planned in
//! `duraflow_core::plan`; this module does the I/O around it (the journal, the store lookups
//! of child ids) and fills in the commit.

use duraflow_core::plan::{
    deliveries, started_children, unknown_workflow, ExistingInstance, TurnInstance,
};
use duraflow_core::{
    Event, Failure, FailureKind, Outcome, Timestamp, TurnEnd, TurnPlan, WorkflowRun,
};
use duraflow_store::{
    InstanceInfo, InstanceStatus, Journal, LeaseToken, Message, MessageId, StoreError, TurnCommit,
    TurnWork,
};

use crate::registry::Workflows;
use crate::shared::Shared;
use crate::warm::WarmCache;

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

/// Where a turn's workflow comes from: kept warm in memory, or to be replayed from its journal.
enum Start {
    Warm(WorkflowRun),
    Replay(Vec<Event>),
}

/// The workflow a turn continues: the warm run when the store left the journal unread (and
/// this engine still holds it), else the journal to replay, read now if the store did not.
async fn start_of(
    shared: &Shared,
    warm: &WarmCache,
    instance: &InstanceInfo,
    journal: Journal,
) -> Result<Start, StoreError> {
    let warm = warm.take(&instance.id);
    match journal {
        Journal::Events(events) => Ok(Start::Replay(events)),
        Journal::Cached => match warm {
            Some(w) if w.execution == instance.execution => Ok(Start::Warm(w.run)),
            // Dropped from the cache since the fetch: read and replay.
            _ => shared
                .store
                .journal(&instance.id, Some(instance.execution))
                .await
                .map(Start::Replay),
        },
    }
}

/// The instance as the planner sees it.
fn planned(instance: &InstanceInfo) -> TurnInstance<'_> {
    TurnInstance {
        id: &instance.id,
        execution: instance.execution,
        name: &instance.name,
        input: &instance.input,
        parent: instance.parent.as_ref(),
    }
}

/// An empty commit of a turn of `instance` leased with `token`, at `now`.
fn empty_commit(
    instance: &InstanceInfo,
    token: LeaseToken,
    consumed: Vec<MessageId>,
    now: Timestamp,
) -> TurnCommit {
    TurnCommit {
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
        keep_lease: None,
        callbacks: Vec::new(),
        closed_callbacks: Vec::new(),
        now,
    }
}

/// Moves `plan` into `commit`. Returns whether the instance finished.
fn fill_commit(commit: &mut TurnCommit, plan: TurnPlan) -> bool {
    let TurnPlan {
        tasks,
        messages,
        instances,
        end,
    } = plan;
    commit.tasks = tasks;
    commit.messages = messages;
    commit.new_instances = instances;
    let finished = end.is_finished();
    commit.status = match end {
        TurnEnd::Running => InstanceStatus::Running,
        TurnEnd::ContinuedAsNew(input) => {
            commit.continue_as_new = Some(input);
            InstanceStatus::Running
        }
        TurnEnd::Completed(output) => {
            commit.output = Some(output);
            InstanceStatus::Completed
        }
        TurnEnd::Failed(failure) => {
            commit.failure = Some(failure);
            InstanceStatus::Failed
        }
        TurnEnd::Cancelled(failure) => {
            commit.failure = Some(failure);
            InstanceStatus::Cancelled
        }
        TurnEnd::Terminated(failure) => {
            commit.failure = Some(failure);
            InstanceStatus::Terminated
        }
    };
    finished
}

/// The instances that already exist under the ids of the children `new_events` start (a read
/// per child; a failed read counts as no instance).
async fn existing_children(shared: &Shared, new_events: &[Event]) -> Vec<ExistingInstance> {
    let mut existing = Vec::new();
    for id in started_children(new_events) {
        if let Ok(Some(found)) = shared.store.instance(id).await {
            existing.push(ExistingInstance {
                id: found.id,
                parent: found.parent,
            });
        }
    }
    existing
}

/// Runs one turn: the workflows it may run, the warm runs it may take, the store it reads.
pub(crate) async fn run_turn(
    shared: &Shared,
    workflows: &Workflows,
    warm: &WarmCache,
    work: TurnWork,
) -> TurnDecision {
    let TurnWork {
        instance,
        journal,
        messages,
        token,
    } = work;
    let start = match journal {
        Ok(j) => start_of(shared, warm, &instance, j).await,
        Err(e) => Err(e),
    };
    let start = match start {
        Ok(start) => start,
        Err(e) => return unreadable_journal(shared, instance, messages, token, e),
    };
    let now = shared.clock.now();
    let consumed = messages.iter().map(|m| m.id).collect();
    let begins = matches!(&start, Start::Replay(journal) if journal.is_empty());
    let deliveries = deliveries(
        planned(&instance),
        begins,
        messages.into_iter().map(|m| m.kind),
    );
    let mut commit = empty_commit(&instance, token, consumed, now);
    let mut plan = TurnPlan::new();

    let mut run = match start {
        Start::Warm(run) => run,
        Start::Replay(journal) => {
            commit.journal_base = journal.len();
            let Some(workflow) = workflows.get(&instance.name) else {
                let outcome = unknown_workflow(
                    planned(&instance),
                    begins,
                    &deliveries,
                    &workflows.names(),
                    shared.clock.now(),
                    &mut commit.new_events,
                );
                plan.end(
                    planned(&instance),
                    outcome,
                    None,
                    Vec::new(),
                    std::iter::empty(),
                    now,
                );
                let finished = fill_commit(&mut commit, plan);
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
                shared.clock.clone(),
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
        run.deliver(shared.clock.now(), kind).await;
    }
    commit.new_events = run.uncommitted_events();
    let existing = existing_children(shared, &commit.new_events).await;
    plan.schedule(planned(&instance), &commit.new_events, &existing);
    plan.end(
        planned(&instance),
        run.outcome().cloned(),
        run.parent(),
        run.open_children(),
        deliveries,
        now,
    );
    let finished = fill_commit(&mut commit, plan);
    commit.now = shared.clock.now();
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
    shared: &Shared,
    instance: InstanceInfo,
    messages: Vec<Message>,
    token: LeaseToken,
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
    let now = shared.clock.now();
    let failure = Failure::new(
        FailureKind::Internal,
        format!("the journal cannot be replayed: {error}"),
    );
    let consumed = messages.iter().map(|m| m.id).collect();
    let mut commit = empty_commit(&instance, token, consumed, now);
    commit.journal_base = *journal_len;
    let mut plan = TurnPlan::new();
    plan.end(
        planned(&instance),
        Some(Outcome::Failed(failure)),
        None,
        Vec::new(),
        std::iter::empty(),
        now,
    );
    let finished = fill_commit(&mut commit, plan);
    TurnDecision::Commit {
        commit: Box::new(commit),
        finished,
        run: None,
    }
}
