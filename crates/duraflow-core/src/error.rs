//! The errors workflow and activity code returns and receives.

use std::fmt;
use std::time::Duration;

use crate::failure::{Failure, FailureKind};
use crate::op_id::OpId;
use crate::payload::PayloadError;

/// The error of a workflow, and of every durable operation a workflow awaits.
///
/// Operations hand their failures to the workflow as this type, so `?` propagates an activity's
/// failure out of the workflow and the instance's status keeps what failed and where. Any other
/// error (`serde_json::Error`, `std::io::Error`, an error type of your own) converts with `?`
/// too and fails the workflow as an [`WorkflowError::Application`] error carrying its message.
/// (So that it can, `WorkflowError` itself does not implement `std::error::Error`, like
/// `anyhow::Error`; it implements `Display` and `Debug`.)
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WorkflowError {
    /// An activity failed terminally or used up its retries.
    Activity(Failure),
    /// An inline step failed.
    Step(Failure),
    /// A child workflow failed, was cancelled or was terminated.
    Child(Failure),
    /// A callback failed: its external party said so, or it timed out. The failure carries
    /// the external party's code and message verbatim.
    Callback(Failure),
    /// A child context's body (a map item, a parallel branch) failed; the failure is the
    /// body's own, as recorded.
    Context(Failure),
    /// A wait ran out of time.
    Timeout(String),
    /// The instance is being cancelled.
    Cancelled,
    /// The workflow code no longer matches its journal.
    Nondeterminism(Nondeterminism),
    /// A value could not be encoded or decoded.
    Payload(String),
    /// The workflow code panicked; the message says where.
    Panic(String),
    /// An error raised by the workflow's own logic.
    Application {
        /// A message for a person.
        message: String,
        /// An optional machine-readable code.
        code: Option<String>,
    },
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkflowError::Activity(failure) => write!(f, "activity failed: {failure}"),
            WorkflowError::Step(failure) => write!(f, "step failed: {failure}"),
            WorkflowError::Child(failure) => write!(f, "child workflow failed: {failure}"),
            WorkflowError::Context(failure) | WorkflowError::Callback(failure) => {
                write!(f, "{failure}")
            }
            WorkflowError::Timeout(m) => write!(f, "timed out: {m}"),
            WorkflowError::Cancelled => f.write_str("cancelled"),
            WorkflowError::Nondeterminism(nd) => write!(f, "{nd}"),
            WorkflowError::Payload(m) => write!(f, "payload error: {m}"),
            WorkflowError::Panic(m) => f.write_str(m),
            WorkflowError::Application { message, .. } => f.write_str(message),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for WorkflowError {
    /// Any error becomes an application error with its message; a [`Nondeterminism`] and a
    /// [`PayloadError`] keep their own kinds.
    fn from(e: E) -> Self {
        let any: &(dyn std::error::Error + 'static) = &e;
        if let Some(nd) = any.downcast_ref::<Nondeterminism>() {
            return WorkflowError::Nondeterminism(nd.clone());
        }
        if let Some(p) = any.downcast_ref::<PayloadError>() {
            return WorkflowError::Payload(p.0.clone());
        }
        WorkflowError::application(e)
    }
}

impl WorkflowError {
    /// An application error with a message.
    pub fn application(message: impl fmt::Display) -> Self {
        WorkflowError::Application {
            message: message.to_string(),
            code: None,
        }
    }

    /// An application error with a message and a machine-readable code.
    pub fn application_with_code(message: impl fmt::Display, code: impl Into<String>) -> Self {
        WorkflowError::Application {
            message: message.to_string(),
            code: Some(code.into()),
        }
    }

    /// How this error is recorded in the journal and the instance's status.
    pub fn to_failure(&self) -> Failure {
        match self {
            WorkflowError::Activity(f)
            | WorkflowError::Step(f)
            | WorkflowError::Context(f)
            | WorkflowError::Callback(f) => f.clone(),
            WorkflowError::Child(f) => {
                let mut out = f.clone();
                if !matches!(f.kind, FailureKind::Cancelled | FailureKind::Terminated) {
                    out.kind = FailureKind::ChildFailed;
                }
                out
            }
            WorkflowError::Timeout(m) => Failure::new(FailureKind::Timeout, m.clone()),
            WorkflowError::Cancelled => Failure::new(FailureKind::Cancelled, "cancelled"),
            WorkflowError::Nondeterminism(n) => {
                let mut f = Failure::new(FailureKind::Nondeterminism, n.detail())
                    .with_code(Some(n.code().to_owned()));
                f.op = n.op.clone();
                f
            }
            WorkflowError::Payload(m) => Failure::new(FailureKind::Payload, m.clone()),
            WorkflowError::Panic(m) => Failure::new(FailureKind::Panic, m.clone()),
            WorkflowError::Application { message, code } => {
                Failure::new(FailureKind::Application, message.clone()).with_code(code.clone())
            }
        }
    }
}

/// The workflow code asked for something other than what its journal recorded at this point.
///
/// Replay must reproduce the journal exactly; when it does not, the instance fails with this error
/// rather than continuing on a different path. Fix it by deploying code that matches the running
/// instances (or by versioning the workflow under a new name) and starting them again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nondeterminism [{}] {}", self.code(), self.detail())]
pub struct Nondeterminism {
    /// The journal position (index of the event in the execution's journal).
    pub position: usize,
    /// The recorded event, described.
    pub recorded: String,
    /// What the code asked for, described.
    pub requested: String,
    /// The operation concerned, if known.
    pub op: Option<OpId>,
    /// How the code and the journal differ.
    pub mismatch: Mismatch,
}

/// How workflow code and its journal differ, each with a stable code that failures carry (in
/// [`Failure::code`]) for tools and searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// `DF1001`: the code asked for another operation (another type, name or id) than the one
    /// recorded at this position.
    Changed,
    /// `DF1002`: the code asked for an operation where the journal recorded a delivery first
    /// (an added operation, or operations in a different order).
    Added,
    /// `DF1003`: the journal recorded an operation the code did not ask for (a removed
    /// operation, or operations in a different order).
    Removed,
    /// `DF1004`: the journal recorded a delivery the code cannot take: a result for an
    /// operation it did not ask for or of another kind, a duplicate, a second start.
    Unexpected,
}

impl Mismatch {
    /// The stable code: `DF1001` (changed), `DF1002` (added), `DF1003` (removed), `DF1004`
    /// (unexpected delivery).
    pub fn code(self) -> &'static str {
        match self {
            Mismatch::Changed => "DF1001",
            Mismatch::Added => "DF1002",
            Mismatch::Removed => "DF1003",
            Mismatch::Unexpected => "DF1004",
        }
    }
}

impl Nondeterminism {
    /// The stable code of the mismatch (see [`Mismatch`]).
    pub fn code(&self) -> &'static str {
        self.mismatch.code()
    }

    /// Where and how the code and the journal differ, and what it means.
    pub fn detail(&self) -> String {
        format!(
            "at journal position {}: the journal recorded {} but the workflow code {}; the code \
             changed in a way that is not compatible with running instances",
            self.position, self.recorded, self.requested
        )
    }
}

/// The error an activity or an inline step returns.
///
/// Any `std::error::Error` converts into a retryable `ActivityError` with `?`; mark an error that
/// retrying cannot fix with [`ActivityError::terminal`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActivityError {
    /// A failure that another attempt may fix (the default).
    Retryable {
        /// A message for a person.
        message: String,
        /// An optional machine-readable code, matched by `RetryPolicy::non_retryable`.
        code: Option<String>,
        /// The earliest the next attempt may start, counted from the failure, when the
        /// failing call said (a 429 or 503 with `Retry-After`); see
        /// [`ActivityError::retry_after`].
        retry_after: Option<Duration>,
    },
    /// A failure that retrying cannot fix: the activity fails at once.
    Terminal {
        /// A message for a person.
        message: String,
        /// An optional machine-readable code.
        code: Option<String>,
    },
    /// The activity stopped because it was cancelled.
    Cancelled,
}

impl ActivityError {
    /// A retryable error.
    pub fn retryable(message: impl fmt::Display) -> Self {
        ActivityError::Retryable {
            message: message.to_string(),
            code: None,
            retry_after: None,
        }
    }

    /// A terminal error: no further attempts are made.
    pub fn terminal(message: impl fmt::Display) -> Self {
        ActivityError::Terminal {
            message: message.to_string(),
            code: None,
        }
    }

    /// Attaches a machine-readable code.
    pub fn with_code(self, code: impl Into<String>) -> Self {
        match self {
            ActivityError::Retryable {
                message,
                retry_after,
                ..
            } => ActivityError::Retryable {
                message,
                code: Some(code.into()),
                retry_after,
            },
            ActivityError::Terminal { message, .. } => ActivityError::Terminal {
                message,
                code: Some(code.into()),
            },
            ActivityError::Cancelled => ActivityError::Cancelled,
        }
    }

    /// Asks for the next attempt to start no sooner than `after` from now, instead of the
    /// retry policy's backoff (as a server's `Retry-After` says). It takes the place of the
    /// computed wait only when the policy allows another attempt; it is recorded in the
    /// attempt's [`Failure::retry_after_ms`]. No effect on a terminal error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use duraflow_core::ActivityError;
    ///
    /// let e = ActivityError::retryable("429 Too Many Requests").retry_after(Duration::from_secs(30));
    /// assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(30)));
    /// assert_eq!(ActivityError::terminal("no").retry_after(Duration::from_secs(1)).retry_after_hint(), None);
    /// ```
    pub fn retry_after(self, after: Duration) -> Self {
        match self {
            ActivityError::Retryable { message, code, .. } => ActivityError::Retryable {
                message,
                code,
                retry_after: Some(after),
            },
            other => other,
        }
    }

    /// The wait asked for with [`ActivityError::retry_after`], if any.
    pub fn retry_after_hint(&self) -> Option<Duration> {
        match self {
            ActivityError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether another attempt may be made.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ActivityError::Retryable { .. })
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            ActivityError::Retryable { message, .. } | ActivityError::Terminal { message, .. } => {
                message
            }
            ActivityError::Cancelled => "cancelled",
        }
    }

    /// The code, if one was attached.
    pub fn code(&self) -> Option<&str> {
        match self {
            ActivityError::Retryable { code, .. } | ActivityError::Terminal { code, .. } => {
                code.as_deref()
            }
            ActivityError::Cancelled => None,
        }
    }
}

impl fmt::Display for ActivityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivityError::Retryable { message, .. } => write!(f, "{message}"),
            ActivityError::Terminal { message, .. } => write!(f, "{message} (terminal)"),
            ActivityError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl<E: std::error::Error> From<E> for ActivityError {
    fn from(e: E) -> Self {
        ActivityError::retryable(e)
    }
}
