//! How a failure is recorded: in the journal, in an instance's status, and between instances.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::op_id::OpId;

/// What kind of failure a [`Failure`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// Returned by user code (workflow, activity or step) as its own error.
    Application,
    /// An activity failed with an error marked terminal (not to be retried).
    ActivityTerminal,
    /// An activity failed on every attempt its retry policy allowed.
    RetriesExhausted,
    /// An operation ran out of time (an activity's timeout, a wait's timeout).
    Timeout,
    /// An activity's last allowed attempt ended without reporting anything: its lease expired
    /// because the worker running it died, was stopped without handing it back, or blocked
    /// its thread so that the lease could not be renewed.
    LeaseExpired,
    /// An activity's attempt sent no heartbeat within the heartbeat timeout it was scheduled
    /// with (its start counts as one). Such an attempt is retried under the activity's retry
    /// policy; this is also the kind of the final failure when the last attempt allowed ended
    /// this way.
    HeartbeatTimedOut,
    /// An at-most-once step's attempt was interrupted: the process stopped while it ran, and
    /// it is not run again.
    StepInterrupted,
    /// A `wait_for_condition` ran out of polls or time before its check said done.
    ConditionExhausted,
    /// The work was cancelled.
    Cancelled,
    /// The instance was terminated.
    Terminated,
    /// The workflow code no longer matches its journal.
    Nondeterminism,
    /// An input or output could not be encoded or decoded.
    Payload,
    /// No workflow with the requested name is registered.
    UnknownWorkflow,
    /// No activity with the requested name is registered.
    UnknownActivity,
    /// A child workflow failed.
    ChildFailed,
    /// User code panicked.
    Panic,
    /// The engine could not carry on (a corrupt journal, for example).
    Internal,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FailureKind::Application => "application",
            FailureKind::ActivityTerminal => "activity_terminal",
            FailureKind::RetriesExhausted => "retries_exhausted",
            FailureKind::Timeout => "timeout",
            FailureKind::LeaseExpired => "lease_expired",
            FailureKind::HeartbeatTimedOut => "heartbeat_timed_out",
            FailureKind::StepInterrupted => "step_interrupted",
            FailureKind::ConditionExhausted => "condition_exhausted",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Terminated => "terminated",
            FailureKind::Nondeterminism => "nondeterminism",
            FailureKind::Payload => "payload",
            FailureKind::UnknownWorkflow => "unknown_workflow",
            FailureKind::UnknownActivity => "unknown_activity",
            FailureKind::ChildFailed => "child_failed",
            FailureKind::Panic => "panic",
            FailureKind::Internal => "internal",
        };
        f.write_str(s)
    }
}

/// A recorded failure: what went wrong, where, and the message to show a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// A message for a person.
    pub message: String,
    /// An error code chosen by user code (see `ActivityError::with_code`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The activity (or step, or child workflow) that failed, if the failure came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The operation that failed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<OpId>,
    /// How many attempts were made, for activities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The wait before another attempt that the failing code asked for, in milliseconds
    /// (`ActivityError::retry_after`, kept between 1 ms and `u32::MAX` ms, about 49 days;
    /// non-zero so that a `Failure` stays as small as it was); `None` when it asked for none.
    /// Journals written before it existed decode with `None`. [`Failure::retry_after`] reads
    /// it as a `Duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<std::num::NonZeroU32>,
}

impl Failure {
    /// A failure of `kind` with `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            code: None,
            source: None,
            op: None,
            attempts: None,
            retry_after_ms: None,
        }
    }

    /// Names the operation and what ran it.
    pub fn at(mut self, source: impl Into<String>, op: &OpId) -> Self {
        self.source = Some(source.into());
        self.op = Some(op.clone());
        self
    }

    /// Records the number of attempts.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = Some(attempts);
        self
    }

    /// Records the wait before another attempt that the failing code asked for.
    pub fn with_retry_after(mut self, after: Option<std::time::Duration>) -> Self {
        self.retry_after_ms = after.and_then(|d| {
            let ms = u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
            std::num::NonZeroU32::new(ms.max(1))
        });
        self
    }

    /// The wait before another attempt that the failing code asked for, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after_ms
            .map(|ms| std::time::Duration::from_millis(u64::from(ms.get())))
    }

    /// Records a user-chosen error code.
    pub fn with_code(mut self, code: Option<String>) -> Self {
        self.code = code;
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(source) = &self.source {
            write!(f, " in {source}")?;
        }
        if let Some(op) = &self.op {
            write!(f, " (operation {op})")?;
        }
        if let Some(attempts) = self.attempts {
            write!(f, " after {attempts} attempt(s)")?;
        }
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    const ALL: [FailureKind; 16] = [
        FailureKind::Application,
        FailureKind::ActivityTerminal,
        FailureKind::RetriesExhausted,
        FailureKind::Timeout,
        FailureKind::LeaseExpired,
        FailureKind::StepInterrupted,
        FailureKind::ConditionExhausted,
        FailureKind::Cancelled,
        FailureKind::Terminated,
        FailureKind::Nondeterminism,
        FailureKind::Payload,
        FailureKind::UnknownWorkflow,
        FailureKind::UnknownActivity,
        FailureKind::ChildFailed,
        FailureKind::Panic,
        FailureKind::Internal,
    ];

    #[test]
    fn every_kind_serializes_as_its_display_name_and_back() {
        for kind in ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<FailureKind>(&json).unwrap(), kind);
        }
        assert_eq!(FailureKind::LeaseExpired.to_string(), "lease_expired");
    }

    #[test]
    fn failures_written_before_lease_expired_existed_still_decode() {
        let old = r#"{"kind":"retries_exhausted","message":"db down","source":"activity \"charge\"","op":"1","attempts":3}"#;
        let failure: Failure = serde_json::from_str(old).unwrap();
        assert_eq!(failure.kind, FailureKind::RetriesExhausted);
        assert_eq!(failure.attempts, Some(3));
        let new = Failure::new(FailureKind::LeaseExpired, "lost").with_attempts(3);
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.contains(r#""kind":"lease_expired""#), "{json}");
        assert_eq!(serde_json::from_str::<Failure>(&json).unwrap(), new);
    }
}
