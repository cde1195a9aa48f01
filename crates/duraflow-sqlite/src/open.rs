//! Opening a database file: connection settings, the schema version check, and migrations.

use std::path::Path;

use duraflow_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::store_error;
use crate::{SqliteOptions, Synchronous};

/// Identifies a duraflow database (`PRAGMA application_id`): "dflw".
pub(crate) const APPLICATION_ID: i32 = 0x6466_6c77;

/// The migrations, in order: schema version `n` is reached by applying migration `n`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_due_index.sql"),
    include_str!("../migrations/0003_callbacks.sql"),
    include_str!("../migrations/0004_queues.sql"),
    include_str!("../migrations/0005_instance_options.sql"),
    include_str!("../migrations/0006_queue_events.sql"),
    include_str!("../migrations/0007_heartbeat_details.sql"),
    include_str!("../migrations/0008_feed.sql"),
    include_str!("../migrations/0009_drop_global_due_index.sql"),
    include_str!("../migrations/0010_flow_counted.sql"),
    include_str!("../migrations/0011_registry.sql"),
    include_str!("../migrations/0012_list_by_queue.sql"),
    include_str!("../migrations/0013_instance_version.sql"),
    include_str!("../migrations/0014_list_by_time.sql"),
    include_str!("../migrations/0015_events_per_commit.sql"),
    include_str!("../migrations/0016_implicit_start.sql"),
];

/// The schema version this build writes and reads (`PRAGMA user_version` of its databases).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn describe(path: &Path, e: rusqlite::Error) -> StoreError {
    let e = store_error(e);
    let message = format!("{}: {e}", path.display());
    match e {
        StoreError::Full(_) => StoreError::Full(message),
        StoreError::Corrupt(_) => StoreError::Corrupt(message),
        StoreError::Unavailable(_) => StoreError::Unavailable(message),
        _ => StoreError::Other(message),
    }
}

/// Opens the writer connection, creating the file if needed.
pub(crate) fn open_writer(path: &Path, options: &SqliteOptions) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| describe(path, e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| describe(path, e))?;
    // The first statement reads the file: this is where a file that is not a database fails.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| describe(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Other(format!(
            "{}: SQLite refused write-ahead logging (journal mode is {mode}); put the database \
             on a local file system",
            path.display()
        )));
    }
    let sync = match options.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    // Checkpoints run on a thread of their own (`checkpoint.rs`), not inside the writer's
    // commits. When the log starts over, SQLite reuses its file without shrinking it, so a
    // burst that once made it long would keep the file long: `journal_size_limit` has it cut
    // back, each time the log starts over, to the length the writer reserves for it
    // (`log_space.rs`).
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = OFF; PRAGMA wal_autocheckpoint = 0; \
         PRAGMA journal_size_limit = {};",
        crate::log_space::LOG_BYTES
    ))
    .map_err(|e| describe(path, e))?;
    map_memory(&conn, path, options.mmap_size)?;
    // Room for every statement the store prepares (about 80, with the variants of some), so
    // none is parsed twice.
    conn.set_prepared_statement_cache_capacity(128);
    if let Some(pages) = options.max_page_count {
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(|e| describe(path, e))?;
    }
    Ok(conn)
}

/// Has `conn` read the database file through a memory map of up to `bytes` (see
/// [`SqliteOptions::mmap_size`]; 0 reads it with system calls).
fn map_memory(conn: &Connection, path: &Path, bytes: u64) -> StoreResult<()> {
    // The pragma answers with the size it set (none where memory maps are not built in).
    let set = || -> rusqlite::Result<()> {
        let mut stmt = conn.prepare(&format!("PRAGMA mmap_size = {bytes}"))?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    };
    set().map_err(|e| describe(path, e))
}

/// Opens a connection for reads.
pub(crate) fn open_reader(path: &Path, options: &SqliteOptions) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| describe(path, e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| describe(path, e))?;
    map_memory(&conn, path, options.mmap_size)?;
    // Room for every read statement (next_due's walks, the feed, the listings), so none is
    // parsed twice.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The schema version of the duraflow database at `path`, read without changing anything:
/// `None` for a missing or empty file (opening it creates the schema); `Invalid` for another
/// application's database.
pub fn schema_version_of(path: &Path) -> StoreResult<Option<i64>> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = open_reader(path, &SqliteOptions::default())?;
    let read = |sql: &str| -> StoreResult<i64> {
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| describe(path, e))
    };
    let app_id = read("PRAGMA application_id")?;
    let version = read("PRAGMA user_version")?;
    let tables = read("SELECT count(*) FROM sqlite_master WHERE type = 'table'")?;
    if app_id != i64::from(APPLICATION_ID) {
        return match tables {
            0 => Ok(None),
            n => Err(StoreError::Invalid(format!(
                "{} is a SQLite database but not a duraflow one (it has {n} table(s))",
                path.display()
            ))),
        };
    }
    Ok(Some(version))
}

/// Checks that the file is a duraflow database this build can read, and brings its schema up
/// to date. A database written by a newer schema version is refused, never modified.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    migrate_to(conn, path, SCHEMA_VERSION)
}

/// [`migrate`] up to schema version `target` only (at most [`SCHEMA_VERSION`]).
pub(crate) fn migrate_to(conn: &mut Connection, path: &Path, target: i64) -> StoreResult<()> {
    let target = target.clamp(0, SCHEMA_VERSION);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| describe(path, e))?;
    let (app_id, version, tables) = {
        let app_id: i32 = tx
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| describe(path, e))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| describe(path, e))?;
        let tables: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| describe(path, e))?;
        (app_id, version, tables)
    };
    if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
        return Err(StoreError::Invalid(format!(
            "{} is a SQLite database but not a duraflow one (it already has {tables} table(s)); \
             give duraflow its own database file",
            path.display()
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let pending = MIGRATIONS.iter().enumerate().take(target as usize);
    for (i, sql) in pending.skip(version.max(0) as usize) {
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Other(format!(
                "{}: migration {} failed: {}",
                path.display(),
                i + 1,
                store_error(e)
            ))
        })?;
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
        target.max(version)
    ))
    .map_err(|e| describe(path, e))?;
    tx.commit().map_err(|e| describe(path, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::DEFAULT_MMAP_SIZE;

    fn mapped(conn: &Connection) -> u64 {
        let bytes: i64 = conn
            .query_row("PRAGMA mmap_size", [], |r| r.get(0))
            .unwrap();
        u64::try_from(bytes).unwrap()
    }

    #[test]
    fn connections_map_as_much_of_the_file_as_the_options_say() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let defaults = SqliteOptions::default();
        let mut writer = open_writer(&path, &defaults).unwrap();
        migrate(&mut writer, &path).unwrap();
        assert_eq!(mapped(&writer), DEFAULT_MMAP_SIZE);
        assert_eq!(
            mapped(&open_reader(&path, &defaults).unwrap()),
            DEFAULT_MMAP_SIZE
        );
        let mapping = SqliteOptions {
            mmap_size: 64 * 1024 * 1024,
            ..SqliteOptions::default()
        };
        assert_eq!(
            mapped(&open_writer(&path, &mapping).unwrap()),
            64 * 1024 * 1024
        );
        assert_eq!(
            mapped(&open_reader(&path, &mapping).unwrap()),
            64 * 1024 * 1024
        );
    }
}
