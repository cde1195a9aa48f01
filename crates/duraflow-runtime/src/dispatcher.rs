//! The workflow dispatcher: leases instances with pending messages, runs their turns
//! concurrently, and commits them through the group committer.
//!
//! A turn also arrives without a fetch, claimed by an activity completion (see
//! `attempt::complete`); it runs the same way. A commit claims the activity tasks it creates
//! for this engine's workers when they have room, so they start without a fetch.

use std::sync::Arc;

use duraflow_store::{StoreError, TaskClaim, TurnWork};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

use crate::engine::{Inner, Writers};
use crate::lease_loop::LeaseLoop;
use crate::turn::{run_turn, TurnDecision};
use crate::warm::WarmRun;
use crate::worker::spawn_attempt;

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
pub(crate) async fn run_dispatcher(inner: Arc<Inner>, writers: Arc<Writers>) {
    LeaseLoop {
        what: "workflow turns",
        permits: inner.turn_permits.clone(),
        wakeup: |n| &n.turns,
        due: |d| d.turn,
        fetch: |inner: Arc<Inner>, now, max| async move {
            inner
                .store
                .fetch_turns(
                    now,
                    max,
                    inner.options.turn_lease,
                    Some(&inner.journal_cache),
                )
                .await
        },
        run: move |inner: Arc<Inner>, work, permit| {
            let writers = writers.clone();
            async move {
                process_turn(&inner, &writers, work).await;
                drop(permit);
            }
        },
    }
    .run(inner.clone())
    .await
}

/// Runs a leased turn in a task of its own (tracked by the engine), holding `permit`.
pub(crate) fn spawn_turn(
    inner: &Arc<Inner>,
    writers: &Arc<Writers>,
    work: TurnWork,
    permit: OwnedSemaphorePermit,
) {
    let (inner, writers) = (inner.clone(), writers.clone());
    let tracker = inner.tracker.clone();
    tracker.spawn(async move {
        process_turn(&inner, &writers, work).await;
        drop(permit);
    });
}

/// Runs one leased turn and commits it; keeps the workflow warm if it goes on, and starts the
/// activity tasks the commit claimed.
async fn process_turn(inner: &Arc<Inner>, writers: &Arc<Writers>, work: TurnWork) {
    let id = work.instance.id.clone();
    let execution = work.instance.execution;
    let token = work.token;
    let (reason, retry) = match run_turn(inner, work).await {
        TurnDecision::Commit {
            mut commit,
            finished,
            run,
        } => {
            // Room in this engine's worker pool: take the new tasks along instead of leaving
            // them to be fetched. Not while stopping, so that shutdown drains.
            let permits: Vec<OwnedSemaphorePermit> = if finished || inner.stop.is_cancelled() {
                Vec::new()
            } else {
                std::iter::from_fn(|| inner.task_permits.clone().try_acquire_owned().ok())
                    .take(commit.tasks.len())
                    .collect()
            };
            if !permits.is_empty() {
                commit.claim_tasks = Some(TaskClaim {
                    max: permits.len(),
                    lease: inner.options.task_lease,
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
                    };
                    inner.warm.put(id.clone(), warm);
                    (Some(history), None)
                }
                // An ended execution.
                ended => (None, ended),
            };
            let result = writers.committer.submit(*commit).await;
            if result.is_err() && warm.is_some() {
                drop_aside(inner.warm.discard(&id, token));
            }
            if let Some(history) = warm {
                drop_aside(history);
            }
            drop_aside(ended);
            match result {
                Ok(committed) => {
                    if finished {
                        inner.active.cancel_instance(&id);
                    }
                    for (task, permit) in committed.tasks.into_iter().zip(permits) {
                        spawn_attempt(inner, writers, task, permit);
                    }
                    return;
                }
                // The lease expired and another turn may hold it, or the store found the
                // journal moved on under this turn: either way the turn is void. Giving the
                // lease back (refused harmlessly when it is no longer ours) lets the instance's
                // messages be fetched at once rather than when the lease expires.
                Err(StoreError::LeaseLost { .. }) => {
                    debug!(instance_id = %id, "turn discarded: its lease was lost");
                    let now = inner.clock.now();
                    if let Err(e) = inner.store.abandon_turn(&id, token, now).await {
                        debug!(instance_id = %id, error = %e, "the lease was not ours any more");
                    }
                    return;
                }
                Err(e) => (
                    format!("committing the turn failed: {e}"),
                    inner.options.store_retry_initial,
                ),
            }
        }
        TurnDecision::Abandon { reason } => (reason, std::time::Duration::from_secs(60)),
    };
    warn!(instance_id = %id, "{reason}; the turn will be retried");
    let retry_at = inner.clock.now().plus(retry);
    if let Err(e) = inner.store.abandon_turn(&id, token, retry_at).await {
        debug!(instance_id = %id, error = %e, "could not abandon the turn; its lease will expire");
    }
}
