//! Store errors.

use duraflow_core::EventDecodeError;

use crate::types::{CallbackStatus, TaskId};

/// An error from a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot be reached or did not answer; the engine retries with backoff.
    #[error("store unavailable: {0}; duraflow retries until it is reachable again")]
    Unavailable(String),
    /// The database refused a write for lack of space.
    #[error("store is full: {0}; free space on the volume that holds the database")]
    Full(String),
    /// The lease behind this call has expired or was taken over: the work was handed to another
    /// worker and this result is discarded.
    #[error("lease lost on {what}: it expired or was taken over, so this result is discarded")]
    LeaseLost {
        /// What the lease was on (an instance or a task).
        what: String,
    },
    /// No such instance (or task).
    #[error("{0} not found")]
    NotFound(String),
    /// The instance already exists.
    #[error("instance {0:?} already exists")]
    AlreadyExists(String),
    /// The instance has finished; it takes no more messages.
    #[error("instance {id:?} has already finished ({status}); it takes no more messages")]
    InstanceFinished {
        /// The instance.
        id: String,
        /// Its final status.
        status: String,
    },
    /// The instance is still running, so the operation (such as purge) is refused.
    #[error("instance {0:?} is still running: cancel or terminate it first")]
    InstanceRunning(String),
    /// No open callback has this token.
    #[error(
        "no open callback has this token: it is unknown, forged, or its workflow has finished \
         (or moved on to a new execution)"
    )]
    CallbackNotFound,
    /// The callback has already been resolved or has timed out; this resolution is refused.
    #[error("{}", callback_closed(*status))]
    CallbackClosed {
        /// How it was closed.
        status: CallbackStatus,
    },
    /// A stored journal event could not be read.
    #[error(
        "instance {instance_id:?}, execution {execution}, journal position {position}: {error}"
    )]
    CorruptJournal {
        /// The instance.
        instance_id: String,
        /// The execution.
        execution: u32,
        /// The event's position in the journal.
        position: usize,
        /// How many events the journal holds, readable or not.
        journal_len: usize,
        /// What was wrong with it.
        error: EventDecodeError,
    },
    /// Some other stored data could not be read.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The database was written by a newer schema version than this build understands.
    #[error(
        "the database schema is version {found} but this build of duraflow supports up to \
         version {supported}: upgrade duraflow, or point it at another database"
    )]
    NewerSchema {
        /// The version found in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A call's arguments were not valid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Anything else the backend reported.
    #[error("store error: {0}")]
    Other(String),
}

impl StoreError {
    /// Whether trying again later may succeed (the database was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// [`StoreError::NotFound`] for instance `id`.
    pub fn instance_not_found(id: &str) -> Self {
        StoreError::NotFound(format!("instance {id:?}"))
    }

    /// [`StoreError::LeaseLost`] on instance `id`: the turn's lease expired or was taken over
    /// (or the journal moved on since the turn read it).
    pub fn instance_lease_lost(id: &str) -> Self {
        StoreError::LeaseLost {
            what: format!("instance {id:?}"),
        }
    }

    /// [`StoreError::NotFound`] for task `id`.
    pub fn task_not_found(id: TaskId) -> Self {
        StoreError::NotFound(format!("task {}", id.0))
    }

    /// [`StoreError::LeaseLost`] on task `id`: its lease expired or was taken over.
    pub fn task_lease_lost(id: TaskId) -> Self {
        StoreError::LeaseLost {
            what: format!("task {}", id.0),
        }
    }

    /// [`StoreError::NotFound`] for the journal of execution `execution` of instance `id`,
    /// whose executions are 1 to `current`.
    pub fn execution_not_found(id: &str, execution: u32, current: u32) -> Self {
        StoreError::NotFound(format!(
            "execution {execution} of instance {id:?} (it has {current})"
        ))
    }
}

/// `Result` with [`StoreError`].
pub type StoreResult<T, E = StoreError> = std::result::Result<T, E>;

/// The message of [`StoreError::CallbackClosed`].
fn callback_closed(status: CallbackStatus) -> String {
    let what = match status {
        CallbackStatus::Open => "is still open",
        CallbackStatus::Completed => "has already completed",
        CallbackStatus::Failed => "has already failed",
        CallbackStatus::TimedOut => "has timed out",
    };
    format!("the callback {what}; it takes no further results")
}
