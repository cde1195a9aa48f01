//! Opening the store named by `--db` or `DURAFLOW_DATABASE_URL`, with `duraflow::env`'s
//! parsing, and a [`Client`] on it alone.

use std::sync::Arc;

use duraflow::env::{DatabaseUrl, EnvError, DATABASE_URL};
use duraflow::{Client, Store};

use crate::error::CliError;

/// The store named by `db`, or else by `DURAFLOW_DATABASE_URL`, parsed, and where it came
/// from (for messages). A memory store is refused: it holds nothing here.
pub(crate) fn database(db: Option<&str>) -> Result<(DatabaseUrl, &'static str), CliError> {
    let (url, from) = match db {
        Some(url) => (url.to_owned(), "--db"),
        None => match std::env::var(DATABASE_URL) {
            Ok(url) if !url.trim().is_empty() => (url, DATABASE_URL),
            _ => {
                return Err(CliError::usage(format!(
                    "no store given: pass --db URL or set {DATABASE_URL} (sqlite:PATH or \
                     postgres://USER:PASSWORD@HOST:PORT/DATABASE)"
                )))
            }
        },
    };
    let database = DatabaseUrl::parse(&url).map_err(|e| parse_error(e, from))?;
    if let DatabaseUrl::Memory = database {
        return Err(CliError::usage(format!(
            "{from} names memory:, a store that lives inside one process and holds nothing \
             here; give the sqlite:PATH or postgres://.. URL your engine uses"
        )));
    }
    Ok((database, from))
}

/// A client on the store named by `db`, or else by `DURAFLOW_DATABASE_URL` (see [`store`]).
pub(crate) async fn client(db: Option<&str>) -> Result<Client, CliError> {
    Ok(Client::new(store(db).await?))
}

/// The store named by `db`, or else by `DURAFLOW_DATABASE_URL`. A SQLite file must exist
/// already: the CLI operates an engine's database (`migrate` creates one).
pub(crate) async fn store(db: Option<&str>) -> Result<Arc<dyn Store>, CliError> {
    let (database, from) = database(db)?;
    if let DatabaseUrl::Sqlite(path) = &database {
        if !path.exists() {
            return Err(CliError::operational(format!(
                "no SQLite database at {} (from {from}); check the path: the CLI opens an \
                 engine's existing database and does not create one (`duraflow migrate` does)",
                path.display()
            )));
        }
    }
    database.open().await.map_err(|e| open_error(e, from))
}

/// An error opening (or reading the schema of) the store named by `from`.
pub(crate) fn open_error(e: EnvError, from: &str) -> CliError {
    match e {
        EnvError::Open { url, source, .. } => CliError::operational(format!(
            "cannot open the store {url} (from {from}): {source}; check the URL and that the \
             database is reachable"
        )),
        other => CliError::operational(other.to_string()),
    }
}

fn parse_error(e: EnvError, from: &str) -> CliError {
    match e {
        EnvError::Invalid {
            value, expected, ..
        } => CliError::usage(format!(
            "{from} value {value:?} is not a store URL: {expected}"
        )),
        EnvError::BackendNotCompiled {
            backend, feature, ..
        } => CliError::usage(format!(
            "{from} names a {backend} store, but this duraflow binary was built without it: \
             rebuild duraflow-cli with the `{feature}` feature"
        )),
        other => CliError::usage(format!("{from}: {other}")),
    }
}
