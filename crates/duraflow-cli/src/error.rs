//! What went wrong, and the exit code it gives.

use std::fmt;

use duraflow::ClientError;

/// Exit code of an operational error.
pub(crate) const EXIT_OPERATIONAL: u8 = 1;
/// Exit code of a usage error (as clap's own).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code of an unknown instance id.
pub(crate) const EXIT_NOT_FOUND: u8 = 3;

/// An error to print on stderr, with its exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    code: u8,
    message: String,
}

impl CliError {
    /// An operational error (exit code 1).
    pub(crate) fn operational(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_OPERATIONAL,
            message: message.into(),
        }
    }

    /// A usage error (exit code 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// Something asked for does not exist (exit code 3).
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_NOT_FOUND,
            message: message.into(),
        }
    }

    /// The exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::NotFound(id) => CliError {
                code: EXIT_NOT_FOUND,
                message: format!(
                    "no instance with id {id:?}; `duraflow list` shows the instances there are"
                ),
            },
            ClientError::InstanceFinished { id, status } => CliError::operational(format!(
                "instance {id:?} has already finished ({status}) and takes no more events, \
                 cancellations or terminations"
            )),
            ClientError::Store(e) => CliError::operational(format!(
                "the store failed: {e}; check that the database is reachable and try again"
            )),
            other => CliError::operational(other.to_string()),
        }
    }
}
