//! The registry: which workflow and activity names are served on which queue, as the engines
//! (and, later, workers in other languages) that serve them announce it.
//!
//! An engine announces what it registered, on each queue it serves, when it starts
//! ([`crate::Store::announce`]); the store keeps one row per kind, queue and name with the
//! latest time it was announced (`last_seen`). Processes that run no workflow code read it
//! ([`crate::Management::registrations`]): `duraflow serve` refuses to start a workflow that no
//! engine has announced on the queue, instead of leaving a pending instance nobody will run.
//! Rows are never removed: a name an engine stopped serving stays known, with its old
//! `last_seen`. A workflow's row also keeps the version of its latest announcement
//! ([`Registration::version`]).

use duraflow_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// What a registration names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisteredKind {
    /// A workflow: instances of it can be started on the queue.
    Workflow,
    /// An activity: its tasks on the queue are run.
    Activity,
}

impl RegisteredKind {
    /// `workflow` or `activity`, as stores keep it.
    pub fn as_str(self) -> &'static str {
        match self {
            RegisteredKind::Workflow => "workflow",
            RegisteredKind::Activity => "activity",
        }
    }

    /// The kind a store kept as [`RegisteredKind::as_str`].
    pub fn parse(s: &str) -> Option<RegisteredKind> {
        match s {
            "workflow" => Some(RegisteredKind::Workflow),
            "activity" => Some(RegisteredKind::Activity),
            _ => None,
        }
    }
}

/// One name served on one queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Registration {
    /// Workflow or activity.
    pub kind: RegisteredKind,
    /// The queue it is served on.
    pub queue: String,
    /// Its registered name.
    pub name: String,
    /// For a workflow, the version the announcing engine registered it with
    /// (`Workflow::VERSION`, `EngineBuilder::workflow_version`); `None` for activities and
    /// workflows registered without one. It does not identify the registration: a store keeps
    /// one row per kind, queue and name, with the version of its latest announcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Registration {
    /// A registration of `kind` for `name` on `queue`, without a version.
    pub fn new(kind: RegisteredKind, queue: impl Into<String>, name: impl Into<String>) -> Self {
        Registration {
            kind,
            queue: queue.into(),
            name: name.into(),
            version: None,
        }
    }

    /// The registration with `version`.
    pub fn with_version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }
}

/// A registration as a store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// What is served.
    #[serde(flatten)]
    pub registration: Registration,
    /// The latest time it was announced.
    pub last_seen: Timestamp,
}

/// The longest queue or name a registration may have, in bytes.
pub const MAX_REGISTERED_NAME_LEN: usize = 512;

/// Checks an announcement: no empty or overlong queue, name or version. Every store applies it.
pub fn validate_registrations(registrations: &[Registration]) -> Result<(), StoreError> {
    for r in registrations {
        let version = r.version.as_ref().map(|v| ("version", v));
        for (what, value) in [("queue", &r.queue), ("name", &r.name)]
            .into_iter()
            .chain(version)
        {
            if value.is_empty() || value.len() > MAX_REGISTERED_NAME_LEN {
                return Err(StoreError::Invalid(format!(
                    "a registered {} {what} must be 1 to {MAX_REGISTERED_NAME_LEN} bytes long, \
                     not {} bytes",
                    r.kind.as_str(),
                    value.len()
                )));
            }
        }
    }
    Ok(())
}
