//! The workflow dispatcher: leases instances with pending messages, runs their turns
//! concurrently, and commits them through the group committer.
//!
//! A turn also arrives without a fetch, claimed by an activity completion (see
//! `attempt::complete`); it runs the same way. A commit claims the activity tasks it creates
//! for this engine's workers when they have room, so they start without a fetch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use duraflow_core::{FailureKind, Timestamp};
use duraflow_store::{
    Committed, DirectTurn, FetchFilter, InstanceStatus, Journal, JournalCache, Message, MessageId,
    MessageKind, OpResult, StoreError, TaskClaim, TaskWork, TurnCommit, TurnWork,
};
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, debug_span, warn, Instrument};

use crate::active::ActiveActivities;
use crate::attempt::Attempts;
use crate::batcher::Batcher;
use crate::claimed::ClaimedTurns;
use crate::lease_loop::LeaseLoop;
use crate::metrics::TurnOutcome;
use crate::registry::Workflows;
use crate::shared::Shared;
use crate::turn::{run_turn, Direct, TurnDecision, TurnDeps};
use crate::warm::{WarmCache, WarmRun};

/// What the dispatcher and the turns it runs may touch: the workflows, the turn permits, the
/// warm cache, the commit writer, the running activities (to cancel a finished instance's),
/// and the attempts (to start the tasks a commit claims). Held by the dispatcher loop and by
/// every turn; the commit writer ends when the last of them is gone.
pub(crate) struct Dispatcher {
    pub(crate) shared: Shared,
    pub(crate) workflows: Workflows,
    /// One per turn that may run at once (`workflow_concurrency`), fetched or claimed.
    pub(crate) permits: Arc<Semaphore>,
    /// Workflows kept in memory between their turns.
    pub(crate) warm: Arc<WarmCache>,
    /// [`Dispatcher::warm`], as the store sees it.
    pub(crate) journal_cache: Arc<dyn JournalCache>,
    /// Turn commits, group-committed.
    pub(crate) committer: Batcher<TurnCommit, Committed>,
    pub(crate) active: ActiveActivities,
    pub(crate) attempts: Arc<Attempts>,
}

impl ClaimedTurns for Dispatcher {
    fn room_for_a_turn(&self) -> Option<OwnedSemaphorePermit> {
        if self.shared.stop.is_cancelled() {
            return None;
        }
        self.permits.clone().try_acquire_owned().ok()
    }

    fn turn_lease(&self) -> Duration {
        self.shared.options.turn_lease
    }

    fn serves(&self, queue: &str, workflow: &str) -> bool {
        self.shared.turn_filter.matches(queue, workflow)
    }

    fn turn_filter(&self) -> &FetchFilter {
        &self.shared.turn_filter
    }

    fn journal_cache(&self) -> &Arc<dyn JournalCache> {
        &self.journal_cache
    }

    fn spawn_turn(self: Arc<Self>, work: TurnWork, permit: OwnedSemaphorePermit) {
        let tracker = self.shared.tracker.clone();
        tracker.spawn(async move {
            // Boxed, as in `run_dispatcher`.
            Box::pin(process_turn(&self, work, None)).await;
            drop(permit);
        });
    }

    fn direct_turn(
        self: Arc<Self>,
        task: &TaskWork,
        result: OpResult,
        permit: OwnedSemaphorePermit,
    ) -> BoxFuture<'static, Result<(), (OpResult, OwnedSemaphorePermit)>> {
        let warm = self
            .warm
            .take_waiting_only_for(&task.instance_id, task.execution, &task.op);
        let Some(warm) = warm else {
            return Box::pin(std::future::ready(Err((result, permit))));
        };
        let direct = Direct {
            task: DirectTurn {
                task: task.id,
                task_token: task.token,
            },
            run: warm.run,
        };
        let message = Message {
            id: MessageId(0),
            instance_id: task.instance_id.clone(),
            kind: MessageKind::ActivityResult {
                execution: task.execution,
                op: task.op.clone(),
                result: result.clone(),
            },
            visible_at: self.shared.clock.now(),
        };
        let work = TurnWork {
            instance: *warm.instance,
            journal: Ok(Journal::Cached),
            messages: vec![message],
            token: warm.token,
        };
        Box::pin(async move {
            // Boxed, as in `run_dispatcher`.
            let unreported = Box::pin(process_turn(&self, work, Some(direct))).await;
            if unreported {
                return Err((result, permit));
            }
            self.shared.metrics.recorder().direct_turn();
            Ok(())
        })
    }
}

/// Drops `value` (a replayed history, a run that ended), off the async threads when it is
/// big: freeing a long journal takes a while, and the waiter a commit just woke is queued to
/// run next on this thread.
fn drop_aside<T: Weight + Send + 'static>(value: T) {
    if value.weight() > 1_024 {
        tokio::task::spawn_blocking(move || drop(value));
    }
}

/// How much there is to free, in journal events and operations.
trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for Vec<duraflow_core::Event> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weight for Option<duraflow_core::WorkflowRun> {
    fn weight(&self) -> usize {
        self.as_ref()
            .map_or(0, |run| run.held_events() + run.held_operations())
    }
}

/// Runs until the engine stops.
pub(crate) async fn run_dispatcher(dispatcher: Arc<Dispatcher>) {
    let d = &*dispatcher;
    let running = dispatcher.clone();
    LeaseLoop {
        what: "workflow turns",
        permits: d.permits.clone(),
        wakeup: |n| &n.turns,
        due: |d| d.turn,
        fetch: |now, max| {
            d.shared.store.fetch_turns(
                &d.shared.turn_filter,
                now,
                max,
                d.shared.options.turn_lease,
                Some(&d.journal_cache),
            )
        },
        run: move |work, permit| {
            let dispatcher = running.clone();
            async move {
                // Boxed: the turn's state is large (a replay, a commit), and a spawned future
                // is copied whole several times on its way into the scheduler; a box is copied
                // once.
                Box::pin(process_turn(&dispatcher, work, None)).await;
                drop(permit);
            }
        },
    }
    .run(&d.shared)
    .await
}

/// A turn whose lease expired, so that another turn may hold it, or whose journal the store
/// found moved on under it: the turn is void. Giving the lease back (refused harmlessly when it
/// is no longer ours) lets the instance's messages be fetched at once rather than when the
/// lease expires.
async fn lease_lost(d: &Dispatcher, id: &str, token: duraflow_store::LeaseToken) {
    debug!(instance_id = %id, "turn discarded: its lease was lost");
    d.shared
        .metrics
        .recorder()
        .turn(TurnOutcome::LeaseLost, None);
    let now = d.shared.clock.now();
    if let Err(e) = d.shared.store.abandon_turn(id, token, now).await {
        debug!(instance_id = %id, error = %e, "the lease was not ours any more");
    }
}

/// The due times of the timers whose firing a turn takes, for their lateness.
fn timers_due(messages: &[Message]) -> Vec<Timestamp> {
    messages
        .iter()
        .filter(|m| matches!(m.kind, MessageKind::TimerFired { .. }))
        .map(|m| m.visible_at)
        .collect()
}

/// What a committed turn did that the metrics count: the timers it fired, and whether it
/// failed its instance for nondeterminism.
fn record_committed(d: &Dispatcher, began: Instant, timers: &[Timestamp], nondeterminism: bool) {
    let recorder = d.shared.metrics.recorder();
    recorder.turn(TurnOutcome::Committed, Some(began.elapsed()));
    if !timers.is_empty() {
        let now = d.shared.clock.now();
        for due in timers {
            recorder.timer_fired(now.since(*due));
        }
    }
    if nondeterminism {
        recorder.nondeterminism();
    }
}

/// Runs one turn in its span (`turn`, with the instance id, the execution, the queue and the
/// workflow's name): a leased one, or a direct one (see `turn::Direct`). Returns whether a direct
/// turn left its task unreported (none of its commits was stored), so that the caller reports
/// the result as usual.
async fn process_turn(d: &Dispatcher, work: TurnWork, direct: Option<Direct>) -> bool {
    let span = debug_span!(
        "turn",
        instance_id = %work.instance.id,
        execution = work.instance.execution,
        queue = %work.instance.queue,
        workflow = %work.instance.name,
    );
    process_turn_in_span(d, work, direct).instrument(span).await
}

/// Runs one turn and commits it; keeps the workflow warm if it goes on, and starts the
/// activity tasks the commit claimed. Returns what [`process_turn`] does.
async fn process_turn_in_span(d: &Dispatcher, work: TurnWork, direct: Option<Direct>) -> bool {
    let began = Instant::now();
    let timers = timers_due(&work.messages);
    let id = work.instance.id.clone();
    let execution = work.instance.execution;
    let token = work.token;
    let deps = TurnDeps {
        shared: &d.shared,
        workflows: &d.workflows,
        warm: &d.warm,
        committer: &d.committer,
    };
    let (decision, unreported) = run_turn(deps, work, direct).await;
    let (reason, retry) = match decision {
        TurnDecision::Commit {
            mut commit,
            finished,
            run,
            instance,
        } => {
            // Room in this engine's worker pool: take the new tasks along instead of leaving
            // them to be fetched. Not while stopping, so that shutdown drains.
            // Only the leading tasks this engine serves (queue and activity): a claim takes the
            // first ones in order, and a task of another queue or activity is left to a fetch.
            let served = commit
                .tasks
                .iter()
                .take_while(|t| {
                    d.shared
                        .task_filter
                        .matches(t.options.queue_name(), &t.name)
                })
                .count();
            let permits: Vec<OwnedSemaphorePermit> = if finished {
                Vec::new()
            } else {
                d.attempts.room_for_attempts(served)
            };
            if !permits.is_empty() {
                commit.claim_tasks = Some(TaskClaim {
                    max: permits.len(),
                    lease: d.shared.options.task_lease,
                });
            }
            // The run goes warm before the commit is sent, under this turn's token. Put after
            // the commit instead, it could land after the instance's next turn had started
            // (one claimed by a result that came back while this task was not yet polled
            // again) and replace that turn's newer run with this older one. The store only
            // leaves a journal unread when its last commit has the token of the cached run, so
            // an entry whose commit fails is never used, and it is dropped below.
            let (warm, ended) = match run {
                Some(mut run) if run.outcome().is_none() => {
                    let history = run.mark_committed();
                    let warm = WarmRun {
                        run,
                        execution,
                        token,
                        instance,
                    };
                    d.warm.put(id.clone(), warm);
                    (Some(history), None)
                }
                // An ended execution.
                ended => (None, ended),
            };
            let cancelled = commit.cancelled_tasks.clone();
            let carries_task = commit.direct.is_some();
            let nondeterminism = commit.status == InstanceStatus::Failed
                && commit
                    .failure
                    .as_ref()
                    .is_some_and(|f| f.kind == FailureKind::Nondeterminism);
            let result = d.committer.submit(*commit).await;
            if result.is_err() && warm.is_some() {
                drop_aside(d.warm.discard(&id, token));
            }
            if let Some(history) = warm {
                drop_aside(history);
            }
            drop_aside(ended);
            match result {
                Ok(committed) => {
                    record_committed(d, began, &timers, nondeterminism);
                    if finished {
                        d.active.cancel_instance(&id);
                    } else {
                        d.active.cancel_ops(&id, &cancelled);
                    }
                    for (task, permit) in committed.tasks.into_iter().zip(permits) {
                        d.attempts.spawn_attempt(task, permit);
                    }
                    return false;
                }
                // A direct turn that stored nothing: its result goes the usual way. (A direct
                // turn whose commit does not carry its task and stored none before holds no
                // lease either; its commit cannot be taken, and the same holds.)
                Err(e) if carries_task || unreported => {
                    debug!(instance_id = %id, error = %e, "direct turn refused");
                    return true;
                }
                Err(StoreError::LeaseLost { .. }) => {
                    lease_lost(d, &id, token).await;
                    return false;
                }
                Err(e) => (
                    format!("committing the turn failed: {e}"),
                    d.shared.options.store_retry_initial,
                ),
            }
        }
        // A direct turn that stored nothing holds no lease to give back.
        TurnDecision::Abandon { .. } | TurnDecision::Lost if unreported => return true,
        TurnDecision::Abandon { reason, retry } => (reason, retry),
        TurnDecision::Lost => {
            lease_lost(d, &id, token).await;
            return false;
        }
    };
    warn!(instance_id = %id, "{reason}; the turn will be retried");
    d.shared
        .metrics
        .recorder()
        .turn(TurnOutcome::Abandoned, None);
    let retry_at = d.shared.clock.now().plus(retry);
    if let Err(e) = d.shared.store.abandon_turn(&id, token, retry_at).await {
        debug!(instance_id = %id, error = %e, "could not abandon the turn; its lease will expire");
    }
    false
}
