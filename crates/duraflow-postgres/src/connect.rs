//! Connecting: the pool, the store's schema, and migrations under an advisory lock.

use std::str::FromStr;

use duraflow_store::{StoreError, StoreResult};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool};

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
/// The store's sessions also plan without sequential scans (`enable_seqscan=off`) and keep
/// one plan per prepared statement (`plan_cache_mode=force_generic_plan`). Every table the
/// store reads is read through an index, but the planner does not always know: the work
/// tables (instances, messages, tasks) churn (each write leaves a dead row version until
/// vacuum), so a plan made while a table was small or unanalyzed would go on scanning it whole
/// as it grows; and a statement planned anew for each call (PostgreSQL's choice when it
/// expects the parameters to matter) spends longer planning than running. They run without
/// JIT compilation (`jit=off`): the store's statements touch a handful of rows through
/// indexes, where compiling costs milliseconds and saves nothing, and with sequential scans
/// priced out any plan that does read much looks expensive enough to be compiled at every
/// call. These change plans only, never results.
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

/// Opens the connection pool.
pub(crate) async fn pool(opts: PgConnectOptions, options: &PostgresOptions) -> StoreResult<PgPool> {
    PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(opts)
        .await
        .map_err(store_error)
}
