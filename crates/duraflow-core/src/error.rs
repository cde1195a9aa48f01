//! The errors workflow and activity code returns and receives.

use std::fmt;

use crate::failure::{Failure, FailureKind};
use crate::op_id::OpId;

/// The error of a workflow, and of every durable operation a workflow awaits.
///
/// Operations hand their failures to the workflow as this type, so `?` propagates an activity's
/// failure out of the workflow and the instance's status keeps what failed and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// An activity failed terminally or used up its retries.
    #[error("activity failed: {0}")]
    Activity(Failure),
    /// An inline step failed.
    #[error("step failed: {0}")]
    Step(Failure),
    /// A child workflow failed, was cancelled or was terminated.
    #[error("child workflow failed: {0}")]
    Child(Failure),
    /// A wait ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The instance is being cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The workflow code no longer matches its journal.
    #[error(transparent)]
    Nondeterminism(#[from] Nondeterminism),
    /// A value could not be encoded or decoded.
    #[error("payload error: {0}")]
    Payload(String),
    /// The workflow code panicked; the message says where.
    #[error("{0}")]
    Panic(String),
    /// An error raised by the workflow's own logic.
    #[error("{message}")]
    Application {
        /// A message for a person.
        message: String,
        /// An optional machine-readable code.
        code: Option<String>,
    },
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
            WorkflowError::Activity(f) | WorkflowError::Step(f) => f.clone(),
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
                let mut f = Failure::new(FailureKind::Nondeterminism, n.to_string());
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
#[error(
    "nondeterminism at journal position {position}: the journal recorded {recorded} but the \
     workflow code {requested}; the code changed in a way that is not compatible with running \
     instances"
)]
pub struct Nondeterminism {
    /// The journal position (index of the event in the execution's journal).
    pub position: usize,
    /// The recorded event, described.
    pub recorded: String,
    /// What the code asked for, described.
    pub requested: String,
    /// The operation concerned, if known.
    pub op: Option<OpId>,
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
            ActivityError::Retryable { message, .. } => ActivityError::Retryable {
                message,
                code: Some(code.into()),
            },
            ActivityError::Terminal { message, .. } => ActivityError::Terminal {
                message,
                code: Some(code.into()),
            },
            ActivityError::Cancelled => ActivityError::Cancelled,
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
