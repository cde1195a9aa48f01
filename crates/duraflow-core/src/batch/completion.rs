//! When a batch may stop early, and why it stopped.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::BatchError;

/// When a map or parallel batch stops: after every item, or early once enough items succeeded
/// or too many failed.
///
/// The rules (R10), checked after every item's outcome:
///
/// - **failure tolerance**: the batch stops with
///   [`FailureToleranceExceeded`](CompletionReason::FailureToleranceExceeded) as soon as the
///   number of failed items is *strictly greater* than `tolerated_failure_count`, or the failed
///   items' share of **all** the batch's items (started or not) is strictly greater than
///   `tolerated_failure_percentage` percent. 1 failure of 4 items at 25 % does not stop the
///   batch; 2 of 4 do. The comparison multiplies rather than divides
///   (`failures × 100 > percentage × total`), so it is exact for whole percentages: 3 failures
///   of 10 items at 30 % do not stop the batch either (3 / 10 × 100 is 30.000000000000004 in
///   floating point).
/// - **enough successes**: the batch stops with
///   [`MinSuccessfulReached`](CompletionReason::MinSuccessfulReached) as soon as the number of
///   succeeded items equals `min_successful`, if items remain unfinished (not started, or
///   running: those are cancelled). A `min_successful` that can no longer be reached (too many
///   items failed) does **not** stop the batch early.
/// - otherwise the batch ends with [`AllCompleted`](CompletionReason::AllCompleted) when every
///   item has finished, including when the last item's success is the one that reaches
///   `min_successful`.
///
/// When one outcome meets several rules, failure tolerance wins (a failure of the last item
/// that exceeds the tolerance gives `FailureToleranceExceeded`, not `AllCompleted`).
///
/// Unset thresholds never stop a batch: the default, [`CompletionConfig::all_completed`], runs
/// every item whatever fails. The thresholds combine: the first one met stops the batch.
///
/// ```
/// use duraflow_core::batch::CompletionConfig;
///
/// // Stop after 3 successes, or as soon as more than 1 item fails.
/// let config = CompletionConfig::min_successful(3).with_tolerated_failures(1);
/// assert_eq!(config.min_successful_count(), Some(3));
/// assert_eq!(config.tolerated_failure_count(), Some(1));
/// assert!(config.validate().is_ok());
///
/// // Nonsense is refused before anything runs.
/// assert!(CompletionConfig::tolerated_failure_percentage(150.0).validate().is_err());
/// assert!(CompletionConfig::min_successful(0).validate().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_successful: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tolerated_failure_count: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tolerated_failure_percentage: Option<f64>,
}

impl CompletionConfig {
    /// Fail fast: stop at the first failure (a tolerated failure count of 0).
    pub fn all_successful() -> Self {
        Self::default().with_tolerated_failures(0)
    }

    /// Run every item, whatever fails (no threshold). This is the default.
    pub fn all_completed() -> Self {
        Self::default()
    }

    /// Stop at the first success (a `min_successful` of 1).
    pub fn first_successful() -> Self {
        Self::default().with_min_successful(1)
    }

    /// Stop as soon as `k` items have succeeded. `k` must be at least 1 (see
    /// [`validate`](Self::validate)); a `k` larger than the batch only means that the batch
    /// runs every item.
    pub fn min_successful(k: usize) -> Self {
        Self::default().with_min_successful(k)
    }

    /// Stop as soon as more than `n` items have failed.
    pub fn tolerated_failures(n: usize) -> Self {
        Self::default().with_tolerated_failures(n)
    }

    /// Stop as soon as more than `p` percent of the batch's items (all of them, started or
    /// not) have failed. `p` must be a number from 0 to 100 (see [`validate`](Self::validate)).
    pub fn tolerated_failure_percentage(p: f64) -> Self {
        Self::default().with_tolerated_failure_percentage(p)
    }

    /// This configuration, also stopping as soon as `k` items have succeeded.
    pub fn with_min_successful(mut self, k: usize) -> Self {
        self.min_successful = Some(k);
        self
    }

    /// This configuration, also stopping as soon as more than `n` items have failed.
    pub fn with_tolerated_failures(mut self, n: usize) -> Self {
        self.tolerated_failure_count = Some(n);
        self
    }

    /// This configuration, also stopping as soon as more than `p` percent of the items have
    /// failed.
    pub fn with_tolerated_failure_percentage(mut self, p: f64) -> Self {
        self.tolerated_failure_percentage = Some(p);
        self
    }

    /// The number of successes that stops the batch, if set.
    pub fn min_successful_count(&self) -> Option<usize> {
        self.min_successful
    }

    /// The number of failures tolerated (one more stops the batch), if set.
    pub fn tolerated_failure_count(&self) -> Option<usize> {
        self.tolerated_failure_count
    }

    /// The percentage of failed items tolerated (more stops the batch), if set.
    pub fn tolerated_failure_percent(&self) -> Option<f64> {
        self.tolerated_failure_percentage
    }

    /// Refuses nonsense: a `min_successful` of 0 ([`BatchError::InvalidMinSuccessful`]), and a
    /// `tolerated_failure_percentage` that is NaN or outside `0..=100`
    /// ([`BatchError::InvalidToleratedFailurePercentage`]).
    ///
    /// Thresholds that merely cannot be met for a given batch are accepted: a `min_successful`
    /// larger than the batch, or a tolerated failure count of at least its size, just let every
    /// item run (map inputs vary in length; such a configuration is not a mistake). The same
    /// holds for an empty batch, which completes at once with
    /// [`AllCompleted`](CompletionReason::AllCompleted).
    pub fn validate(&self) -> Result<(), BatchError> {
        if self.min_successful == Some(0) {
            return Err(BatchError::InvalidMinSuccessful);
        }
        if let Some(p) = self.tolerated_failure_percentage {
            if !(0.0..=100.0).contains(&p) {
                return Err(BatchError::InvalidToleratedFailurePercentage(p));
            }
        }
        Ok(())
    }

    /// Whether `failures` failed items, out of `total` items in the batch, exceed the tolerance.
    pub(crate) fn failure_tolerance_exceeded(&self, failures: usize, total: usize) -> bool {
        if let Some(n) = self.tolerated_failure_count {
            if failures > n {
                return true;
            }
        }
        if let Some(p) = self.tolerated_failure_percentage {
            // failures / total * 100 > p, without the rounding of a division: for a whole
            // percentage both products are exact integers (below 2^53).
            if total > 0 && (failures as f64) * 100.0 > p * (total as f64) {
                return true;
            }
        }
        false
    }

    /// Whether `successes` succeeded items reach `min_successful`.
    pub(crate) fn min_successful_reached(&self, successes: usize) -> bool {
        self.min_successful.is_some_and(|k| successes >= k)
    }
}

/// Why a batch stopped (R10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionReason {
    /// Every item finished (none was left out), whatever their outcomes.
    AllCompleted,
    /// `min_successful` items succeeded while others had not finished; those were not started,
    /// or were cancelled.
    MinSuccessfulReached,
    /// More items failed than the configuration tolerates; the unfinished ones were not
    /// started, or were cancelled.
    FailureToleranceExceeded,
}

impl fmt::Display for CompletionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompletionReason::AllCompleted => "all_completed",
            CompletionReason::MinSuccessfulReached => "min_successful_reached",
            CompletionReason::FailureToleranceExceeded => "failure_tolerance_exceeded",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_the_documented_thresholds() {
        assert_eq!(
            CompletionConfig::all_successful().tolerated_failure_count(),
            Some(0)
        );
        assert_eq!(
            CompletionConfig::all_completed(),
            CompletionConfig::default()
        );
        assert_eq!(
            CompletionConfig::first_successful().min_successful_count(),
            Some(1)
        );
        let c = CompletionConfig::tolerated_failure_percentage(12.5)
            .with_min_successful(3)
            .with_tolerated_failures(2);
        assert_eq!(c.min_successful_count(), Some(3));
        assert_eq!(c.tolerated_failure_count(), Some(2));
        assert_eq!(c.tolerated_failure_percent(), Some(12.5));
    }

    #[test]
    fn validate_refuses_nonsense_and_accepts_the_unreachable() {
        assert_eq!(
            CompletionConfig::min_successful(0).validate(),
            Err(BatchError::InvalidMinSuccessful)
        );
        for p in [-0.1, 100.1, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                CompletionConfig::tolerated_failure_percentage(p).validate(),
                Err(BatchError::InvalidToleratedFailurePercentage(p))
            );
        }
        assert!(matches!(
            CompletionConfig::tolerated_failure_percentage(f64::NAN).validate(),
            Err(BatchError::InvalidToleratedFailurePercentage(p)) if p.is_nan()
        ));
        for p in [0.0, 25.0, 100.0] {
            assert!(CompletionConfig::tolerated_failure_percentage(p)
                .validate()
                .is_ok());
        }
        assert!(CompletionConfig::min_successful(usize::MAX)
            .validate()
            .is_ok());
        assert!(CompletionConfig::all_completed().validate().is_ok());
    }

    #[test]
    fn percentage_is_strictly_greater_and_exact() {
        let c = CompletionConfig::tolerated_failure_percentage(25.0);
        assert!(!c.failure_tolerance_exceeded(1, 4));
        assert!(c.failure_tolerance_exceeded(2, 4));
        // 3 / 10 * 100 is 30.000000000000004 in floating point; the rule must not stop here.
        let c = CompletionConfig::tolerated_failure_percentage(30.0);
        assert!(!c.failure_tolerance_exceeded(3, 10));
        assert!(c.failure_tolerance_exceeded(4, 10));
        // 0 % tolerates nothing; 100 % tolerates everything; an empty batch never exceeds.
        assert!(
            CompletionConfig::tolerated_failure_percentage(0.0).failure_tolerance_exceeded(1, 9)
        );
        assert!(
            !CompletionConfig::tolerated_failure_percentage(100.0).failure_tolerance_exceeded(9, 9)
        );
        assert!(
            !CompletionConfig::tolerated_failure_percentage(0.0).failure_tolerance_exceeded(0, 0)
        );
    }

    #[test]
    fn serde_round_trips_and_leaves_unset_thresholds_out() {
        let c = CompletionConfig::min_successful(2).with_tolerated_failure_percentage(50.0);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"min_successful":2,"tolerated_failure_percentage":50.0}"#
        );
        assert_eq!(serde_json::from_str::<CompletionConfig>(&json).unwrap(), c);
        assert_eq!(
            serde_json::from_str::<CompletionConfig>("{}").unwrap(),
            CompletionConfig::all_completed()
        );
    }

    #[test]
    fn reason_serializes_snake_case_and_displays_the_same() {
        for (reason, text) in [
            (CompletionReason::AllCompleted, "all_completed"),
            (
                CompletionReason::MinSuccessfulReached,
                "min_successful_reached",
            ),
            (
                CompletionReason::FailureToleranceExceeded,
                "failure_tolerance_exceeded",
            ),
        ] {
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{text}\"")
            );
            assert_eq!(reason.to_string(), text);
            assert_eq!(
                serde_json::from_str::<CompletionReason>(&format!("\"{text}\"")).unwrap(),
                reason
            );
        }
    }
}
