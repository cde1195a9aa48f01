//! Commits of other processes, noticed: SQLite has no notifications between processes, so
//! the writer asks its own connection whether another connection committed since it last
//! asked (`PRAGMA data_version`, which the connection's own commits never change; it reads
//! the write-ahead log's shared index, not the file) and then wakes every waiter of this
//! process, since what changed is not known.
//!
//! Without this, an engine learned of the work another process committed (a task completed
//! by a worker through `duraflow serve`, an instance started by a client of its own) only at
//! its next poll, and `duraflow serve` of a task an engine scheduled only at its next claim
//! poll (`--claim-poll-ms`, 50 ms by default): most of an HTTP worker's latency per task.
//!
//! The writer asks after each transaction and, while idle, every [`FOREIGN_CHECK`], but only
//! while the file is shared: while the owners' sweep finds another live opening, or since a
//! look found another connection's commit. A store alone on its file asks once a sweep.

use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the writer looks for other processes' commits while the file is shared: the
/// most a waiter of this process waits, after another process committed, to be woken.
pub(crate) const FOREIGN_CHECK: Duration = Duration::from_millis(2);

/// What the writer's connection last said of other connections' commits.
pub(crate) struct Foreign {
    /// `PRAGMA data_version` at the last look (`None` before the first, or after a failure).
    version: Option<i64>,
    /// When it last looked.
    looked: Instant,
}

impl Foreign {
    /// Takes the connection's present state as seen.
    pub(crate) fn new(conn: &Connection) -> Foreign {
        Foreign {
            version: data_version(conn),
            looked: Instant::now(),
        }
    }

    /// Whether [`FOREIGN_CHECK`] has passed since the last look.
    pub(crate) fn due(&self) -> bool {
        self.looked.elapsed() >= FOREIGN_CHECK
    }

    /// Whether another connection committed since the last look. A look that fails (the
    /// database is locked, say) answers that one did: a spurious wakeup costs a read, a
    /// missed one a poll interval.
    pub(crate) fn committed(&mut self, conn: &Connection) -> bool {
        self.looked = Instant::now();
        let now = data_version(conn);
        let changed = now.is_none() || now != self.version;
        self.version = now;
        changed
    }
}

fn data_version(conn: &Connection) -> Option<i64> {
    conn.prepare_cached("PRAGMA data_version")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::open::{open_reader, open_writer};
    use crate::SqliteOptions;

    /// The connection's own commits and checkpoints (its own, and another connection's, as the
    /// checkpointer thread runs them) are not taken for another's commit; another
    /// connection's commit is, once.
    #[test]
    fn only_other_connections_commits_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let options = SqliteOptions::default();
        let writer = open_writer(&path, &options).unwrap();
        writer.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let mut foreign = Foreign::new(&writer);
        let checkpointer = open_writer(&path, &options).unwrap();
        let reader = open_reader(&path, &options).unwrap();
        for v in 0..100 {
            writer
                .execute("INSERT INTO t (v) VALUES (?1)", [v])
                .unwrap();
            if v % 10 == 0 {
                checkpointer
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    .unwrap();
            }
            if v % 25 == 0 {
                writer
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .unwrap();
            }
            let _: i64 = reader
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert!(
                !foreign.committed(&writer),
                "own commit {v} taken for another's"
            );
        }
        let other = open_writer(&path, &options).unwrap();
        other
            .execute("INSERT INTO t (v) VALUES (1000)", [])
            .unwrap();
        assert!(foreign.committed(&writer), "another connection's commit");
        assert!(!foreign.committed(&writer), "noticed once");
    }
}
