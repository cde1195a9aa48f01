//! How PostgreSQL's and sqlx's errors become [`StoreError`]s that say what to do.

use duraflow_store::StoreError;

/// Maps a sqlx error to a store error.
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message().to_owned();
            match code.as_str() {
                "28P01" => StoreError::Other(format!(
                    "PostgreSQL refused the password ({message}); check the user and password in \
                     the connection URL"
                )),
                "28000" => StoreError::Other(format!(
                    "PostgreSQL refused the login ({message}); check the user in the connection URL \
                     and pg_hba.conf"
                )),
                "3D000" => StoreError::Other(format!(
                    "{message}; create the database (createdb) or fix the database name in the \
                     connection URL"
                )),
                "53100" => StoreError::Full(format!("PostgreSQL is out of disk space ({message})")),
                // Connection exceptions, shutdowns, serialization failures, deadlocks, too many
                // connections: all pass, and the engine retries.
                c if c.starts_with("08")
                    || c.starts_with("57P")
                    || c == "40001"
                    || c == "40P01"
                    || c == "53300" =>
                {
                    StoreError::Unavailable(format!("PostgreSQL: {message} ({code})"))
                }
                _ => StoreError::Other(format!("PostgreSQL error {code}: {message}")),
            }
        }
        sqlx::Error::Io(io) => StoreError::Unavailable(format!(
            "cannot reach PostgreSQL ({io}); check that the server is running and the host and \
             port in the URL"
        )),
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(
            "timed out waiting for a PostgreSQL connection (is the server reachable?)".into(),
        ),
        sqlx::Error::PoolClosed => StoreError::Unavailable("the PostgreSQL pool is closed".into()),
        sqlx::Error::Tls(t) => {
            StoreError::Unavailable(format!("TLS error talking to PostgreSQL: {t}"))
        }
        sqlx::Error::Protocol(p) => {
            StoreError::Unavailable(format!("PostgreSQL protocol error: {p}"))
        }
        sqlx::Error::Configuration(c) => StoreError::Invalid(format!(
            "invalid PostgreSQL connection URL or option: {c}; expected \
             postgres://user:password@host:port/database"
        )),
        sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable("the PostgreSQL connection worker stopped".into())
        }
        _ => StoreError::Other(format!("PostgreSQL: {e}")),
    }
}

/// An error inside an operation: a store error decided by the operation or a sqlx error.
#[derive(Debug)]
pub(crate) enum OpError {
    Store(StoreError),
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for OpError {
    fn from(e: sqlx::Error) -> Self {
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

/// `Result` for the statements inside an operation.
pub(crate) type OpResult<T> = Result<T, OpError>;
