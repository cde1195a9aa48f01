//! Connecting: the pool, the store's schema, and migrations under an advisory lock.

use std::str::FromStr;

use duraflow_store::{StoreError, StoreResult};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool};

use crate::conns::PING_WHEN_IDLE_FOR;
use crate::error::store_error;
use crate::PostgresOptions;

/// The migrations in `migrations/`, embedded.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The newest schema version this build knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The version of the duraflow schema `schema` at `url`, read without changing anything: the
/// newest migration applied, or `None` when none is (connecting creates it).
pub(crate) async fn applied_version(url: &str, schema: &str) -> StoreResult<Option<i64>> {
    let options = PostgresOptions {
        schema: schema.to_owned(),
        ..PostgresOptions::default()
    };
    let opts = connect_options(url, &options)?;
    let mut conn = sqlx::PgConnection::connect_with(&opts)
        .await
        .map_err(store_error)?;
    // The schema name was checked to be a plain identifier (check_schema_name).
    let table = format!("\"{schema}\"._sqlx_migrations");
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&table)
        .fetch_one(&mut conn)
        .await
        .map_err(store_error)?;
    let version = match exists {
        None => None,
        Some(_) => sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(format!(
            "SELECT max(version) FROM {table} WHERE success"
        )))
        .fetch_one(&mut conn)
        .await
        .map_err(store_error)?,
    };
    let _ = conn.close().await;
    Ok(version)
}

/// Checks that a schema name is a plain lowercase identifier, so it can be quoted safely.
pub(crate) fn check_schema_name(schema: &str) -> StoreResult<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "schema name {schema:?} is not allowed: use 1 to 63 lowercase letters, digits and \
             underscores, starting with a letter or underscore"
        )))
    }
}

/// Parses the URL into connect options that put the store's schema first on the search path.
///
/// The store's sessions also keep one plan per prepared statement
/// (`plan_cache_mode=force_generic_plan`), plan without sequential scans
/// (`enable_seqscan=off`), run without JIT compilation (`jit=off`) and without parallel
/// workers (`max_parallel_workers_per_gather=0`). These change plans only, never results;
/// each is kept deliberately (issue 17):
///
/// - **Generic plans**: a statement planned anew for each call (PostgreSQL's choice when it
///   expects the parameters to matter) spends longer planning than running.
/// - **No sequential scans**: every statement of the hot path reads its work tables (instances,
///   messages, tasks, events...) through an index, but the planner does not always know. A
///   generic plan lives as long as its connection and its prepared statement, and a plan made
///   while a table was empty, small or unanalyzed scans it whole: with the default planner,
///   15 of the 77 statements `src/plans.rs` checks plan a sequential scan of a work table on a
///   fresh schema (the commit's write and lock statements, the completion, creations), plans a
///   pool would keep while the tables grow; 4 still do over 20,000 analyzed instances. The
///   work tables also churn (each write leaves a dead row version until vacuum), which skews
///   the statistics in between. The setting's cost is
///   that a statement no index can serve is priced near 10^10 rather than flagged, hiding a
///   missing index; `src/plans.rs` checks instead that every statement is planned through
///   the indexes named for it, over a populated and analyzed schema, so that such a statement
///   fails a test. The management counts, which read whole tables, allow sequential scans
///   in their own transactions (`crate::ops::admin::WHOLE_TABLES`).
/// - **No JIT**: the store's statements touch a handful of rows through indexes, where
///   compiling costs milliseconds and saves nothing; and with sequential scans priced out,
///   any plan that must scan (a statement no index serves) looks expensive enough to be
///   compiled at every call. The management counts read whole tables, where JIT could pay
///   off at millions of rows, but they are occasional reads and not worth a setting of their
///   own.
/// - **No parallel workers**: a generic plan is costed for parameters it does not know, and
///   over a large table it can expect many rows where a call finds a few. It then starts
///   parallel workers, a process each, for a statement that reads a handful of rows: the
///   count of a task-limited queue's live leases (`tasks::FETCH_LIMITED`) over 1,000,000
///   tasks took 6.6–8.1 ms with 2 workers and 0.02–0.07 ms without. The management counts run
///   without them too.
pub(crate) fn connect_options(
    url: &str,
    options: &PostgresOptions,
) -> StoreResult<PgConnectOptions> {
    check_schema_name(&options.schema)?;
    let opts = PgConnectOptions::from_str(url).map_err(store_error)?;
    Ok(opts
        .options([
            ("search_path", options.schema.as_str()),
            ("enable_seqscan", "off"),
            ("plan_cache_mode", "force_generic_plan"),
            ("jit", "off"),
            ("max_parallel_workers_per_gather", "0"),
        ])
        .application_name(&options.application_name)
        .disable_statement_logging())
}

/// Creates the schema if needed and applies the migrations. sqlx's migrator holds a
/// PostgreSQL advisory lock while it runs, so processes starting at once do not race. A
/// database migrated by a newer build is refused.
pub(crate) async fn migrate(opts: &PgConnectOptions, schema: &str) -> StoreResult<()> {
    let mut conn = sqlx::PgConnection::connect_with(opts)
        .await
        .map_err(store_error)?;
    // The schema name was checked to be a plain identifier (check_schema_name).
    let created = sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
    )))
    .execute(&mut conn)
    .await;
    if let Err(e) = created {
        // Two processes creating the schema at once: the loser's error is harmless.
        let raced =
            matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"));
        if !raced {
            return Err(store_error(e));
        }
    }
    // run_direct rather than run: its future is Send, so connecting works inside tokio::spawn.
    let result = MIGRATOR.run_direct(None, &mut conn, false).await;
    let _ = conn.close().await;
    result.map_err(|e| match e {
        MigrateError::VersionMissing(found) => StoreError::NewerSchema {
            found,
            supported: latest_version(),
        },
        MigrateError::Execute(e) => store_error(e),
        other => StoreError::Other(format!(
            "migrating the duraflow schema {schema:?} failed: {other}"
        )),
    })
}

/// Opens the connection pool. Each connection prepares the statement that locks a commit's
/// instances when it opens (the schema is migrated by then): see
/// `ops::commit::PREPARE_LOCK_INSTANCES`.
///
/// A connection is pinged before it is handed out only when it has been idle for
/// [`PING_WHEN_IDLE_FOR`] or longer (see [`crate::conns`]).
pub(crate) async fn pool(opts: PgConnectOptions, options: &PostgresOptions) -> StoreResult<PgPool> {
    PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(|conn, _| {
            Box::pin(async move {
                let prepare: &'static str = crate::ops::commit::PREPARE_LOCK_INSTANCES.as_str();
                sqlx::raw_sql(prepare).execute(conn).await.map(|_| ())
            })
        })
        .connect_with(opts)
        .await
        .map_err(store_error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use crate::testing::test_store;

    /// Every pooled connection runs with the planner settings `connect_options` documents.
    #[tokio::test]
    async fn sessions_plan_with_the_documented_settings() {
        let store = test_store("dft_settings").await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        for (name, value) in [
            ("enable_seqscan", "off"),
            ("plan_cache_mode", "force_generic_plan"),
            ("jit", "off"),
            ("max_parallel_workers_per_gather", "0"),
        ] {
            let shown: String = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(shown, value, "{name}");
        }
    }
}
