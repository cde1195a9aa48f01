//! What becomes of an activity attempt: whether a leased task may run at all, its deadlines,
//! and whether a failed attempt is retried or ends the activity. Pure functions of the task,
//! the time and the error, shared by the engine's own workers (`attempt.rs`) and by
//! `duraflow serve`, which applies them to the attempts of workers in other languages, so that
//! both keep the same retry semantics.

use std::time::Duration;

use duraflow_core::{ActivityError, Failure, FailureKind, Timestamp};
use duraflow_store::{TaskRelease, TaskWork};

/// What to do with a task whose attempt failed.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    /// Another attempt will be made: give the task back with this release
    /// ([`TaskRelease::Retry`]).
    Retry(TaskRelease),
    /// The activity has failed for good: complete the task with this failure.
    Fail(Failure),
}

/// The deadlines of an attempt that starts at `now`: `(attempt, close_by)`, where `close_by`
/// is the schedule-to-close deadline and `attempt` the earlier of it and the attempt timeout.
pub fn attempt_deadlines(
    task: &TaskWork,
    now: Timestamp,
) -> (Option<Timestamp>, Option<Timestamp>) {
    let close_by = task
        .options
        .schedule_to_close
        .map(|d| task.scheduled_at.plus(d));
    let attempt = match (task.options.attempt_timeout.map(|d| now.plus(d)), close_by) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (attempt, close_by)
}

/// Why a task just leased at `now` must not run, as the failure to complete it with: every
/// attempt the policy allows was made and the last one was lost (its lease expired, so the
/// store counted another attempt; `task_lease` names the lease in the message), or its
/// schedule-to-close deadline has passed. `None` when it may run.
pub fn refuse_to_run(task: &TaskWork, now: Timestamp, task_lease: Duration) -> Option<Failure> {
    // The store counts an attempt at every fetch, and an attempt that ends by itself either
    // reports its result or (with attempts left) is released for its retry. A fetch past the
    // policy's attempts therefore means the last allowed one ended without a word.
    if task.attempt > task.options.retry.max_attempts {
        return Some(lease_expired_failure(task_lease, task));
    }
    let (_, close_by) = attempt_deadlines(task, now);
    if close_by.is_some_and(|deadline| now >= deadline) {
        return Some(schedule_to_close_failure(
            task,
            task.attempt.saturating_sub(1),
            None,
        ));
    }
    None
}

/// Decides between another attempt and a final failure after attempt `task.attempt` failed
/// with `e` at `now`. `kind` names what ended the attempt when the runtime ended it (a
/// heartbeat timeout); `jitter` is a sample in `[0, 1)` for the policy's backoff spread.
///
/// A retryable error whose code the policy retries is attempted again after the policy's
/// backoff, or after the wait the error asks for ([`ActivityError::retry_after`]) instead,
/// unless no attempt is left or the retry would start after the schedule-to-close deadline.
pub fn after_failure(
    task: &TaskWork,
    now: Timestamp,
    e: &ActivityError,
    kind: Option<FailureKind>,
    jitter: f64,
) -> AttemptOutcome {
    let policy = &task.options.retry;
    let (_, close_by) = attempt_deadlines(task, now);
    let retry_at = (e.is_retryable() && policy.retries_code(e.code()))
        .then(|| policy.delay_after(task.attempt, jitter))
        .flatten()
        // A wait the activity asked for (a `Retry-After`) replaces the policy's backoff.
        .map(|d| now.plus(e.retry_after_hint().unwrap_or(d)));
    match retry_at {
        // The policy allows another attempt, but not before the schedule-to-close deadline:
        // the activity times out rather than exhausting retries it still had.
        Some(at) if close_by.is_some_and(|deadline| at >= deadline) => {
            AttemptOutcome::Fail(schedule_to_close_failure(task, task.attempt, Some(e)))
        }
        Some(visible_at) => AttemptOutcome::Retry(TaskRelease::Retry {
            visible_at,
            failure: attempt_failure(e, kind.unwrap_or(FailureKind::Application), task),
        }),
        None => {
            let kind = if let Some(kind) = kind {
                kind
            } else if !e.is_retryable() || !policy.retries_code(e.code()) {
                if matches!(e, ActivityError::Cancelled) {
                    FailureKind::Cancelled
                } else {
                    FailureKind::ActivityTerminal
                }
            } else {
                FailureKind::RetriesExhausted
            };
            AttemptOutcome::Fail(attempt_failure(e, kind, task))
        }
    }
}

/// What becomes of an attempt that ran out of time after `after`: its own timeout is a
/// retryable failure; the schedule-to-close deadline (`closed`) ends the activity, since no
/// retry can help.
pub fn after_timeout(
    task: &TaskWork,
    now: Timestamp,
    after: Duration,
    closed: bool,
    jitter: f64,
) -> AttemptOutcome {
    let e = ActivityError::retryable(format!("attempt timed out after {after:?}"));
    if closed {
        AttemptOutcome::Fail(schedule_to_close_failure(task, task.attempt, Some(&e)))
    } else {
        after_failure(task, now, &e, None, jitter)
    }
}

/// `activity "name"`, where failures say they happened.
pub(crate) fn label(task: &TaskWork) -> String {
    format!("activity {:?}", task.name)
}

fn attempt_failure(e: &ActivityError, kind: FailureKind, task: &TaskWork) -> Failure {
    Failure::new(kind, e.message())
        .with_code(e.code().map(str::to_owned))
        .with_retry_after(e.retry_after_hint())
        .at(label(task), &task.op)
        .with_attempts(task.attempt)
}

/// Every attempt the policy allows has been made and the last one ended without a report (its
/// lease expired).
fn lease_expired_failure(task_lease: Duration, task: &TaskWork) -> Failure {
    let attempts = task.options.retry.max_attempts;
    let mut message = format!(
        "attempt {attempts} of {attempts} ended without reporting a result: its lease expired \
         first, because the worker running it died, was stopped without handing it back, \
         could not reach the store, or blocked its thread so that the lease could not be \
         renewed (task_lease is {:?} in the engine reporting this), and the retry policy \
         allows no more attempts. Run an activity's blocking work with \
         tokio::task::spawn_blocking; an activity that kills its worker has to be fixed",
        task_lease
    );
    if let Some(last) = &task.last_failure {
        message.push_str(&format!("; an earlier attempt failed: {}", last.message));
    }
    Failure::new(FailureKind::LeaseExpired, message)
        .at(label(task), &task.op)
        .with_attempts(attempts)
}

/// The activity had no result by its schedule-to-close deadline, after `attempts` attempts
/// (the last of which failed with `last`, if given).
fn schedule_to_close_failure(
    task: &TaskWork,
    attempts: u32,
    last: Option<&ActivityError>,
) -> Failure {
    let mut message = format!(
        "no result within the schedule-to-close timeout of {:?}",
        task.options.schedule_to_close.unwrap_or_default()
    );
    if let Some(e) = last {
        message.push_str(&format!("; the last attempt failed: {}", e.message()));
    }
    Failure::new(FailureKind::Timeout, message)
        .with_code(last.and_then(|e| e.code()).map(str::to_owned))
        .at(label(task), &task.op)
        .with_attempts(attempts)
}
