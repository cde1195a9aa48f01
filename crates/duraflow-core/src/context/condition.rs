//! `wait_for_condition`: poll a check as a step, waiting on durable timers between polls, until
//! the check says done.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{StepContext, WorkflowContext};
use crate::error::{ActivityError, WorkflowError};
use crate::failure::{Failure, FailureKind};

/// What a condition check found: done, with the final state, or not yet, with the state to
/// carry to the next check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition<S> {
    /// The condition holds: stop and return this state.
    Done(S),
    /// Not yet: wait as the strategy says, then check again with this state.
    Continue(S),
}

/// How long to wait between the checks of a [`WorkflowContext::wait_for_condition`], and when
/// to give up.
///
/// The wait after check `n` is `min(initial * coefficient^(n-1), max_interval)`. The wait
/// gives up (failing with kind `condition_exhausted`) after `max_attempts` checks, or when the
/// next check would start after `max_total` from the first one.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitStrategy {
    initial: Duration,
    coefficient: f64,
    max_interval: Duration,
    max_attempts: Option<u32>,
    max_total: Option<Duration>,
}

impl WaitStrategy {
    /// The same wait after every check, with no limit.
    pub fn fixed(interval: Duration) -> Self {
        WaitStrategy {
            initial: interval,
            coefficient: 1.0,
            max_interval: interval,
            max_attempts: None,
            max_total: None,
        }
    }

    /// A wait that doubles after each check from `initial`, capped at 100 times `initial`,
    /// with no limit on checks.
    pub fn exponential(initial: Duration) -> Self {
        WaitStrategy {
            initial,
            coefficient: 2.0,
            max_interval: initial.saturating_mul(100),
            max_attempts: None,
            max_total: None,
        }
    }

    /// Sets the growth factor (values below 1.0 mean 1.0).
    pub fn coefficient(mut self, coefficient: f64) -> Self {
        self.coefficient = if coefficient.is_finite() {
            coefficient.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Caps the wait between checks.
    pub fn max_interval(mut self, cap: Duration) -> Self {
        self.max_interval = cap;
        self
    }

    /// Gives up after this many checks (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Gives up when the next check would start more than `limit` after the first.
    pub fn max_total(mut self, limit: Duration) -> Self {
        self.max_total = Some(limit);
        self
    }

    /// The wait after check `attempt` (1 for the first), `elapsed` after the first check
    /// began; `None` when the strategy gives up instead.
    pub fn delay_after(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| attempt >= max) {
            return None;
        }
        let exponent = attempt.saturating_sub(1).min(1_000) as i32;
        let secs = (self.initial.as_secs_f64() * self.coefficient.powi(exponent))
            .min(self.max_interval.as_secs_f64());
        let delay = Duration::from_secs_f64(secs.max(0.0));
        if self
            .max_total
            .is_some_and(|limit| elapsed.saturating_add(delay) > limit)
        {
            return None;
        }
        Some(delay)
    }
}

/// The body of a `wait_for_condition` context.
pub(super) async fn poll_condition<S, F, Fut>(
    ctx: WorkflowContext,
    name: String,
    initial: S,
    check: Arc<F>,
    strategy: WaitStrategy,
) -> Result<S, WorkflowError>
where
    S: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F: Fn(S, StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Condition<S>, ActivityError>> + Send + 'static,
{
    let first = ctx.now();
    let mut state = initial;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let (check, carried) = (check.clone(), state.clone());
        let found: Condition<S> = ctx
            .step("check", move |step| check(carried.clone(), step))
            .await?;
        state = match found {
            Condition::Done(s) => return Ok(s),
            Condition::Continue(s) => s,
        };
        let elapsed = Duration::from_millis(
            u64::try_from(ctx.now().as_millis() - first.as_millis()).unwrap_or(0),
        );
        let Some(delay) = strategy.delay_after(attempt, elapsed) else {
            return Err(WorkflowError::Context(Failure::new(
                FailureKind::ConditionExhausted,
                format!(
                    "wait_for_condition {name:?} gave up after {attempt} checks ({elapsed:?}) \
                     without its condition holding"
                ),
            )));
        };
        ctx.sleep(delay).await?;
    }
}
