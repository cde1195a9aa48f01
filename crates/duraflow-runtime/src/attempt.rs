//! One activity attempt: run it under its timeouts with the lease renewed, then report the
//! result, schedule a retry, or hand the task back. [`Attempts`] is what attempts may touch;
//! the worker loop (`worker.rs`) and the dispatcher (for the tasks its commits claim) start
//! attempts through it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Weak};
use std::time::Duration;

use duraflow_core::{ActivityError, Failure, FailureKind, Payload};
use duraflow_store::{Completed, OpResult, StoreError, TaskCompletion, TaskRelease, TaskWork};
use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, warn, Instrument};

use crate::active::ActiveActivities;
use crate::activity::{ActivityContext, AttemptError};
use crate::batcher::Batcher;
use crate::claimed::ClaimedTurns;
use crate::heartbeat::{self, Heartbeats};
use crate::outcome::{
    after_failure, after_timeout, attempt_deadlines, refuse_to_run, AttemptOutcome,
};
use crate::registry::Activities;
use crate::shared::Shared;
use crate::wait::Backoff;

/// What activity attempts may touch: the activities, the activity permits, the running
/// attempts, the completion writer, and (weakly, to run the turns their completions claim) the
/// dispatcher. Held by the worker loop and by every attempt it runs; the completion writer ends
/// when the last of them is gone.
pub(crate) struct Attempts {
    pub(crate) shared: Shared,
    pub(crate) activities: Activities,
    /// One per activity attempt that may run at once (`activity_concurrency`), shared with the
    /// tasks claimed by commits.
    pub(crate) permits: Arc<Semaphore>,
    /// Cancel the activities still running (shutdown after its grace period).
    pub(crate) hard_stop: CancellationToken,
    pub(crate) active: ActiveActivities,
    /// Attempts handed back at shutdown (the engine reports the count).
    pub(crate) handed_back: Arc<AtomicUsize>,
    /// Task completions, group-committed.
    pub(crate) completer: Batcher<TaskCompletion, Completed>,
    /// Where claimed turns run. Weak, because the dispatcher holds this handle: a strong link
    /// back would keep both (and their writers) alive forever.
    pub(crate) turns: Weak<dyn ClaimedTurns>,
}

impl Attempts {
    /// Up to `n` activity permits, as many as are free now (none while stopping, so that
    /// shutdown drains): the tasks a commit may claim.
    pub(crate) fn room_for_attempts(&self, n: usize) -> Vec<OwnedSemaphorePermit> {
        if self.shared.stop.is_cancelled() {
            return Vec::new();
        }
        std::iter::from_fn(|| self.permits.clone().try_acquire_owned().ok())
            .take(n)
            .collect()
    }

    /// Runs a leased attempt in a task of its own (tracked by the engine), holding `permit`.
    pub(crate) fn spawn_attempt(self: &Arc<Self>, task: TaskWork, permit: OwnedSemaphorePermit) {
        let attempts = self.clone();
        self.shared.tracker.spawn(async move {
            // Boxed, as a turn is (`run_dispatcher`).
            Box::pin(run_attempt(&attempts, task, permit)).await;
        });
    }
}

/// How an attempt ended, before it is reported.
enum Ended {
    Finished(Result<Payload, AttemptError>),
    /// The attempt ran out of time: its own timeout, or the schedule-to-close deadline when
    /// `closed`.
    TimedOut {
        after: Duration,
        closed: bool,
    },
    /// No heartbeat came within the activity's heartbeat timeout (`after`).
    HeartbeatTimedOut {
        after: Duration,
    },
    /// The lease was lost (or the task deleted because its instance finished).
    LeaseLost,
    /// The instance was cancelled or the engine is stopping.
    Cancelled,
}

/// How long a cancelled activity may take to notice and return before it is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Runs one leased attempt in its span (`activity`, with the instance id, the operation id,
/// the activity's name, the attempt and the queue), holding its activity `permit` until the
/// activity's code has ended: reporting the result (which may run the instance's next turn
/// at once) no longer counts as a running activity.
pub(crate) async fn run_attempt(attempts: &Attempts, task: TaskWork, permit: OwnedSemaphorePermit) {
    let span = debug_span!(
        "activity",
        instance_id = %task.instance_id,
        execution = task.execution,
        operation_id = %task.op,
        activity = %task.name,
        attempt = task.attempt,
        queue = task.options.queue_name(),
    );
    run_attempt_in_span(attempts, task, permit)
        .instrument(span)
        .await
}

async fn run_attempt_in_span(attempts: &Attempts, task: TaskWork, permit: OwnedSemaphorePermit) {
    let label = crate::outcome::label(&task);
    let now = attempts.shared.clock.now();
    if let Some(failure) = refuse_to_run(&task, now, attempts.shared.options.task_lease) {
        warn!(task = task.id.0, %failure, "activity failed before its attempt could run");
        return complete(attempts, &task, OpResult::Err(failure)).await;
    }
    let Some(activity) = attempts.activities.get(&task.name).cloned() else {
        let failure = Failure::new(
            FailureKind::UnknownActivity,
            format!(
                "no activity named {:?} is registered with this engine (registered: {}); \
                 register it with EngineBuilder::activity",
                task.name,
                attempts.activities.names().join(", ")
            ),
        )
        .at(label, &task.op)
        .with_attempts(task.attempt);
        return complete(attempts, &task, OpResult::Err(failure)).await;
    };
    let (attempt_deadline, close_by) = attempt_deadlines(&task, now);

    let cancel = attempts.hard_stop.child_token();
    let _guard = attempts
        .active
        .register(&task.instance_id, task.id, &task.op, cancel.clone());
    let beats = Heartbeats::new(attempts.shared.clock.clone());
    let ctx = ActivityContext {
        instance_id: task.instance_id.clone(),
        execution: task.execution,
        op: task.op.clone(),
        name: task.name.clone(),
        attempt: task.attempt,
        last_failure: task.last_failure.clone(),
        cancel: cancel.clone(),
        beats: beats.clone(),
        heartbeat_details: task.heartbeat_details.clone(),
    };
    attempts
        .shared
        .metrics
        .recorder()
        .activity(&task.name, task.options.queue_name())
        .started
        .inc();
    let mut work = AssertUnwindSafe(activity(ctx, task.input.clone())).catch_unwind();
    let timeout = async {
        match attempt_deadline {
            Some(t) => attempts.shared.clock.sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    let silence = heartbeat::watchdog(&attempts.shared, &task, &beats);
    // Cancellation and a lost lease are checked first: an activity that returns because it saw
    // the cancellation must not have that return reported as its result.
    let ended = tokio::select! {
        biased;
        _ = cancel.cancelled() => Ended::Cancelled,
        () = heartbeat::renew_lease(&attempts.shared, &task, &beats) => Ended::LeaseLost,
        () = silence => Ended::HeartbeatTimedOut {
            after: task.options.heartbeat_timeout.unwrap_or_default(),
        },
        _ = timeout => Ended::TimedOut {
            after: attempt_deadline.map(|t| t.since(now)).unwrap_or_default(),
            closed: attempt_deadline.is_some() && attempt_deadline == close_by,
        },
        out = &mut work => Ended::Finished(out.unwrap_or_else(|panic| Err(panic_error(&task.name, panic)))),
    };
    let ended = match ended {
        // Give a cancelled activity a moment to see it and return on its own; an output it
        // still produces is a real result and is kept.
        Ended::Cancelled | Ended::LeaseLost => {
            cancel.cancel();
            let lost = matches!(ended, Ended::LeaseLost);
            match tokio::time::timeout(CANCEL_GRACE, &mut work).await {
                Ok(Ok(Ok(out))) if !lost => Ended::Finished(Ok(out)),
                _ if lost => Ended::LeaseLost,
                _ => Ended::Cancelled,
            }
        }
        // The activity stopped heartbeating: tell it to stop (its heartbeats now fail) and
        // give it the same moment to return; the attempt has failed whatever it returns.
        Ended::HeartbeatTimedOut { .. } => {
            cancel.cancel();
            let _ = tokio::time::timeout(CANCEL_GRACE, &mut work).await;
            ended
        }
        other => other,
    };
    drop(work);
    drop(permit);
    // Whatever the attempt leaves for the next one, it leaves it before giving its task back.
    if matches!(
        ended,
        Ended::Finished(Err(_)) | Ended::TimedOut { .. } | Ended::HeartbeatTimedOut { .. }
    ) || (matches!(ended, Ended::Cancelled) && attempts.hard_stop.is_cancelled())
    {
        heartbeat::flush(&attempts.shared, &task, &beats).await;
    }

    match ended {
        Ended::Finished(Ok(output)) => complete(attempts, &task, OpResult::Ok(output)).await,
        Ended::Finished(Err(AttemptError::Payload(message))) => {
            let failure = Failure::new(FailureKind::Payload, message)
                .at(label, &task.op)
                .with_attempts(task.attempt);
            complete(attempts, &task, OpResult::Err(failure)).await
        }
        Ended::Finished(Err(AttemptError::Activity(e))) => {
            let now = attempts.shared.clock.now();
            let outcome = after_failure(&task, now, &e, None, fastrand::f64());
            apply(attempts, &task, outcome).await
        }
        Ended::HeartbeatTimedOut { after } => {
            let (e, kind) = (heartbeat::timed_out(after), FailureKind::HeartbeatTimedOut);
            let now = attempts.shared.clock.now();
            let outcome = after_failure(&task, now, &e, Some(kind), fastrand::f64());
            apply(attempts, &task, outcome).await
        }
        Ended::TimedOut { after, closed } => {
            let now = attempts.shared.clock.now();
            let outcome = after_timeout(&task, now, after, closed, fastrand::f64());
            apply(attempts, &task, outcome).await
        }
        Ended::LeaseLost => {
            attempts.shared.metrics.recorder().task_lease_lost();
            debug!(
                task = task.id.0,
                "activity lease lost; another worker owns the task now"
            );
        }
        Ended::Cancelled => {
            if attempts.hard_stop.is_cancelled() {
                // Shutting down: hand the task back so another worker runs it.
                if let Err(e) = attempts
                    .shared
                    .store
                    .release_task(task.id, task.token, TaskRelease::HandBack)
                    .await
                {
                    debug!(task = task.id.0, error = %e, "hand-back failed; the lease will expire");
                }
                attempts
                    .handed_back
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // Otherwise the instance finished and its task is gone: nothing to report.
        }
    }
}

/// Carries out what [`after_failure`] or [`after_timeout`] decided: releases the task for its
/// retry, or completes it with its final failure.
async fn apply(attempts: &Attempts, task: &TaskWork, outcome: AttemptOutcome) {
    match outcome {
        AttemptOutcome::Retry(release) => {
            debug!(
                task = task.id.0,
                attempt = task.attempt,
                ?release,
                "activity attempt failed; retrying"
            );
            match attempts
                .shared
                .store
                .release_task(task.id, task.token, release)
                .await
            {
                Ok(()) => {
                    let recorder = attempts.shared.metrics.recorder();
                    let counters = recorder.activity(&task.name, task.options.queue_name());
                    counters.retried.inc();
                }
                Err(err) => {
                    debug!(task = task.id.0, error = %err, "could not schedule the retry; the lease will expire");
                }
            }
        }
        AttemptOutcome::Fail(failure) => complete(attempts, task, OpResult::Err(failure)).await,
    }
}

fn panic_error(name: &str, panic: Box<dyn std::any::Any + Send>) -> AttemptError {
    AttemptError::Activity(ActivityError::retryable(format!(
        "activity {name:?} panicked: {}",
        duraflow_core::panic_message(&*panic)
    )))
}

/// Counts a result its instance has taken: a success or a failure.
fn count_result(attempts: &Attempts, task: &TaskWork, succeeded: bool) {
    let recorder = attempts.shared.metrics.recorder();
    let counters = recorder.activity(&task.name, task.options.queue_name());
    if succeeded {
        counters.completed.inc();
    } else {
        counters.failed.inc();
    }
}

/// Reports a final result, retrying while the store is unreachable. When this engine has room
/// for another turn and keeps the instance's run warm waiting for this result alone, the next
/// turn runs here at once and commits with the result (a direct turn). Otherwise, with room,
/// the completion also claims the instance's next turn, which then runs here at once instead
/// of waiting to be fetched.
async fn complete(attempts: &Attempts, task: &TaskWork, result: OpResult) {
    let mut backoff = Backoff::new(attempts.shared.options.store_retry_initial);
    // Not while stopping (the dispatcher says no room then), so that shutdown drains.
    let mut room = if attempts.shared.stop.is_cancelled() {
        None
    } else {
        attempts
            .turns
            .upgrade()
            .and_then(|turns| turns.room_for_a_turn().map(|permit| (turns, permit)))
    };
    let succeeded = matches!(result, OpResult::Ok(_));
    let result = match room.take() {
        Some((turns, permit)) => match turns.clone().direct_turn(task, result, permit).await {
            Ok(()) => return count_result(attempts, task, succeeded),
            Err((result, permit)) => {
                room = Some((turns, permit));
                result
            }
        },
        None => result,
    };
    for _ in 0..5 {
        let completion = TaskCompletion {
            id: task.id,
            token: task.token,
            result: result.clone(),
            claim_turn: room.as_ref().map(|_| attempts.shared.options.turn_lease),
        };
        match attempts.completer.submit(completion).await {
            Ok(Completed { turn }) => {
                count_result(attempts, task, succeeded);
                if let (Some(work), Some((turns, permit))) = (turn, room) {
                    turns.spawn_turn(work, permit);
                }
                return;
            }
            Err(e) if e.is_transient() => {
                warn!(task = task.id.0, error = %e, "completing an activity failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                if matches!(e, StoreError::LeaseLost { .. }) {
                    attempts.shared.metrics.recorder().task_lease_lost();
                }
                debug!(task = task.id.0, error = %e, "activity result discarded");
                return;
            }
        }
    }
    warn!(
        task = task.id.0,
        "giving up on completing the activity; its lease will expire and it will run again"
    );
}
