//! Configuration from the environment: the store from `DURAFLOW_DATABASE_URL`, the engine's
//! concurrency from `DURAFLOW_WORKFLOW_CONCURRENCY` and `DURAFLOW_ACTIVITY_CONCURRENCY`, and
//! the queues it serves from `DURAFLOW_QUEUES` (comma-separated).
//!
//! ```no_run
//! use duraflow::prelude::*;
//!
//! async fn greet(_ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
//!     Ok(format!("hello, {name}"))
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // DURAFLOW_DATABASE_URL=sqlite:app.db (or postgres://user:pass@host/db, or memory:)
//! let engine = Engine::builder()
//!     .from_env()
//!     .await?
//!     .workflow("greet", greet)
//!     .start()
//!     .await?;
//! # engine.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The values are read by [`EnvConfig::from_lookup`] from any lookup function, which is how
//! they are tested without touching the process environment.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use duraflow_runtime::EngineBuilder;
use duraflow_store::{Store, StoreError};

/// The variable that names the store: `sqlite:PATH` (or `sqlite://PATH`),
/// `postgres://..` (or `postgresql://..`), or `memory:`.
pub const DATABASE_URL: &str = "DURAFLOW_DATABASE_URL";
/// The variable that sets [`EngineOptions::workflow_concurrency`](crate::EngineOptions).
pub const WORKFLOW_CONCURRENCY: &str = "DURAFLOW_WORKFLOW_CONCURRENCY";
/// The variable that sets [`EngineOptions::activity_concurrency`](crate::EngineOptions).
pub const ACTIVITY_CONCURRENCY: &str = "DURAFLOW_ACTIVITY_CONCURRENCY";

/// The variables read, in the order they are checked.
/// The variable that names the queues the engine serves, separated by commas
/// ([`EngineBuilder::queues`]; `default` when unset).
pub const QUEUES: &str = "DURAFLOW_QUEUES";

/// Every variable [`EnvConfig`] reads.
pub const VARIABLES: [&str; 4] = [
    DATABASE_URL,
    WORKFLOW_CONCURRENCY,
    ACTIVITY_CONCURRENCY,
    QUEUES,
];

const URL_FORMS: &str = "sqlite:PATH or sqlite://PATH (feature `sqlite`), postgres://.. or \
                         postgresql://.. (feature `postgres`), or memory: for a store that \
                         keeps nothing across restarts";

/// A configuration value that is missing or malformed, a store backend that is not compiled
/// in, or a store that could not be opened. The message names the variable and what it
/// accepts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// A required variable is not set (or is empty).
    #[error("{var} is not set: set it to {expected}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// What it accepts.
        expected: &'static str,
    },
    /// A variable's value is malformed.
    #[error("{var}={value:?} is invalid: {expected}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value (with any password hidden).
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// The URL names a store whose backend this build of duraflow does not include.
    #[error(
        "{var} names a {backend} store, but duraflow was built without the `{feature}` \
         feature: enable it (duraflow = {{ version = \"..\", features = [\"{feature}\"] }})"
    )]
    BackendNotCompiled {
        /// The variable.
        var: &'static str,
        /// `SQLite` or `PostgreSQL`.
        backend: &'static str,
        /// The Cargo feature that compiles it in.
        feature: &'static str,
    },
    /// The store could not be opened.
    #[error("cannot open the store {url} (from {var}): {source}")]
    Open {
        /// The variable.
        var: &'static str,
        /// The URL, with any password hidden.
        url: String,
        /// Why.
        source: StoreError,
    },
}

/// Where the store is, as `DURAFLOW_DATABASE_URL` gives it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseUrl {
    /// `sqlite:PATH` or `sqlite://PATH`: a SQLite file (created if missing).
    Sqlite(PathBuf),
    /// `postgres://..` or `postgresql://..`: a PostgreSQL database, the URL as given.
    Postgres(String),
    /// `memory:`: a [`MemoryStore`](crate::MemoryStore), which keeps nothing across restarts.
    Memory,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            DatabaseUrl::Postgres(url) => f.debug_tuple("Postgres").field(&redact(url)).finish(),
            DatabaseUrl::Memory => f.write_str("Memory"),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    /// The URL, with any password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            DatabaseUrl::Postgres(url) => f.write_str(&redact(url)),
            DatabaseUrl::Memory => f.write_str("memory:"),
        }
    }
}

impl DatabaseUrl {
    /// Parses a database URL as `DURAFLOW_DATABASE_URL` gives it. A URL whose backend is not
    /// compiled in is [`EnvError::BackendNotCompiled`], naming the feature to enable.
    ///
    /// ```
    /// use duraflow::env::DatabaseUrl;
    ///
    /// # #[cfg(feature = "sqlite")]
    /// assert_eq!(
    ///     DatabaseUrl::parse("sqlite:data/app.db").unwrap(),
    ///     DatabaseUrl::Sqlite("data/app.db".into())
    /// );
    /// assert_eq!(DatabaseUrl::parse("memory:").unwrap(), DatabaseUrl::Memory);
    /// assert!(DatabaseUrl::parse("mysql://db").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<DatabaseUrl, EnvError> {
        let url = url.trim();
        let invalid = |expected: String| EnvError::Invalid {
            var: DATABASE_URL,
            value: redact(url),
            expected,
        };
        let (scheme, rest) = match url.split_once(':') {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => return Err(invalid(format!("it has no scheme; use {URL_FORMS}"))),
        };
        match scheme.as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(invalid(
                        "the SQLite file's path is empty; use sqlite:PATH, e.g. \
                         sqlite:data/app.db or sqlite:///var/lib/app.db"
                            .into(),
                    ));
                }
                if path == ":memory:" {
                    return Err(invalid(
                        "an in-memory SQLite database is not supported; use memory: for a \
                         store that keeps nothing across restarts"
                            .into(),
                    ));
                }
                if path.contains('?') {
                    return Err(invalid(
                        "query parameters are not supported; give the file's path alone and \
                         set SQLite options in code with SqliteStore::open_with"
                            .into(),
                    ));
                }
                let url = DatabaseUrl::Sqlite(PathBuf::from(path));
                if !cfg!(feature = "sqlite") {
                    return Err(url.not_compiled());
                }
                Ok(url)
            }
            "postgres" | "postgresql" => {
                let Some(rest) = rest.strip_prefix("//").filter(|r| !r.is_empty()) else {
                    return Err(invalid(
                        "a PostgreSQL URL is postgres://USER:PASSWORD@HOST:PORT/DATABASE".into(),
                    ));
                };
                let url = DatabaseUrl::Postgres(format!("{scheme}://{rest}"));
                if !cfg!(feature = "postgres") {
                    return Err(url.not_compiled());
                }
                Ok(url)
            }
            "memory" if rest.is_empty() || rest == "//" => Ok(DatabaseUrl::Memory),
            "memory" => Err(invalid("memory: takes nothing after the colon".into())),
            _ => Err(invalid(format!(
                "unknown scheme {scheme:?}; use {URL_FORMS}"
            ))),
        }
    }

    /// The error for a store whose backend this build does not have (a cargo feature left
    /// out).
    fn not_compiled(&self) -> EnvError {
        let (backend, feature) = match self {
            DatabaseUrl::Sqlite(_) => ("SQLite", "sqlite"),
            DatabaseUrl::Postgres(_) => ("PostgreSQL", "postgres"),
            DatabaseUrl::Memory => ("memory", "default"),
        };
        EnvError::BackendNotCompiled {
            var: DATABASE_URL,
            backend,
            feature,
        }
    }

    /// Opens (or creates) the store: a SQLite file, a PostgreSQL connection pool with the
    /// schema migrated, or a new memory store.
    pub async fn open(&self) -> Result<Arc<dyn Store>, EnvError> {
        let opened: Result<Arc<dyn Store>, StoreError> = match self {
            #[cfg(feature = "sqlite")]
            DatabaseUrl::Sqlite(path) => crate::SqliteStore::open(path)
                .await
                .map(|s| Arc::new(s) as Arc<dyn Store>),
            #[cfg(not(feature = "sqlite"))]
            DatabaseUrl::Sqlite(_) => return Err(self.not_compiled()),
            #[cfg(feature = "postgres")]
            DatabaseUrl::Postgres(url) => crate::PostgresStore::connect(url)
                .await
                .map(|s| Arc::new(s) as Arc<dyn Store>),
            #[cfg(not(feature = "postgres"))]
            DatabaseUrl::Postgres(_) => return Err(self.not_compiled()),
            DatabaseUrl::Memory => Ok(Arc::new(crate::MemoryStore::new())),
        };
        opened.map_err(|source| EnvError::Open {
            var: DATABASE_URL,
            url: self.to_string(),
            source,
        })
    }
}

/// The schema of a store's database as a build finds it ([`DatabaseUrl::schema_version`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The version the database holds; `None` when it holds no duraflow schema yet (opening
    /// the store creates it).
    pub found: Option<i64>,
    /// The newest version this build applies.
    pub supported: i64,
}

impl SchemaVersion {
    /// Whether opening the store would change nothing: the database is at this build's
    /// version.
    pub fn is_current(&self) -> bool {
        self.found == Some(self.supported)
    }

    /// Whether the database was migrated by a newer build (this one refuses to open it).
    pub fn is_newer(&self) -> bool {
        self.found.is_some_and(|found| found > self.supported)
    }
}

impl DatabaseUrl {
    /// Reads the schema version of the store's database without changing anything (a
    /// PostgreSQL store's default schema, `duraflow`). A memory store has none to read: it is
    /// always current.
    pub async fn schema_version(&self) -> Result<SchemaVersion, EnvError> {
        let read: Result<SchemaVersion, StoreError> = match self {
            #[cfg(feature = "sqlite")]
            DatabaseUrl::Sqlite(path) => {
                crate::crates::sqlite::schema_version_of(path).map(|found| SchemaVersion {
                    found,
                    supported: crate::crates::sqlite::SCHEMA_VERSION,
                })
            }
            #[cfg(not(feature = "sqlite"))]
            DatabaseUrl::Sqlite(_) => return Err(self.not_compiled()),
            #[cfg(feature = "postgres")]
            DatabaseUrl::Postgres(url) => {
                let schema = crate::crates::postgres::PostgresOptions::default().schema;
                crate::crates::postgres::schema_version_of(url, &schema)
                    .await
                    .map(|found| SchemaVersion {
                        found,
                        supported: crate::crates::postgres::schema_version(),
                    })
            }
            #[cfg(not(feature = "postgres"))]
            DatabaseUrl::Postgres(_) => return Err(self.not_compiled()),
            DatabaseUrl::Memory => Ok(SchemaVersion {
                found: Some(0),
                supported: 0,
            }),
        };
        read.map_err(|source| EnvError::Open {
            var: DATABASE_URL,
            url: self.to_string(),
            source,
        })
    }
}

/// The engine configuration the environment gives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvConfig {
    /// The store, from `DURAFLOW_DATABASE_URL` (required).
    pub database: DatabaseUrl,
    /// From `DURAFLOW_WORKFLOW_CONCURRENCY`, if set.
    pub workflow_concurrency: Option<usize>,
    /// From `DURAFLOW_ACTIVITY_CONCURRENCY`, if set.
    pub activity_concurrency: Option<usize>,
    /// From `DURAFLOW_QUEUES` (comma-separated), if set.
    pub queues: Option<Vec<String>>,
}

impl EnvConfig {
    /// Reads the configuration from the process environment. A variable that is not valid
    /// UTF-8 is an error naming it.
    pub fn from_env() -> Result<EnvConfig, EnvError> {
        for var in VARIABLES {
            if let Err(std::env::VarError::NotUnicode(value)) = std::env::var(var) {
                return Err(EnvError::Invalid {
                    var,
                    value: redact(&value.to_string_lossy()),
                    expected: "the value must be valid UTF-8".into(),
                });
            }
        }
        EnvConfig::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads the configuration through `lookup`, which returns a variable's value or `None`
    /// when it is not set. An empty (or all-blank) value counts as not set.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use duraflow::env::{DatabaseUrl, EnvConfig};
    ///
    /// let vars = HashMap::from([
    ///     ("DURAFLOW_DATABASE_URL", "memory:"),
    ///     ("DURAFLOW_ACTIVITY_CONCURRENCY", "8"),
    /// ]);
    /// let config = EnvConfig::from_lookup(|var| vars.get(var).map(|v| v.to_string())).unwrap();
    /// assert_eq!(config.database, DatabaseUrl::Memory);
    /// assert_eq!(config.activity_concurrency, Some(8));
    /// assert_eq!(config.workflow_concurrency, None);
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<EnvConfig, EnvError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let database = match get(DATABASE_URL) {
            Some(url) => DatabaseUrl::parse(&url)?,
            None => {
                return Err(EnvError::Missing {
                    var: DATABASE_URL,
                    expected: URL_FORMS,
                })
            }
        };
        let count = |var: &'static str| -> Result<Option<usize>, EnvError> {
            let Some(value) = get(var) else {
                return Ok(None);
            };
            match value.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(EnvError::Invalid {
                    var,
                    value,
                    expected: "it must be a whole number of at least 1".into(),
                }),
            }
        };
        let queues = match get(QUEUES) {
            None => None,
            Some(value) => {
                let names: Vec<String> = value.split(',').map(|q| q.trim().to_owned()).collect();
                if names.iter().any(String::is_empty) {
                    return Err(EnvError::Invalid {
                        var: QUEUES,
                        value,
                        expected: "it must name queues separated by commas, none empty, such as \
                                   `default,emails`"
                            .into(),
                    });
                }
                Some(names)
            }
        };
        Ok(EnvConfig {
            database,
            workflow_concurrency: count(WORKFLOW_CONCURRENCY)?,
            activity_concurrency: count(ACTIVITY_CONCURRENCY)?,
            queues,
        })
    }

    /// Opens the store and sets it, and the concurrency and queues given, on `builder`.
    pub async fn configure(&self, builder: EngineBuilder) -> Result<EngineBuilder, EnvError> {
        let mut builder = builder.shared_store(self.database.open().await?);
        if let Some(n) = self.workflow_concurrency {
            builder = builder.workflow_concurrency(n);
        }
        if let Some(n) = self.activity_concurrency {
            builder = builder.activity_concurrency(n);
        }
        if let Some(queues) = &self.queues {
            builder = builder.queues(queues.iter().cloned());
        }
        Ok(builder)
    }
}

/// `Engine::builder().from_env().await?`: configures an [`EngineBuilder`] from the process
/// environment (see [the module](self)). In the prelude.
pub trait FromEnv: Sized {
    /// Reads the environment ([`EnvConfig::from_env`]), opens the store it names and sets it,
    /// with the concurrency settings given. Call it before other settings: a later
    /// [`EngineBuilder::options`] replaces the concurrency it set.
    #[allow(
        clippy::wrong_self_convention,
        reason = "it continues a builder chain: `Engine::builder().from_env()` reads as meant"
    )]
    fn from_env(self) -> impl Future<Output = Result<Self, EnvError>> + Send;
}

impl FromEnv for EngineBuilder {
    async fn from_env(self) -> Result<EngineBuilder, EnvError> {
        let config = EnvConfig::from_env()?;
        config.configure(self).await
    }
}

/// The URL with the password of any `user:password@` part replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<EnvConfig, EnvError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EnvConfig::from_lookup(|var| vars.get(var).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        config(vars).unwrap_err().to_string()
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_urls_give_the_path() {
        for (url, path) in [
            ("sqlite:app.db", "app.db"),
            ("sqlite://app.db", "app.db"),
            ("sqlite:///var/lib/app.db", "/var/lib/app.db"),
            ("SQLite:data/app.db", "data/app.db"),
            ("  sqlite:app.db \n", "app.db"),
        ] {
            let config = config(&[(DATABASE_URL, url)]).unwrap();
            assert_eq!(config.database, DatabaseUrl::Sqlite(path.into()), "{url}");
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_urls_are_kept_whole() {
        for url in [
            "postgres://u:p@localhost:5432/db",
            "postgresql://localhost/db?sslmode=disable",
        ] {
            let config = config(&[(DATABASE_URL, url)]).unwrap();
            assert_eq!(config.database, DatabaseUrl::Postgres(url.into()));
        }
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_postgres_url_without_the_feature_names_the_feature() {
        let err = config(&[(DATABASE_URL, "postgres://u:secret@db/app")]).unwrap_err();
        assert!(matches!(
            err,
            EnvError::BackendNotCompiled {
                feature: "postgres",
                ..
            }
        ));
        let message = err.to_string();
        assert!(message.contains("DURAFLOW_DATABASE_URL"), "{message}");
        assert!(message.contains("`postgres` feature"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[cfg(not(feature = "sqlite"))]
    #[test]
    fn a_sqlite_url_without_the_feature_names_the_feature() {
        let err = config(&[(DATABASE_URL, "sqlite:app.db")]).unwrap_err();
        assert!(err.to_string().contains("`sqlite` feature"), "{err}");
    }

    #[test]
    fn memory_is_only_chosen_explicitly() {
        let config = config(&[(DATABASE_URL, "memory:")]).unwrap();
        assert_eq!(config.database, DatabaseUrl::Memory);
        for vars in [
            &[][..],
            &[(DATABASE_URL, "")][..],
            &[(DATABASE_URL, "  ")][..],
        ] {
            let message = error(vars);
            assert!(
                message.starts_with("DURAFLOW_DATABASE_URL is not set"),
                "{message}"
            );
            assert!(message.contains("sqlite:PATH"), "{message}");
            assert!(message.contains("memory:"), "{message}");
        }
    }

    #[test]
    fn malformed_urls_say_what_is_accepted() {
        for (url, says) in [
            ("app.db", "no scheme"),
            ("mysql://db/app", "unknown scheme \"mysql\""),
            ("sqlite:", "path is empty"),
            ("sqlite://", "path is empty"),
            ("sqlite::memory:", "use memory:"),
            ("sqlite://app.db?mode=rwc", "query parameters"),
            ("postgres:", "postgres://USER"),
            ("postgres://", "postgres://USER"),
            ("memory:db", "nothing after the colon"),
        ] {
            let message = error(&[(DATABASE_URL, url)]);
            assert!(
                message.starts_with("DURAFLOW_DATABASE_URL="),
                "{url}: {message}"
            );
            assert!(message.contains(says), "{url}: {message}");
        }
        let message = error(&[(DATABASE_URL, "mysql://app")]);
        assert!(message.contains("postgres://"), "{message}");
    }

    #[test]
    fn passwords_never_appear_in_errors() {
        let message = error(&[(DATABASE_URL, "mysql://user:hunter2@db/app")]);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("user:***@db/app"), "{message}");
        assert_eq!(
            redact("postgres://u:p:q@host/db"),
            "postgres://u:***@host/db"
        );
        assert_eq!(redact("postgres://host/db"), "postgres://host/db");
    }

    #[test]
    fn concurrency_settings_are_optional_positive_numbers() {
        let config = config(&[
            (DATABASE_URL, "memory:"),
            (WORKFLOW_CONCURRENCY, "16"),
            (ACTIVITY_CONCURRENCY, " 4 "),
        ])
        .unwrap();
        assert_eq!(config.workflow_concurrency, Some(16));
        assert_eq!(config.activity_concurrency, Some(4));
        for var in [WORKFLOW_CONCURRENCY, ACTIVITY_CONCURRENCY] {
            for value in ["0", "-1", "ten", "1.5"] {
                let message = error(&[(DATABASE_URL, "memory:"), (var, value)]);
                assert_eq!(
                    message,
                    format!("{var}={value:?} is invalid: it must be a whole number of at least 1")
                );
            }
        }
    }

    #[tokio::test]
    async fn the_builder_gets_the_store_and_the_settings() {
        let config = config(&[(DATABASE_URL, "memory:"), (ACTIVITY_CONCURRENCY, "3")]).unwrap();
        let engine = config
            .configure(crate::Engine::builder())
            .await
            .unwrap()
            .start()
            .await
            .unwrap();
        assert_eq!(engine.store().backend(), "memory");
        engine.shutdown().await;
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_sqlite_url_opens_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.db");
        let url = format!("sqlite:{}", path.display());
        let config = config(&[(DATABASE_URL, url.as_str())]).unwrap();
        let store = config.database.open().await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        drop(store);
        assert!(path.exists());
    }

    #[test]
    fn queues_are_read_comma_separated_and_empty_names_are_refused() {
        let queued =
            config(&[(DATABASE_URL, "memory:"), (QUEUES, " default, emails ,gpu")]).unwrap();
        assert_eq!(
            queued.queues,
            Some(vec![
                "default".to_owned(),
                "emails".to_owned(),
                "gpu".to_owned()
            ])
        );
        let unset = config(&[(DATABASE_URL, "memory:")]).unwrap();
        assert_eq!(unset.queues, None);
        let err = error(&[(DATABASE_URL, "memory:"), (QUEUES, "a,,b")]);
        assert!(err.contains("DURAFLOW_QUEUES"), "{err}");
        assert!(err.contains("separated by commas"), "{err}");
    }
}
