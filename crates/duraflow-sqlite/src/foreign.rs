//! Commits of other processes, noticed: SQLite has no notifications between processes, so
//! the writer asks its own connection whether another connection committed since it last
//! asked (`PRAGMA data_version`, which the connection's own commits never change; it reads
//! the write-ahead log's shared index, not the file) and then wakes this process's waiters:
//! every waiter of turns, tasks and the feed, since which of these changed is not known, and
//! the watchers of the watched instances whose status or execution it finds changed (one read
//! of each watched instance, instead of every waiting client reading its own at every look).
//!
//! Without this, an engine learned of the work another process committed (a task completed
//! by a worker through `duraflow serve`, an instance started by a client of its own) only at
//! its next poll, and `duraflow serve` of a task an engine scheduled only at its next claim
//! poll (`--claim-poll-ms`, 50 ms by default): most of an HTTP worker's latency per task.
//!
//! The writer asks after each transaction and, while idle, every [`FOREIGN_CHECK`], but only
//! while the file is shared: while the owners' sweep finds another live opening, or since a
//! look found another connection's commit. A store alone on its file asks once a sweep.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use duraflow_store::Notifier;
use rusqlite::{Connection, OptionalExtension};

/// How often the writer looks for other processes' commits while the file is shared: the
/// most a waiter of this process waits, after another process committed, to be woken.
pub(crate) const FOREIGN_CHECK: Duration = Duration::from_millis(2);

/// How many watched instances may be read per [`FOREIGN_CHECK`]: with more watched, they are
/// read less often (every `FOREIGN_CHECK` per this many), so that a process with many waiting
/// clients spends on these reads no more than this many reads every 2 ms, whatever the other
/// processes commit (before, each client looked at its own instance every poll).
const WATCHED_PER_CHECK: usize = 32;

/// What the writer's connection last said of other connections' commits.
pub(crate) struct Foreign {
    /// `PRAGMA data_version` at the last look (`None` before the first, or after a failure).
    version: Option<i64>,
    /// When it last looked.
    looked: Instant,
    /// Each watched instance's status and execution when [`Foreign::read_watched`] last read
    /// it (`None`: there was no such instance).
    watched: HashMap<String, Option<(String, i64)>>,
    /// Whether another connection committed since the watched instances were last read.
    watched_stale: bool,
    /// When they were last read.
    watched_read: Instant,
}

impl Foreign {
    /// Takes the connection's present state as seen.
    pub(crate) fn new(conn: &Connection) -> Foreign {
        Foreign {
            version: data_version(conn),
            looked: Instant::now(),
            watched: HashMap::new(),
            watched_stale: false,
            watched_read: Instant::now(),
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

    /// Wakes this process's waiters after another connection's commit: every waiter of turns,
    /// tasks and the feed, and (see [`Foreign::read_watched`]) the watchers of the instances
    /// it changed.
    pub(crate) fn wake(&mut self, conn: &Connection, notifier: &Notifier) {
        notifier.turns.notify_waiters();
        notifier.tasks.notify_waiters();
        notifier.feed.notify_waiters();
        self.watched_stale = true;
        self.read_watched(conn, notifier);
    }

    /// If another connection committed since the watched instances were last read, and their
    /// turn has come (see [`WATCHED_PER_CHECK`]), reads them and wakes the watchers of those
    /// whose status or execution changed since, or that were not watched then (a watch begun
    /// since may have missed the change). An instance that cannot be read counts as changed.
    pub(crate) fn read_watched(&mut self, conn: &Connection, notifier: &Notifier) {
        if !self.watched_stale {
            return;
        }
        let ids = notifier.watched_ids();
        let shares = u32::try_from(ids.len().div_ceil(WATCHED_PER_CHECK)).unwrap_or(u32::MAX);
        if self.watched_read.elapsed() < FOREIGN_CHECK.saturating_mul(shares) {
            return;
        }
        self.watched_stale = false;
        self.watched_read = Instant::now();
        let mut read = HashMap::with_capacity(ids.len());
        let mut changed = Vec::new();
        for id in ids {
            let now = instance_state(conn, &id);
            let before = self.watched.get(&id);
            if !matches!((&now, before), (Ok(now), Some(before)) if now == before) {
                changed.push(id.clone());
            }
            if let Ok(now) = now {
                read.insert(id, now);
            }
        }
        self.watched = read;
        notifier.instances_changed(changed.iter().map(String::as_str));
    }
}

/// The status and execution of instance `id` (`None` when there is none).
fn instance_state(conn: &Connection, id: &str) -> rusqlite::Result<Option<(String, i64)>> {
    conn.prepare_cached("SELECT status, execution FROM instances WHERE id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
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

    /// With more watched instances than [`WATCHED_PER_CHECK`], a change found soon after the
    /// last read is put off, and read later, not never: its watcher wakes.
    #[tokio::test]
    async fn a_read_put_off_is_done_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let options = SqliteOptions::default();
        let writer = open_writer(&path, &options).unwrap();
        writer
            .execute_batch(
                "CREATE TABLE instances (id TEXT PRIMARY KEY, status TEXT, execution INTEGER)",
            )
            .unwrap();
        let notifier = Notifier::new();
        let ids: Vec<String> = (0..2 * WATCHED_PER_CHECK)
            .map(|i| format!("i{i}"))
            .collect();
        let watches: Vec<_> = ids.iter().map(|id| notifier.watch(id)).collect();
        let mut foreign = Foreign::new(&writer);
        let other = open_writer(&path, &options).unwrap();
        for id in &ids {
            other
                .execute("INSERT INTO instances VALUES (?1, 'running', 1)", [id])
                .unwrap();
        }
        // The watched instances as read once; then `i5` finishes.
        assert!(foreign.committed(&writer));
        foreign.watched_read = Instant::now() - 2 * FOREIGN_CHECK;
        foreign.wake(&writer, &notifier);
        assert_eq!(foreign.watched.len(), ids.len(), "read at once");
        let woken = watches[5].notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        other
            .execute(
                "UPDATE instances SET status = 'completed' WHERE id = 'i5'",
                [],
            )
            .unwrap();
        // Read just now, by the clock: 64 watched wait two shares of `FOREIGN_CHECK`.
        assert!(foreign.committed(&writer));
        foreign.watched_read = Instant::now() + Duration::from_secs(3600);
        foreign.wake(&writer, &notifier);
        assert!(
            !duraflow_store::conformance::fired(woken.as_mut()),
            "put off"
        );
        // Its turn has come: read, and only the changed one wakes.
        let others = watches[6].notified();
        tokio::pin!(others);
        others.as_mut().enable();
        foreign.watched_read = Instant::now() - 2 * FOREIGN_CHECK;
        foreign.read_watched(&writer, &notifier);
        assert!(
            duraflow_store::conformance::fired(woken.as_mut()),
            "read in turn"
        );
        assert!(!duraflow_store::conformance::fired(others.as_mut()));
    }
}
