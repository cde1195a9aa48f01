//! The stores a benchmark runs on: where their data lives, how they are opened, closed and
//! cleaned up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duraflow::{
    MemoryStore, PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, Store, Synchronous,
};
use duraflow_postgres::testing;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use crate::report::Figures;
use crate::Result;

/// How long to wait for a PostgreSQL connection or for the store's connections to close.
const PG_WAIT: Duration = Duration::from_secs(30);

/// A store to benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreKind {
    /// `MemoryStore`: nothing durable; the engine's own cost.
    Memory,
    /// `SqliteStore` with `synchronous=FULL` (the default): every commit fsynced.
    Sqlite,
    /// `SqliteStore` with `synchronous=NORMAL`: commits survive a process crash, not a power
    /// loss.
    SqliteNormal,
    /// `PostgresStore` in a fresh schema on the server of `--pg-url`.
    Postgres,
}

impl StoreKind {
    /// Every store, in the order `all` runs them.
    pub(crate) const ALL: [StoreKind; 4] = [
        StoreKind::Memory,
        StoreKind::Sqlite,
        StoreKind::SqliteNormal,
        StoreKind::Postgres,
    ];

    /// The name on the command line and in results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "sqlite",
            StoreKind::SqliteNormal => "sqlite-normal",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// Where one run's store keeps its data, created fresh for the run and removed after it.
pub(crate) struct StoreEnv {
    kind: StoreKind,
    place: Place,
}

enum Place {
    Memory,
    Sqlite {
        /// Removed when dropped.
        _dir: tempfile::TempDir,
        path: PathBuf,
        synchronous: Synchronous,
    },
    Postgres(PgEnv),
}

/// A fresh schema on a PostgreSQL server.
pub(crate) struct PgEnv {
    url: String,
    schema: String,
    /// The `application_name` of the store's connections, so the benchmark can tell when they
    /// have all closed.
    application_name: String,
    /// `server_version`, `synchronous_commit`, `fsync`, `wal_sync_method`.
    server: Vec<(&'static str, String)>,
}

/// A store opened on a [`StoreEnv`].
pub(crate) struct Opened {
    /// The store, to give to an engine.
    pub(crate) store: Arc<dyn Store>,
    pool: Option<PgPool>,
    pg: Option<(String, String)>,
}

impl StoreEnv {
    /// Prepares a fresh place for a store of `kind`: a temporary directory for SQLite, a new
    /// schema (created and migrated) for PostgreSQL. Fails with a clear message when the
    /// PostgreSQL server cannot be reached.
    pub(crate) async fn create(kind: StoreKind, pg_url: &str) -> Result<StoreEnv> {
        let place = match kind {
            StoreKind::Memory => Place::Memory,
            StoreKind::Sqlite | StoreKind::SqliteNormal => {
                let dir = tempfile::Builder::new()
                    .prefix("duraflow-bench-")
                    .tempdir()
                    .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
                let path = dir.path().join("bench.db");
                Place::Sqlite {
                    _dir: dir,
                    path,
                    synchronous: if kind == StoreKind::Sqlite {
                        Synchronous::Full
                    } else {
                        Synchronous::Normal
                    },
                }
            }
            StoreKind::Postgres => Place::Postgres(PgEnv::create(pg_url).await?),
        };
        Ok(StoreEnv { kind, place })
    }

    /// The kind of store this place is for.
    pub(crate) fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The PostgreSQL schema, for a PostgreSQL store.
    pub(crate) fn postgres(&self) -> Option<&PgEnv> {
        match &self.place {
            Place::Postgres(pg) => Some(pg),
            _ => None,
        }
    }

    /// The SQLite file, for a SQLite store.
    pub(crate) fn sqlite_path(&self) -> Option<&Path> {
        match &self.place {
            Place::Sqlite { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Opens a store on this place. A memory store is new each time; SQLite and PostgreSQL
    /// stores see what earlier ones on the same place wrote.
    pub(crate) async fn open(&self) -> Result<Opened> {
        match &self.place {
            Place::Memory => Ok(Opened {
                store: Arc::new(MemoryStore::new()),
                pool: None,
                pg: None,
            }),
            Place::Sqlite {
                path, synchronous, ..
            } => {
                let options = SqliteOptions {
                    synchronous: *synchronous,
                    ..SqliteOptions::default()
                };
                let store = SqliteStore::open_with(path, options)
                    .await
                    .map_err(|e| format!("cannot open SQLite store {}: {e}", path.display()))?;
                Ok(Opened {
                    store: Arc::new(store),
                    pool: None,
                    pg: None,
                })
            }
            Place::Postgres(pg) => {
                let store = pg.connect_store().await?;
                let pool = store.pool().clone();
                Ok(Opened {
                    store: Arc::new(store),
                    pool: Some(pool),
                    pg: Some((pg.url.clone(), pg.application_name.clone())),
                })
            }
        }
    }

    /// How the store is set up, for the results.
    pub(crate) fn settings(&self) -> Figures {
        let mut s = Figures::new();
        s.text("store_backend", self.kind.name());
        match &self.place {
            Place::Memory => {
                s.text("durability", "none (in memory)");
            }
            Place::Sqlite { synchronous, .. } => {
                let defaults = SqliteOptions::default();
                s.text("journal_mode", "wal");
                s.text(
                    "synchronous",
                    match synchronous {
                        Synchronous::Full => "full",
                        Synchronous::Normal => "normal",
                    },
                );
                s.int("sqlite_max_batch", defaults.max_batch as u64);
                s.text("sqlite_dir", std::env::temp_dir().display().to_string());
            }
            Place::Postgres(pg) => {
                s.int(
                    "pg_pool_max_connections",
                    u64::from(PostgresOptions::default().max_connections),
                );
                for (k, v) in &pg.server {
                    s.text(k, v.clone());
                }
            }
        }
        s
    }

    /// Removes what the run left: the PostgreSQL schema is dropped (the SQLite directory goes
    /// when the env is dropped). Failures are reported on stderr.
    pub(crate) async fn teardown(self) {
        if let Place::Postgres(pg) = &self.place {
            if let Err(e) = pg.drop_schema().await {
                eprintln!("duraflow-bench: could not drop schema {}: {e}", pg.schema);
            }
        }
    }
}

impl Opened {
    /// Closes the store after its engine has shut down and every other handle on it (clients)
    /// has been dropped; for PostgreSQL, closes its pool and waits until the server shows none
    /// of its connections, so that their statistics are flushed.
    pub(crate) async fn close(self) -> Result<()> {
        let Opened { store, pool, pg } = self;
        let others = Arc::strong_count(&store) - 1;
        if others > 0 {
            eprintln!("duraflow-bench: {others} other handles on the store are still open");
        }
        drop(store);
        // Dropping the store aborts its LISTEN task; let that happen before the pool closes,
        // so the task does not see the pool closing and try to reconnect.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(pool) = pool {
            if tokio::time::timeout(PG_WAIT, pool.close()).await.is_err() {
                return Err("the PostgreSQL pool did not close within 30 s".into());
            }
        }
        if let Some((url, application_name)) = pg {
            let mut conn = connect_monitor(&url).await?;
            wait_connections_gone(&mut conn, &application_name).await?;
            let _ = conn.close().await;
        }
        Ok(())
    }
}

impl PgEnv {
    /// Checks the server answers, reads its durability settings, and creates and migrates a
    /// fresh schema (closing the connections that did it).
    async fn create(url: &str) -> Result<PgEnv> {
        let mut conn = connect_monitor(url).await?;
        let server: (String, String, String, String) = sqlx::query_as(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'),
                    current_setting('fsync'), current_setting('wal_sync_method')",
        )
        .fetch_one(&mut conn)
        .await?;
        let _ = conn.close().await;
        let schema = testing::unique_schema("bench");
        let env = PgEnv {
            url: url.to_owned(),
            application_name: format!("duraflow-bench-{schema}"),
            schema,
            server: vec![
                ("pg_server_version", server.0),
                ("pg_synchronous_commit", server.1),
                ("pg_fsync", server.2),
                ("pg_wal_sync_method", server.3),
            ],
        };
        let store = env.connect_store().await?;
        let pool = store.pool().clone();
        drop(store);
        tokio::time::sleep(Duration::from_millis(20)).await;
        pool.close().await;
        Ok(env)
    }

    /// A store on the schema whose connections report this env's `application_name`.
    async fn connect_store(&self) -> Result<PostgresStore> {
        let options = PostgresOptions {
            schema: self.schema.clone(),
            application_name: self.application_name.clone(),
            ..PostgresOptions::default()
        };
        PostgresStore::connect_with(&self.url, options)
            .await
            .map_err(|e| {
                format!(
                    "cannot open the PostgreSQL store at {} (schema {}): {e}",
                    self.url, self.schema
                )
                .into()
            })
    }

    /// The server's committed transaction count for the store's database, once every store
    /// connection has closed (backends flush their statistics when they exit), and the number
    /// of other client sessions connected to that database at that moment (other work there
    /// would be counted too).
    pub(crate) async fn xact_commit(&self) -> Result<(i64, i64)> {
        let mut conn = connect_monitor(&self.url).await?;
        wait_connections_gone(&mut conn, &self.application_name).await?;
        let commits: i64 = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND backend_type = 'client backend'
                AND pid <> pg_backend_pid() AND application_name NOT LIKE 'duraflow-bench%'",
        )
        .fetch_one(&mut conn)
        .await?;
        let _ = conn.close().await;
        Ok((commits, others))
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// The bytes on disk of the schema's tables, with their indexes and TOAST
    /// (`pg_total_relation_size`), dead rows not yet vacuumed included.
    pub(crate) async fn schema_bytes(&self) -> Result<u64> {
        let mut conn = connect_monitor(&self.url).await?;
        let bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm')",
        )
        .bind(&self.schema)
        .fetch_one(&mut conn)
        .await?;
        let _ = conn.close().await;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    async fn drop_schema(&self) -> Result<()> {
        let mut conn = connect_monitor(&self.url).await?;
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
        let _ = conn.close().await;
        Ok(())
    }
}

/// A connection of the benchmark's own (`application_name` `duraflow-bench-monitor`). Fails
/// with a message that says how to get a server when none answers.
async fn connect_monitor(url: &str) -> Result<PgConnection> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| format!("{url:?} is not a PostgreSQL URL: {e}"))?;
    let options = options.application_name("duraflow-bench-monitor");
    match tokio::time::timeout(PG_WAIT, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(unreachable_server(url, &e.to_string())),
        Err(_) => Err(unreachable_server(url, "no answer within 30 s")),
    }
}

fn unreachable_server(url: &str, why: &str) -> crate::Error {
    format!(
        "cannot reach the PostgreSQL server at {url}: {why}. Start one (scripts/postgres), or \
         point --pg-url or {} at a server",
        testing::URL_VAR
    )
    .into()
}

/// Waits until the server shows no connection with `application_name`.
async fn wait_connections_gone(conn: &mut PgConnection, application_name: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(application_name)
                .fetch_one(&mut *conn)
                .await?;
        if open == 0 {
            return Ok(());
        }
        if started.elapsed() > PG_WAIT {
            return Err(format!(
                "{open} connections of {application_name} are still open after 30 s"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
