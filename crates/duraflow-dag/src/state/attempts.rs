//! One step's attempts in a run: the state history, the attempt count and the retry backoff.

use serde::{Deserialize, Serialize};

use super::{Actor, History, StepState, TransitionError};
use crate::template::RetrySpec;

/// How a failed attempt ended, as [`StepAttempts::fail`] decided from the retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// Attempts are left: the step waits for its backoff and is due at this time (ms).
    RetryAt(i64),
    /// No attempt is left and the step is skippable: it was skipped, its dependents proceed.
    Skipped,
    /// No attempt is left: the step failed for good, and so does the run.
    ForGood,
}

/// A step's life in a run, driven by the engine: enqueue, start, complete or fail, and retry
/// after the backoff. Every move goes through the step table and lands in the audit trail.
///
/// A step is *due* (may be enqueued) when readiness found all its parents resolved and it is
/// pending, or when it waits for a retry and its backoff has elapsed ([`is_due`](Self::is_due)).
///
/// ```
/// use duraflow_dag::state::{Failed, StepAttempts};
/// use duraflow_dag::{Backoff, RetrySpec, StepState};
///
/// let retry = RetrySpec { max_attempts: 2, backoff: Backoff::Fixed, interval_ms: 500, max_interval_ms: 500, jitter: 0.0 };
/// let mut step = StepAttempts::new();
/// step.enqueue("parents done", 0)?;
/// step.start(10)?;
/// assert_eq!(step.fail("timeout", &retry, false, 20)?, Failed::RetryAt(520));
/// assert!(!step.is_due(519) && step.is_due(520));
/// step.enqueue("backoff elapsed", 520)?;
/// step.start(530)?;
/// assert_eq!(step.fail("timeout", &retry, false, 540)?, Failed::ForGood);
/// assert_eq!(step.state(), StepState::Error);
/// assert_eq!(step.history().trail().len(), 7);
/// # Ok::<_, duraflow_dag::TransitionError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepAttempts {
    history: History<StepState>,
    attempt: u32,
    retry_at: Option<i64>,
    /// The attempts made before an operator's latest retry: the retry policy counts the
    /// attempts after it.
    #[serde(default)]
    round_start: u32,
}

impl Default for StepAttempts {
    fn default() -> Self {
        Self::new()
    }
}

impl StepAttempts {
    /// A pending step with no attempt yet.
    pub fn new() -> Self {
        StepAttempts {
            history: History::new(StepState::Pending),
            attempt: 0,
            retry_at: None,
            round_start: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> StepState {
        self.history.state()
    }

    /// The state history and its audit trail.
    pub fn history(&self) -> &History<StepState> {
        &self.history
    }

    /// Attempts started so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Attempts started since an operator last retried the step (all of them if none did):
    /// what the retry policy counts.
    pub fn attempts_in_round(&self) -> u32 {
        self.attempt - self.round_start
    }

    /// When the next attempt is due, while the step waits for a retry.
    pub fn retry_at(&self) -> Option<i64> {
        self.retry_at
    }

    /// Whether the engine may enqueue the step at `now` for a retry: it waits for one and the
    /// backoff has elapsed. (A pending step is enqueued when readiness makes it ready.)
    pub fn is_due(&self, now: i64) -> bool {
        self.state() == StepState::WaitingForRetry && self.retry_at.is_some_and(|t| t <= now)
    }

    /// Hands the step to its queue: from pending (its parents are resolved) or, once the
    /// backoff has elapsed, from waiting for a retry.
    pub fn enqueue(&mut self, reason: &str, at: i64) -> Result<(), TransitionError> {
        if let Some(due) = self.retry_at.filter(|&due| due > at) {
            return Err(TransitionError::NotDue { due, at });
        }
        self.apply(StepState::Enqueued, reason, at)?;
        self.retry_at = None;
        Ok(())
    }

    /// A worker starts the next attempt.
    pub fn start(&mut self, at: i64) -> Result<(), TransitionError> {
        let next = self.attempt + 1;
        self.history.apply(
            StepState::InProgress,
            format!("attempt {next} started"),
            Actor::Engine,
            next,
            at,
        )?;
        self.attempt = next;
        Ok(())
    }

    /// The running attempt succeeded.
    pub fn complete(&mut self, at: i64) -> Result<(), TransitionError> {
        self.apply(StepState::Complete, "the handler succeeded", at)
    }

    /// The running attempt failed: records the error, then either waits for a retry, skips a
    /// skippable step, or leaves the step failed for good.
    pub fn fail(
        &mut self,
        reason: &str,
        retry: &RetrySpec,
        skippable: bool,
        at: i64,
    ) -> Result<Failed, TransitionError> {
        let wait = retry.delay_after(self.attempts_in_round());
        self.fail_after(reason, wait, retry.max_attempts, skippable, at)
    }

    /// The running attempt failed and the caller decided the wait before the next one
    /// (`None`: no retry, because the error is not retryable or no attempt is left; of
    /// `max_attempts`, for the audit trail): records the error, then waits for the retry,
    /// skips a skippable step, or leaves the step failed for good.
    pub fn fail_after(
        &mut self,
        reason: &str,
        wait: Option<u64>,
        max_attempts: u32,
        skippable: bool,
        at: i64,
    ) -> Result<Failed, TransitionError> {
        self.apply(StepState::Error, reason, at)?;
        if let Some(wait) = wait {
            let due = at.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
            let why = format!(
                "attempt {} of {max_attempts} failed; retry at {due}",
                self.attempts_in_round(),
            );
            self.apply(StepState::WaitingForRetry, &why, at)?;
            self.retry_at = Some(due);
            Ok(Failed::RetryAt(due))
        } else if skippable {
            self.apply(StepState::Skipped, "a skippable step failed for good", at)?;
            Ok(Failed::Skipped)
        } else {
            Ok(Failed::ForGood)
        }
    }

    /// An operator runs the step again (from `error`, or from `complete`, `skipped` or
    /// `resolved_manually` to run it and its descendants again): it is enqueued, and the retry
    /// policy counts its attempts afresh.
    pub fn retry_by(&mut self, operator: &str, at: i64) -> Result<(), TransitionError> {
        let reason = format!("retried by operator {operator}");
        self.apply_by(
            StepState::Enqueued,
            &reason,
            Actor::Operator(operator.to_owned()),
            at,
        )?;
        self.round_start = self.attempt;
        Ok(())
    }

    /// An operator runs an ancestor of the step again: it goes back to pending, to run again
    /// (its attempts counted afresh) once its parents have.
    pub fn rewind_by(
        &mut self,
        operator: &str,
        ancestor: &str,
        at: i64,
    ) -> Result<(), TransitionError> {
        let reason = format!("operator {operator} runs its ancestor `{ancestor}` again");
        self.apply_by(
            StepState::Pending,
            &reason,
            Actor::Operator(operator.to_owned()),
            at,
        )?;
        self.round_start = self.attempt;
        Ok(())
    }

    /// Any other move (cancel, skip, or an operator's): through the table, into the trail.
    pub fn apply_by(
        &mut self,
        to: StepState,
        reason: &str,
        by: Actor,
        at: i64,
    ) -> Result<(), TransitionError> {
        self.history.apply(to, reason, by, self.attempt, at)?;
        if to != StepState::WaitingForRetry {
            self.retry_at = None;
        }
        Ok(())
    }

    fn apply(&mut self, to: StepState, reason: &str, at: i64) -> Result<(), TransitionError> {
        self.apply_by(to, reason, Actor::Engine, at)
    }
}
