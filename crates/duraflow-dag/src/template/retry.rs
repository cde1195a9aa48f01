//! How a step's failed attempts are retried.

use serde::{Deserialize, Serialize};

/// How the wait between attempts grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same wait, `interval_ms`, before every retry.
    Fixed,
    /// The wait doubles after each failed attempt, starting at `interval_ms`.
    #[default]
    Exponential,
}

/// A step's retry policy: at most `max_attempts` attempts (the first included), waiting
/// `interval_ms` before the second, then per `backoff`, never more than `max_interval_ms`;
/// each wait is then spread by `jitter` (see [`RetrySpec::jittered_delay_after`]).
///
/// In YAML: `retry: { max_attempts: 5, backoff: exponential, interval_ms: 1000,
/// max_interval_ms: 30000, jitter: 0.2 }`; every field may be left out. The default is 3
/// attempts, exponential from 1 s, capped at 60 s, with a jitter of 0.1 (±10%).
///
/// ```
/// use duraflow_dag::{Backoff, RetrySpec};
///
/// let r = RetrySpec { max_attempts: 4, backoff: Backoff::Exponential, interval_ms: 100, max_interval_ms: 300, jitter: 0.0 };
/// assert_eq!(r.delay_after(1), Some(100));
/// assert_eq!(r.delay_after(2), Some(200));
/// assert_eq!(r.delay_after(3), Some(300)); // capped
/// assert_eq!(r.delay_after(4), None); // no fifth attempt
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// How the wait grows.
    pub backoff: Backoff,
    /// The wait before the second attempt, in milliseconds.
    pub interval_ms: u64,
    /// The longest wait, in milliseconds.
    pub max_interval_ms: u64,
    /// The relative spread of each wait, from 0.0 (none) to 1.0: a jitter of 0.2 multiplies
    /// the wait by a factor in `[0.8, 1.2]` (then caps it again), so that steps failing
    /// together do not all retry at the same moment. Values outside `0.0..=1.0` are clamped.
    pub jitter: f64,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            max_attempts: 3,
            backoff: Backoff::Exponential,
            interval_ms: 1_000,
            max_interval_ms: 60_000,
            jitter: 0.1,
        }
    }
}

impl RetrySpec {
    /// One attempt, no retry.
    pub fn none() -> Self {
        RetrySpec {
            max_attempts: 1,
            ..RetrySpec::default()
        }
    }

    /// The wait in milliseconds before attempt `failed + 1`, after `failed` failed attempts;
    /// `None` when no attempt is left.
    pub fn delay_after(&self, failed: u32) -> Option<u64> {
        if failed == 0 || failed >= self.max_attempts {
            return None;
        }
        let wait = match self.backoff {
            Backoff::Fixed => self.interval_ms,
            Backoff::Exponential => {
                let factor = 1u64.checked_shl(failed - 1).unwrap_or(u64::MAX);
                self.interval_ms.saturating_mul(factor)
            }
        };
        Some(wait.min(self.max_interval_ms))
    }

    /// [`delay_after`](Self::delay_after) spread by `jitter`: `sample` is a number in `[0, 1)`
    /// (0.5 means no spread); the wait is multiplied by `1 - jitter + 2 * jitter * sample`
    /// and capped at `max_interval_ms`.
    ///
    /// ```
    /// use duraflow_dag::RetrySpec;
    ///
    /// let r = RetrySpec { interval_ms: 1_000, jitter: 0.2, ..RetrySpec::default() };
    /// assert_eq!(r.jittered_delay_after(1, 0.5), Some(1_000));
    /// assert_eq!(r.jittered_delay_after(1, 0.0), Some(800));
    /// assert_eq!(r.jittered_delay_after(1, 0.75), Some(1_100));
    /// assert_eq!(r.jittered_delay_after(3, 0.5), None);
    /// ```
    pub fn jittered_delay_after(&self, failed: u32, sample: f64) -> Option<u64> {
        let base = self.delay_after(failed)?;
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let sample = if sample.is_finite() {
            sample.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let factor = 1.0 - jitter + 2.0 * jitter * sample;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a non-negative wait in milliseconds, rounded"
        )]
        let wait = (base as f64 * factor).round() as u64;
        Some(wait.min(self.max_interval_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_waits_the_same_and_caps() {
        let r = RetrySpec {
            max_attempts: 3,
            backoff: Backoff::Fixed,
            interval_ms: 500,
            max_interval_ms: 400,
            jitter: 0.0,
        };
        assert_eq!(r.delay_after(1), Some(400));
        assert_eq!(r.delay_after(2), Some(400));
        assert_eq!(r.delay_after(3), None);
        assert_eq!(RetrySpec::none().delay_after(1), None);
    }

    #[test]
    fn exponential_does_not_overflow() {
        let r = RetrySpec {
            max_attempts: u32::MAX,
            ..RetrySpec::default()
        };
        assert_eq!(r.delay_after(200), Some(60_000));
    }
}
