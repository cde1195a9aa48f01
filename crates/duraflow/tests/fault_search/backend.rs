//! The stores the search runs on, and how an engine process opens one.

use std::path::PathBuf;
use std::sync::Arc;

use duraflow::{MemoryStore, SqliteOptions, SqliteStore, Store, Synchronous};

/// Which store a search runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// `MemoryStore`: every engine shares the one store (a process restart keeps the store).
    Memory,
    /// `SqliteStore`: every engine process opens the file anew.
    Sqlite,
    /// `PostgresStore`: every engine process connects anew, to a schema of the run's own.
    #[cfg(feature = "postgres")]
    Postgres,
}

impl StoreKind {
    /// The test that runs the search on this store.
    pub(crate) fn test_name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "sqlite",
            #[cfg(feature = "postgres")]
            StoreKind::Postgres => "postgres",
        }
    }
}

/// One run's store.
pub(crate) enum Backend {
    /// The shared memory store.
    Memory(Arc<MemoryStore>),
    /// A database file in a directory of the run's own.
    Sqlite {
        /// Deleted with the run.
        _dir: tempfile::TempDir,
        /// The database file.
        path: PathBuf,
    },
    /// A schema of the run's own.
    #[cfg(feature = "postgres")]
    Postgres {
        /// The schema.
        schema: String,
    },
}

impl Backend {
    /// A fresh, empty store of `kind`.
    pub(crate) fn new(kind: StoreKind, seed: u64) -> Backend {
        let _ = seed; // names the PostgreSQL schema
        match kind {
            StoreKind::Memory => Backend::Memory(Arc::new(MemoryStore::new())),
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("fault.db");
                Backend::Sqlite { _dir: dir, path }
            }
            #[cfg(feature = "postgres")]
            StoreKind::Postgres => Backend::Postgres {
                schema: duraflow::crates::postgres::testing::unique_schema(&format!("dff_{seed}")),
            },
        }
    }

    /// The store as a newly started process opens it.
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Memory(store) => store.clone(),
            Backend::Sqlite { path, .. } => {
                let options = SqliteOptions {
                    synchronous: Synchronous::Normal,
                    ..SqliteOptions::default()
                };
                Arc::new(
                    SqliteStore::open_with(path, options)
                        .await
                        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display())),
                )
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres { schema } => Arc::new(postgres::connect(schema).await),
        }
    }

    /// Removes what the run left behind outside its temporary directory.
    pub(crate) async fn clean_up(&self) {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres { schema } = self {
            postgres::drop_schema(schema).await;
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use duraflow::crates::postgres::testing::test_url;
    use duraflow::{PostgresOptions, PostgresStore};

    pub(super) async fn connect(schema: &str) -> PostgresStore {
        let options = PostgresOptions {
            schema: schema.to_owned(),
            max_connections: 3,
            ..PostgresOptions::default()
        };
        PostgresStore::connect_with(&test_url(), options)
            .await
            .unwrap_or_else(|e| {
                panic!("no PostgreSQL for the fault search ({e}); run scripts/test")
            })
    }

    pub(super) async fn drop_schema(schema: &str) {
        let store = connect(schema).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("dropping schema {schema}: {e}"));
    }
}
