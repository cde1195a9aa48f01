//! One workflow turn: replay the journal, apply the new messages, and turn what the workflow
//! did into a [`TurnCommit`]. What to deliver and what to write is planned in
//! `duraflow_core::plan`; this module does the I/O around it (the journal, the store lookups
//! of child ids, the checkpoints steps ask for, the lease) and fills in the commit.

mod checkpoint;
mod commit;
mod lease;
mod retry;

use duraflow_core::plan::{
    deliveries, pending_too_long, started_children, unknown_workflow, ExistingInstance,
    TurnInstance,
};
use duraflow_core::{Event, Failure, FailureKind, Outcome, TurnPlan, WorkflowRun};
use duraflow_store::{
    Committed, DirectTurn, InstanceInfo, Journal, LeaseToken, Message, MessageKind, StoreError,
    TurnCommit, TurnWork,
};

use crate::batcher::Batcher;
use crate::registry::Workflows;
use crate::shared::Shared;
use crate::warm::WarmCache;
use checkpoint::Checkpoints;
use commit::{empty_commit, fill_commit};

/// What to do with a fetched turn.
pub(crate) enum TurnDecision {
    /// Commit it; `finished` says whether the instance ends with it. `run` is the workflow it
    /// ran: once the commit succeeds it is kept warm if its execution goes on, and dropped
    /// otherwise.
    Commit {
        commit: Box<TurnCommit>,
        finished: bool,
        run: Option<WorkflowRun>,
        /// The instance the turn ran, for the run to be kept warm with.
        instance: Box<InstanceInfo>,
    },
    /// Give the lease back and try again after `retry`.
    Abandon {
        reason: String,
        retry: std::time::Duration,
    },
    /// The turn's lease was lost (a checkpoint found another turn holding it): the turn is
    /// void and there is nothing to give back.
    Lost,
}

/// Where a turn's workflow comes from: kept warm in memory, or to be replayed from its journal.
enum Start {
    Warm(WorkflowRun),
    Replay(Vec<Event>),
}

/// A turn run directly on an activity result this engine holds (see
/// `duraflow_store::TurnCommit::direct`), without a lease: the warm run it continues, and the
/// task whose result it delivers.
pub(crate) struct Direct {
    pub(crate) task: DirectTurn,
    pub(crate) run: WorkflowRun,
}

/// The workflow a turn continues: the warm run when the store left the journal unread (and
/// this engine still holds it), else the journal to replay, read now if the store did not.
async fn start_of(
    shared: &Shared,
    warm: &WarmCache,
    instance: &InstanceInfo,
    journal: Journal,
    direct: Option<WorkflowRun>,
) -> Result<Start, StoreError> {
    if let Some(run) = direct {
        shared.metrics.recorder().warm(true);
        return Ok(Start::Warm(run));
    }
    let warm = warm.take(&instance.id);
    let recorder = shared.metrics.recorder();
    match journal {
        Journal::Events(events) => {
            // The first turn of an execution has nothing to replay: neither a hit nor a miss.
            if !events.is_empty() {
                recorder.warm(false);
            }
            Ok(Start::Replay(events))
        }
        Journal::Cached => match warm {
            Some(w) if w.execution == instance.execution => {
                recorder.warm(true);
                Ok(Start::Warm(w.run))
            }
            // Dropped from the cache since the fetch: read and replay.
            _ => {
                recorder.warm(false);
                read_journal(shared, instance).await
            }
        },
        // Long: the store left it to be read now.
        Journal::Unread => {
            recorder.warm(false);
            read_journal(shared, instance).await
        }
    }
}

/// Reads the journal of the instance's current execution, to replay it.
async fn read_journal(shared: &Shared, instance: &InstanceInfo) -> Result<Start, StoreError> {
    shared
        .store
        .journal(&instance.id, Some(instance.execution))
        .await
        .map(Start::Replay)
}

/// The instance as the planner sees it.
fn planned(instance: &InstanceInfo) -> TurnInstance<'_> {
    TurnInstance {
        id: &instance.id,
        execution: instance.execution,
        name: &instance.name,
        input: &instance.input,
        parent: instance.parent.as_ref(),
        queue: &instance.queue,
        options: &instance.options,
    }
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

/// What a turn may touch: the engine's shared parts, the workflows it may run, the warm runs
/// it may take, and the commit writer its checkpoints go through.
pub(crate) struct TurnDeps<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) workflows: &'a Workflows,
    pub(crate) warm: &'a WarmCache,
    pub(crate) committer: &'a Batcher<TurnCommit, Committed>,
}

/// Runs one turn, renewing its lease while it runs. A direct turn (`direct`; `work` then holds
/// the one result it delivers) holds no lease until a checkpoint takes it. Returns what to do
/// with the turn, and whether a direct turn's task is still unreported: none of the turn's
/// commits was stored, nor is the decision's commit one that carries it, so the result must be
/// reported as usual.
pub(crate) async fn run_turn(
    deps: TurnDeps<'_>,
    work: TurnWork,
    direct: Option<Direct>,
) -> (TurnDecision, bool) {
    let renewer = lease::Renewer::new(deps.shared, &work.instance.id, work.token, direct.is_none());
    let mut checkpoints = Checkpoints::new(&work.messages, direct.as_ref().map(|d| d.task));
    let decision = renewer
        .during(run_leased_turn(
            deps,
            work,
            direct.map(|d| d.run),
            &renewer,
            &mut checkpoints,
        ))
        .await;
    (decision, checkpoints.direct_pending())
}

async fn run_leased_turn(
    deps: TurnDeps<'_>,
    work: TurnWork,
    direct: Option<WorkflowRun>,
    renewer: &lease::Renewer<'_>,
    checkpoints: &mut Checkpoints,
) -> TurnDecision {
    let shared = deps.shared;
    let TurnWork {
        instance,
        journal,
        messages,
        token,
    } = work;
    let start = match journal {
        Ok(j) => start_of(shared, deps.warm, &instance, j, direct).await,
        Err(e) => Err(e),
    };
    let start = match start {
        Ok(start) => start,
        Err(e) => return unreadable_journal(shared, instance, messages, token, e),
    };
    let now = shared.clock.now();
    let begins = matches!(&start, Start::Replay(journal) if journal.is_empty());
    let start_due = messages
        .iter()
        .find(|m| matches!(m.kind, MessageKind::Start { .. }))
        .map(|m| m.visible_at);
    let mut deliveries = deliveries(
        planned(&instance),
        begins,
        messages.into_iter().map(|m| m.kind),
    );
    if deliveries.start_missing {
        // Beginning the execution now would drop what its start carries over from the last
        // one; the start is sent before the instance is due, so it is visible to a later fetch.
        return TurnDecision::Abandon {
            reason: format!(
                "the turn begins execution {} without its start message, which the store's \
                 fetch did not return",
                instance.execution
            ),
            retry: shared.options.store_retry_initial,
        };
    }
    // The engine that starts an execution records the version it registered the workflow with.
    deliveries.set_version(deps.workflows.version(&instance.name));
    if let Some(reason) = start_due
        .filter(|_| begins)
        .and_then(|due| pending_too_long(planned(&instance), due, now))
    {
        deliveries.cancel_at_start(reason);
    }
    let mut commit = empty_commit(&instance, token, Vec::new(), now);
    let mut plan = TurnPlan::new();

    let mut run = match start {
        Start::Warm(run) => run,
        Start::Replay(journal) => {
            commit.journal_base = journal.len();
            let Some(workflow) = deps.workflows.get(&instance.name) else {
                commit.consumed = checkpoints.all_consumed();
                let outcome = unknown_workflow(
                    planned(&instance),
                    begins,
                    &deliveries.events,
                    &deps.workflows.names(),
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
                    instance: Box::new(instance),
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
    run.on_heartbeat(renewer.heartbeat());
    run.replay().await;
    let start_len = deliveries.start_len;
    let mut events = std::mem::take(&mut deliveries.events).into_iter();
    let mut applied = 0;
    if start_len > 0 {
        run.begin(
            shared.clock.now(),
            events.by_ref().take(start_len).collect(),
        )
        .await;
        applied = start_len;
    }
    loop {
        if let Err(decision) = checkpoints
            .take(
                &deps,
                &instance,
                token,
                renewer,
                &mut run,
                &deliveries,
                applied,
            )
            .await
        {
            return decision;
        }
        if run.outcome().is_some() {
            break;
        }
        let Some(kind) = events.next() else {
            break;
        };
        run.deliver(shared.clock.now(), kind).await;
        applied += 1;
    }
    commit.consumed = checkpoints.all_consumed();
    commit.new_events = run.uncommitted_events();
    commit.journal_base = run.journal_len() - commit.new_events.len();
    let existing = existing_children(shared, &commit.new_events).await;
    plan.schedule(planned(&instance), &commit.new_events, &existing);
    match retry::planned_retry(shared, &instance, run.outcome(), &commit, now).await {
        Ok(Some((retry, record))) => plan.retry(
            planned(&instance),
            retry,
            record,
            run.open_children(),
            events,
            now,
        ),
        Ok(None) => plan.end(
            planned(&instance),
            run.outcome().cloned(),
            run.parent(),
            run.open_children(),
            events,
            now,
        ),
        Err(decision) => return decision,
    }
    let finished = fill_commit(&mut commit, plan);
    commit.cancelled_tasks = run.take_dropped_activities();
    commit.cancelled_awaits = run.take_dropped_awaits();
    // Published live in this turn: appended with its commit, or lost with it when it is
    // refused (the run is then dropped, and the turn that redoes this one publishes again).
    commit.feed = run.take_feed();
    commit.now = shared.clock.now();
    commit.direct = checkpoints.take_direct();
    // Returned even when the execution has ended: dropping a long run (its journal, its maps)
    // takes time, which the caller spends after the commit rather than before it.
    TurnDecision::Commit {
        commit: Box::new(commit),
        finished,
        run: Some(run),
        instance: Box::new(instance),
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
            retry: std::time::Duration::from_secs(60),
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
        instance: Box::new(instance),
    }
}
