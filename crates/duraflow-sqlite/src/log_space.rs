//! The write-ahead log's file kept written to its working length.
//!
//! With `synchronous = FULL` every commit ends in an `fdatasync` of the log. A commit whose
//! frames lengthen the file also has the file system make the new length and the blocks it
//! allocated durable, and on the machines measured that sync took about twice as long as one
//! over blocks already written (the benchmarks report both: `disk_sync_append_ms` and
//! `disk_sync_overwrite_ms`). A new log starts empty and grows until a checkpoint starts it
//! over, so every opening's first commits paid the longer sync: in a workflow of sequential
//! activities on a new file, 0.22 ms an activity until the first checkpoint, 0.15 ms after
//! (BENCHMARKS.md, "SQLite: the log's file written to its length at opening").
//!
//! So the writer, when it starts, writes zeros from the log's end up to [`LOG_BYTES`] and
//! syncs them once ([`reserve`]), holding the write lock so that no other connection appends
//! to the log meanwhile. SQLite reads a log only up to the first frame whose salts and
//! checksum do not match its header, so the zeros are never taken for frames, in this process
//! or in a recovery after a crash. Starting the log over keeps the file's length (the writer's
//! own checkpoints `RESTART` the log rather than `TRUNCATE` it, see `checkpoint.rs`), and
//! `journal_size_limit` cuts a log that a burst made longer back to the same length. Only a
//! fold (`Store::checkpoint`, and the one at closing) leaves the file empty, as it says.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rusqlite::Connection;
use tracing::debug;

/// The length the log's file is kept at: the `journal_size_limit` of the writer's connection
/// too (`open.rs`), so the limit and the reserve agree.
pub(crate) const LOG_BYTES: u64 = 4 << 20;

/// How many zeros are written at a time.
const CHUNK: usize = 256 << 10;

/// Writes the log's file out to [`LOG_BYTES`] with zeros and syncs it, under the write lock of
/// `conn` (the writer's connection, idle; it waits for the lock as any write does, up to the
/// busy timeout). Does nothing for a database without a file, or whose log's file is already
/// that long or does not exist; a failure (the lock still taken, a full disk) is logged and
/// left alone, since commits only run slower without the reserve. Returns how many bytes it
/// wrote.
pub(crate) fn reserve(conn: &Connection) -> u64 {
    let Some(db) = conn.path().filter(|p| !p.is_empty()) else {
        return 0;
    };
    let log = format!("{db}-wal");
    // `BEGIN IMMEDIATE` takes the log's write lock: no other connection, in this process or
    // another, appends frames, restarts the log or cuts its file while the zeros are written.
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        debug!(error = %e, "the SQLite log's file was not reserved: the write lock is taken");
        return 0;
    }
    let written = extend(Path::new(&log), LOG_BYTES);
    if let Err(e) = conn.execute_batch("ROLLBACK") {
        debug!(error = %e, "ending the transaction that reserved the SQLite log failed");
    }
    written.unwrap_or_else(|e| {
        debug!(error = %e, log, "the SQLite log's file was not reserved");
        0
    })
}

/// Appends zeros to the file at `path` up to `bytes` and syncs them; never creates the file,
/// and never writes over what it holds.
///
/// It opens and closes a descriptor of its own. Closing a descriptor drops every POSIX lock
/// the process holds on that file, which would be corruption on the database file (SQLite's
/// "How To Corrupt" 2.2); SQLite takes none on the log's file, only on the database file and
/// the `-shm` index, so closing this one drops nothing.
fn extend(path: &Path, bytes: u64) -> io::Result<u64> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len >= bytes {
        return Ok(0);
    }
    let zeros = vec![0u8; CHUNK];
    let mut at = len;
    while at < bytes {
        let n = usize::try_from(bytes - at).map_or(CHUNK, |left| left.min(CHUNK));
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()?;
    Ok(bytes - len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::open::open_writer;
    use crate::SqliteOptions;

    fn log_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("db.sqlite-wal")).map_or(0, |m| m.len())
    }

    /// The reserve lengthens the log's file once, commits then write within it, and a copy of
    /// the files taken without closing (as a crash leaves them) opens with every commit and
    /// nothing more: the zeros are not read as frames.
    #[test]
    fn commits_write_within_the_reserved_log_and_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = open_writer(&path, &SqliteOptions::default()).unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let before = log_len(dir.path());
        assert!(
            before > 0 && before < LOG_BYTES,
            "the log holds {before} bytes"
        );
        assert_eq!(reserve(&conn), LOG_BYTES - before);
        assert_eq!(log_len(dir.path()), LOG_BYTES);
        assert_eq!(reserve(&conn), 0, "a reserved log is left as it is");

        for v in 0..100 {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [v]).unwrap();
        }
        assert_eq!(
            log_len(dir.path()),
            LOG_BYTES,
            "the commits were written within the reserved length"
        );

        let crashed = tempfile::tempdir().unwrap();
        for name in ["db.sqlite", "db.sqlite-wal"] {
            std::fs::copy(dir.path().join(name), crashed.path().join(name)).unwrap();
        }
        let reopened = Connection::open(crashed.path().join("db.sqlite")).unwrap();
        let (rows, sum): (i64, i64) = reopened
            .query_row("SELECT count(*), sum(v) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((rows, sum), (100, 4950));
        let check: String = reopened
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// A log that another connection is writing is not touched: with the write lock still taken
    /// after the busy timeout (none here), the reserve gives up, and once the lock is free it
    /// lengthens the file and keeps that connection's frames.
    #[test]
    fn the_reserve_leaves_a_log_being_written_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let options = SqliteOptions {
            busy_timeout: std::time::Duration::ZERO,
            ..SqliteOptions::default()
        };
        let conn = open_writer(&path, &options).unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let other = open_writer(&path, &options).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (1)")
            .unwrap();
        let before = log_len(dir.path());
        assert_eq!(
            reserve(&conn),
            0,
            "the write lock was taken: nothing written"
        );
        assert_eq!(log_len(dir.path()), before);
        other.execute_batch("COMMIT").unwrap();
        assert!(reserve(&conn) > 0);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    /// A database without a file has no log to reserve.
    #[test]
    fn a_database_in_memory_reserves_nothing() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(reserve(&conn), 0);
    }
}
