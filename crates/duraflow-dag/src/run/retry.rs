//! How the interpreter retries a step: each attempt is one activity call with one attempt,
//! and the wait before the next comes from the step's [`RetrySpec`](crate::RetrySpec), spread
//! by a jitter that is the same on every replay, or from the handler's own Retry-After.

use duraflow_core::{FailureKind, WorkflowError};

/// How an attempt failed, as the run machine needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AttemptFailure {
    /// The error, for the audit trail and the run's failure.
    pub(crate) message: String,
    /// Whether another attempt may fix it (a terminal error fails the step at once).
    pub(crate) retryable: bool,
    /// The wait the handler asked for before the next attempt, in milliseconds.
    pub(crate) retry_after_ms: Option<u64>,
    /// The attempts the failure reported (an activity whose own policy retried: journals
    /// written before the interpreter scheduled retries itself).
    pub(crate) attempts: Option<u32>,
}

impl AttemptFailure {
    /// How the workflow error an attempt's activity call returned reads. An activity's
    /// failure is retryable unless its error was terminal (or the activity is unknown, or
    /// was cancelled); any other error is not.
    pub(crate) fn from_error(e: &WorkflowError) -> Self {
        let (retryable, retry_after_ms, attempts) = match e {
            WorkflowError::Activity(f) => (
                !matches!(
                    f.kind,
                    FailureKind::ActivityTerminal
                        | FailureKind::Cancelled
                        | FailureKind::Terminated
                        | FailureKind::UnknownActivity
                        | FailureKind::Payload
                        | FailureKind::Nondeterminism
                ),
                f.retry_after_ms.map(|ms| u64::from(ms.get())),
                f.attempts,
            ),
            _ => (false, None, None),
        };
        AttemptFailure {
            message: e.to_string(),
            retryable,
            retry_after_ms,
            attempts,
        }
    }

    /// A failure that no retry can fix (a result the template does not allow).
    pub(crate) fn terminal(message: impl Into<String>) -> Self {
        AttemptFailure {
            message: message.into(),
            retryable: false,
            retry_after_ms: None,
            attempts: None,
        }
    }
}

/// The run's seed for jitter: a hash of its instance id, so that two runs failing together
/// spread their retries differently while replay of one run repeats its own.
pub(crate) fn seed(instance_id: &str) -> u64 {
    fnv1a(0xcbf2_9ce4_8422_2325, instance_id.as_bytes())
}

/// A number in `[0, 1)` for the jitter of `step`'s wait after its attempt `attempt`, the same
/// on every replay of the run seeded with `seed`.
pub(crate) fn jitter_sample(seed: u64, step: &str, attempt: u32) -> f64 {
    let h = fnv1a(seed, step.as_bytes()) ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    #[allow(
        clippy::cast_precision_loss,
        reason = "53 random bits make a uniform f64 in [0, 1)"
    )]
    let sample = (splitmix64(h) >> 11) as f64 / (1u64 << 53) as f64;
    sample
}

fn fnv1a(start: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(start, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_stable_spread_and_in_range() {
        let s = seed("run-1");
        assert_eq!(
            jitter_sample(s, "a", 1),
            jitter_sample(seed("run-1"), "a", 1)
        );
        let samples: Vec<f64> = (1..200).map(|n| jitter_sample(s, "a", n)).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((0.35..0.65).contains(&mean), "{mean}");
        assert_ne!(
            jitter_sample(s, "a", 1),
            jitter_sample(seed("run-2"), "a", 1)
        );
        assert_ne!(jitter_sample(s, "a", 1), jitter_sample(s, "b", 1));
    }

    #[test]
    fn terminal_errors_are_not_retried_and_retry_after_is_read() {
        use duraflow_core::Failure;
        let retryable = Failure::new(FailureKind::RetriesExhausted, "busy")
            .with_retry_after(Some(std::time::Duration::from_secs(2)));
        let f = AttemptFailure::from_error(&WorkflowError::Activity(retryable));
        assert!(f.retryable);
        assert_eq!(f.retry_after_ms, Some(2_000));
        let terminal = Failure::new(FailureKind::ActivityTerminal, "bad card");
        assert!(!AttemptFailure::from_error(&WorkflowError::Activity(terminal)).retryable);
        assert!(!AttemptFailure::from_error(&WorkflowError::Cancelled).retryable);
    }
}
