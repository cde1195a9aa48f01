//! How SQLite's errors become [`StoreError`]s that say what to do.

use duraflow_store::StoreError;
use rusqlite::ErrorCode;

/// Maps a SQLite error to a store error.
pub(crate) fn store_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, message) = &e {
        let detail = message.clone().unwrap_or_else(|| failure.to_string());
        return match failure.code {
            ErrorCode::DiskFull => StoreError::Full(format!(
                "SQLite could not write ({detail}); nothing of the failed write was kept"
            )),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Unavailable(
                format!("the database is locked by another connection or process ({detail})"),
            ),
            ErrorCode::NotADatabase => StoreError::Corrupt(format!(
                "the file is not a SQLite database ({detail}); point duraflow at a new path or \
                 at a duraflow database"
            )),
            ErrorCode::DatabaseCorrupt => StoreError::Corrupt(format!(
                "the database file is corrupt ({detail}); restore it from a backup"
            )),
            ErrorCode::CannotOpen => StoreError::Unavailable(format!(
                "cannot open the database file ({detail}); check that its directory exists and \
                 is writable"
            )),
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied => StoreError::Other(format!(
                "the database is read-only ({detail}); check the file's permissions"
            )),
            ErrorCode::SystemIoFailure => {
                StoreError::Unavailable(format!("I/O error on the database file ({detail})"))
            }
            _ => StoreError::Other(format!("SQLite error: {detail}")),
        };
    }
    StoreError::Other(format!("SQLite error: {e}"))
}

/// `Result` with SQLite's errors, for the statements inside an operation.
pub(crate) type SqlResult<T> = Result<T, OpError>;

/// An error inside an operation: a store error decided by the operation (a lost lease, say) or
/// a SQLite error.
#[derive(Debug)]
pub(crate) enum OpError {
    Store(StoreError),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Sql(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

impl From<OpError> for StoreError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Store(e) => e,
            OpError::Sql(e) => store_error(e),
        }
    }
}
