//! What a start sets for a whole instance besides its input: priority, concurrency key,
//! headers, a retry policy for the workflow and a cancellation policy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;
use crate::time::serde_millis;

/// The options of an instance, set when it is started and kept through continue-as-new.
///
/// The store keeps them with the instance and enforces the ones that decide who runs what
/// (`priority`, `concurrency_key`); the engine applies the others.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceOptions {
    /// Higher runs first among the due work of its queue (FIFO among equals). Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Instances that share a key share the queue's per-key concurrency limit (by default at
    /// most one of them runs at a time); `None` is limited by the queue's limit only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// String metadata, readable in the workflow (`ctx.headers()`) and shown by status.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Retries the whole workflow when it fails with a retryable error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Cancels the instance automatically when it waits or runs too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<CancellationPolicy>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl InstanceOptions {
    /// Every option at its default, as a constant (for a `&'static InstanceOptions`).
    pub const DEFAULT: InstanceOptions = InstanceOptions {
        priority: 0,
        concurrency_key: None,
        headers: BTreeMap::new(),
        retry: None,
        cancellation: None,
    };

    /// Whether every option has its default (nothing to store).
    pub fn is_default(&self) -> bool {
        *self == InstanceOptions::default()
    }
}

/// When an instance is cancelled automatically, as a client's cancel would (its children and
/// activities are cancelled too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationPolicy {
    /// Cancel it if its first turn has not run within this long of the time it became due (its
    /// creation, or the end of its start delay).
    #[serde(
        default,
        with = "serde_millis::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_pending: Option<Duration>,
    /// Cancel it if it is still running this long after its first turn.
    #[serde(
        default,
        with = "serde_millis::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_duration: Option<Duration>,
}

impl CancellationPolicy {
    /// No automatic cancellation.
    pub fn new() -> Self {
        CancellationPolicy::default()
    }

    /// Cancel if not started within `d` of becoming due.
    #[must_use]
    pub fn max_pending(mut self, d: Duration) -> Self {
        self.max_pending = Some(d);
        self
    }

    /// Cancel if still running `d` after starting.
    #[must_use]
    pub fn max_duration(mut self, d: Duration) -> Self {
        self.max_duration = Some(d);
        self
    }
}
