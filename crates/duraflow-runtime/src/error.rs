//! Errors of the engine and the client.

use std::time::Duration;

use duraflow_core::Failure;
use duraflow_store::{CallbackStatus, StoreError};

/// An engine could not be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Two workflows or two activities were registered under one name.
    #[error("{kind} {name:?} is registered twice: give each a distinct name")]
    DuplicateName {
        /// `workflow` or `activity`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A setting is out of range.
    #[error("invalid engine option: {0}")]
    InvalidOption(String),
    /// No store was set. There is no default: a store that silently kept nothing across
    /// restarts would not be durable.
    #[error(
        "no store is set: give the engine one with EngineBuilder::store, e.g. \
         .store(SqliteStore::open(\"app.db\").await?) or .store(PostgresStore::connect(url).await?), \
         or configure it from DURAFLOW_DATABASE_URL with duraflow's from_env(); for a store that \
         keeps nothing across restarts (tests), choose .store(MemoryStore::new()) explicitly"
    )]
    NoStore,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An error from a [`crate::Client`] call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No workflow of that name is registered with this engine.
    #[error(
        "no workflow named {name:?} is registered with this engine (registered: {}); register \
         it with EngineBuilder::workflow before starting it",
        registered.join(", ")
    )]
    UnknownWorkflow {
        /// The name asked for.
        name: String,
        /// The names that are registered.
        registered: Vec<String>,
    },
    /// The input or event data could not be encoded.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// Why it failed.
        message: String,
    },
    /// No instance with that id.
    #[error("no instance with id {0:?}")]
    NotFound(String),
    /// An instance with that id exists and the start asked to fail in that case.
    #[error("an instance with id {0:?} already exists")]
    AlreadyExists(String),
    /// The instance has finished and takes no more messages.
    #[error("instance {id:?} has already finished ({status})")]
    InstanceFinished {
        /// The instance.
        id: String,
        /// Its final status.
        status: String,
    },
    /// The instance has not finished, so it cannot be purged.
    #[error(
        "instance {0:?} is still running and cannot be purged; cancel or terminate it first, \
         or wait for it to finish"
    )]
    InstanceRunning(String),
    /// The workflow failed; the failure says what failed and where.
    #[error("workflow failed: {0}")]
    WorkflowFailed(Failure),
    /// The workflow was cancelled.
    #[error("workflow cancelled: {}", .0.message)]
    Cancelled(Failure),
    /// The workflow was terminated.
    #[error("workflow terminated: {}", .0.message)]
    Terminated(Failure),
    /// The workflow had not finished when the wait timed out; it goes on running.
    #[error("instance {id:?} did not finish within {waited:?}; it is still running")]
    Timeout {
        /// The instance.
        id: String,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// The output could not be decoded into the requested type.
    #[error("cannot decode the output of instance {id:?}: {message}")]
    Decode {
        /// The instance.
        id: String,
        /// Why.
        message: String,
    },
    /// No open callback has the token given: it is unknown or forged, or the workflow that
    /// opened it has finished (or continued as new).
    #[error(
        "no open callback has this token: it is unknown or forged, or the workflow that opened \
         it has finished; check the token you were given"
    )]
    CallbackNotFound,
    /// The callback was already completed or failed, or has timed out: it takes no further
    /// results.
    #[error("{}", StoreError::CallbackClosed { status: *status })]
    CallbackClosed {
        /// How it was closed.
        status: CallbackStatus,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
