//! Retry policies for activities.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::serde_millis;

/// How a failed activity is retried: how many attempts, and how long to wait between them.
///
/// The wait before attempt `n + 1` (after `n` failed attempts) is
/// `min(initial * coefficient^(n-1), max_interval)`, then spread by `jitter`: a jitter of `0.2`
/// multiplies the wait by a factor drawn uniformly from `[0.8, 1.2]` (and the result is capped
/// again). An error whose code is listed in `non_retryable` is not retried.
///
/// The default policy ([`RetryPolicy::default`]) makes at most 3 attempts, waiting 1 s and then
/// 2 s, with no jitter.
///
/// ```
/// use std::time::Duration;
/// use duraflow_core::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(Duration::from_secs(1))
///     .max_attempts(5)
///     .max_interval(Duration::from_secs(30));
/// assert_eq!(policy.delay_after(1, 0.5), Some(Duration::from_secs(1)));
/// assert_eq!(policy.delay_after(3, 0.5), Some(Duration::from_secs(4)));
/// assert_eq!(policy.delay_after(5, 0.5), None); // no sixth attempt
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the second attempt.
    #[serde(with = "serde_millis")]
    pub initial_interval: Duration,
    /// The factor the wait grows by after each failed attempt (1.0 for a fixed interval).
    pub backoff_coefficient: f64,
    /// The longest wait between attempts.
    #[serde(with = "serde_millis")]
    pub max_interval: Duration,
    /// The relative spread applied to each wait, from 0.0 (none) to 1.0.
    pub jitter: f64,
    /// Error codes that are never retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_retryable: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::exponential(Duration::from_secs(1)).max_attempts(3)
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> Self {
        RetryPolicy::fixed(Duration::ZERO).max_attempts(1)
    }

    /// Retries after the same wait every time (3 attempts unless changed).
    pub fn fixed(interval: Duration) -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_interval: interval,
            backoff_coefficient: 1.0,
            max_interval: interval,
            jitter: 0.0,
            non_retryable: Vec::new(),
        }
    }

    /// Retries with a wait that doubles each time, starting at `initial` and capped at 100 times
    /// `initial` (3 attempts unless changed).
    pub fn exponential(initial: Duration) -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_interval: initial,
            backoff_coefficient: 2.0,
            max_interval: initial.saturating_mul(100),
            jitter: 0.0,
            non_retryable: Vec::new(),
        }
    }

    /// Sets the number of attempts in all (values below 1 mean 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the growth factor (values below 1.0 mean 1.0).
    pub fn backoff_coefficient(mut self, coefficient: f64) -> Self {
        self.backoff_coefficient = if coefficient.is_finite() {
            coefficient.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Caps the wait between attempts.
    pub fn max_interval(mut self, cap: Duration) -> Self {
        self.max_interval = cap;
        self
    }

    /// Spreads each wait by up to this fraction (clamped to `0.0..=1.0`).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Never retries errors carrying one of these codes.
    pub fn non_retryable<I, S>(mut self, codes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.non_retryable.extend(codes.into_iter().map(Into::into));
        self
    }

    /// Whether an error with this code may be retried under this policy.
    pub fn retries_code(&self, code: Option<&str>) -> bool {
        code.is_none_or(|c| !self.non_retryable.iter().any(|n| n == c))
    }

    /// The wait after `failed_attempts` failed attempts before the next one, or `None` when no
    /// attempt is left. `jitter_sample` is a number in `[0, 1)`; `0.5` means no spread.
    pub fn delay_after(&self, failed_attempts: u32, jitter_sample: f64) -> Option<Duration> {
        if failed_attempts >= self.max_attempts {
            return None;
        }
        let exponent = failed_attempts.saturating_sub(1).min(1_000) as i32;
        let base = self.initial_interval.as_secs_f64() * self.backoff_coefficient.powi(exponent);
        let cap = self.max_interval.as_secs_f64();
        let mut secs = base.min(cap);
        if self.jitter > 0.0 {
            let factor = 1.0 + self.jitter * (2.0 * jitter_sample.clamp(0.0, 1.0) - 1.0);
            secs = (secs * factor).min(cap);
        }
        Some(Duration::from_secs_f64(secs.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_schedule_is_capped() {
        let p = RetryPolicy::exponential(Duration::from_millis(100))
            .max_attempts(6)
            .max_interval(Duration::from_millis(500));
        let waits: Vec<_> = (1..6)
            .map(|n| p.delay_after(n, 0.5).unwrap().as_millis())
            .collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
        assert_eq!(p.delay_after(6, 0.5), None);
    }

    #[test]
    fn fixed_and_none() {
        let p = RetryPolicy::fixed(Duration::from_secs(2)).max_attempts(3);
        assert_eq!(p.delay_after(1, 0.0), Some(Duration::from_secs(2)));
        assert_eq!(p.delay_after(2, 0.9), Some(Duration::from_secs(2)));
        assert_eq!(p.delay_after(3, 0.5), None);
        assert_eq!(RetryPolicy::none().delay_after(1, 0.5), None);
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let p = RetryPolicy::fixed(Duration::from_secs(10))
            .max_interval(Duration::from_secs(100))
            .jitter(0.2);
        assert_eq!(p.delay_after(1, 0.0), Some(Duration::from_secs(8)));
        assert_eq!(p.delay_after(1, 1.0), Some(Duration::from_secs(12)));
    }

    #[test]
    fn non_retryable_codes() {
        let p = RetryPolicy::default().non_retryable(["invalid_card"]);
        assert!(!p.retries_code(Some("invalid_card")));
        assert!(p.retries_code(Some("timeout")));
        assert!(p.retries_code(None));
    }
}
