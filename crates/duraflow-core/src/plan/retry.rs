//! Retrying a failed workflow as a new attempt (see [`crate::AttemptStart`]).

use std::time::Duration;

use crate::{
    AttemptStart, EventKind, Failure, FailureKind, MessageKind, NewMessage, Outcome, Payload,
    RecordedOp, Timestamp,
};

use super::outcome::next_execution_start;
use super::{TurnEnd, TurnInstance, TurnPlan};

/// A failed attempt's retry: which attempt comes next, when it starts, and what it reuses.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowRetry {
    /// The attempt that starts next (2 after the first failure).
    pub attempt: u32,
    /// When it starts (the failure's time plus the policy's backoff).
    pub start_at: Timestamp,
    /// Why the attempt before it failed.
    pub failure: Failure,
}

/// What a failed attempt leaves for the next one, read from its run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttemptRecord {
    /// The operations this and earlier attempts completed.
    pub recorded: Vec<RecordedOp>,
    /// Every external event the attempt received (taken or not), in arrival order: the next
    /// attempt receives them again.
    pub events: Vec<(String, Payload)>,
}

/// Whether a failure may be retried as a new attempt: the workflow's own errors and failed
/// operations may; a failure the same code would meet again (nondeterminism, an unknown
/// workflow, a corrupt journal) may not, nor may a code the policy lists as non-retryable.
fn retryable(failure: &Failure) -> bool {
    !matches!(
        failure.kind,
        FailureKind::Nondeterminism
            | FailureKind::UnknownWorkflow
            | FailureKind::Internal
            | FailureKind::Cancelled
            | FailureKind::Terminated
    )
}

/// A number in `[0, 1)` for the retry jitter, the same for an instance's attempt wherever it
/// is computed.
fn jitter_sample(instance_id: &str, attempt: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance_id.bytes().chain(attempt.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The retry of an execution that ended with `outcome` in `attempt`, if its instance has a
/// retry policy that allows another attempt for this failure; `None` otherwise (the instance
/// finishes as the outcome says).
pub fn workflow_retry(
    instance: TurnInstance<'_>,
    attempt: u32,
    outcome: Option<&Outcome>,
    now: Timestamp,
) -> Option<WorkflowRetry> {
    let Some(Outcome::Failed(failure)) = outcome else {
        return None;
    };
    let policy = instance.options.retry.as_ref()?;
    if !retryable(failure) || !policy.retries_code(failure.code.as_deref()) {
        return None;
    }
    let delay: Duration = policy.delay_after(attempt, jitter_sample(instance.id, attempt))?;
    Some(WorkflowRetry {
        attempt: attempt + 1,
        start_at: now.plus(delay),
        failure: failure.clone(),
    })
}

impl TurnPlan {
    /// Ends the execution for a retry: the instance continues as a new execution with the same
    /// input, whose start, visible at the retry's `start_at`, carries the next attempt's number,
    /// what earlier attempts completed and every external event received (then the external
    /// events, cancellations and terminations among `undelivered`). Attached children still
    /// running are cancelled: the next attempt starts its own.
    pub fn retry(
        &mut self,
        instance: TurnInstance<'_>,
        retry: WorkflowRetry,
        record: AttemptRecord,
        open_children: Vec<String>,
        undelivered: impl Iterator<Item = EventKind>,
        now: Timestamp,
    ) {
        let start = next_execution_start(
            instance,
            record.events,
            undelivered,
            Some(AttemptStart {
                attempt: retry.attempt,
                recorded: record.recorded,
            }),
            retry.start_at,
        );
        self.messages.push(start);
        let reason = format!(
            "attempt {} of the parent workflow failed and a new attempt starts: {}",
            retry.attempt - 1,
            retry.failure.message
        );
        for child in open_children {
            self.messages.push(NewMessage {
                instance_id: child,
                kind: MessageKind::Cancel {
                    reason: reason.clone(),
                },
                visible_at: now,
            });
        }
        self.end = TurnEnd::Retrying {
            input: instance.input.clone(),
            attempt: retry.attempt,
            start_at: retry.start_at,
        };
    }
}
