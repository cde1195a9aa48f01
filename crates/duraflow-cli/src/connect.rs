//! Opening the store named by `--db` or `DURAFLOW_DATABASE_URL`, with `duraflow::env`'s
//! parsing, and a [`Client`] on it alone.

use duraflow::env::{DatabaseUrl, EnvError, DATABASE_URL};
use std::sync::Arc;

use duraflow::{Client, Store};

use crate::error::CliError;

/// A client on the store named by `db`, or else by `DURAFLOW_DATABASE_URL`.
pub(crate) async fn client(db: Option<&str>) -> Result<Client, CliError> {
    Ok(Client::new(store(db).await?))
}

/// The store named by `db`, or else by `DURAFLOW_DATABASE_URL`.
pub(crate) async fn store(db: Option<&str>) -> Result<Arc<dyn Store>, CliError> {
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
    match &database {
        DatabaseUrl::Memory => {
            return Err(CliError::usage(format!(
                "{from} names memory:, a store that lives inside one process and holds nothing \
                 here; give the sqlite:PATH or postgres://.. URL your engine uses"
            )))
        }
        DatabaseUrl::Sqlite(path) if !path.exists() => {
            return Err(CliError::operational(format!(
                "no SQLite database at {} (from {from}); check the path: the CLI opens an \
                 engine's existing database and does not create one",
                path.display()
            )))
        }
        _ => {}
    }
    let store = database.open().await.map_err(|e| match e {
        EnvError::Open { url, source, .. } => CliError::operational(format!(
            "cannot open the store {url} (from {from}): {source}; check the URL and that the \
             database is reachable"
        )),
        other => CliError::operational(other.to_string()),
    })?;
    Ok(store)
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
