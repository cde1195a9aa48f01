//! Checkpoints off the writer thread.
//!
//! In WAL mode SQLite folds the log back into the database file at checkpoints, and by default
//! the commit that makes the log pass 1,000 pages runs one itself: measured on the throughput
//! benchmark, those commits took about 18 ms each and half the writer's commit time. The
//! writer's connection therefore has automatic checkpoints off, and a checkpointer thread with
//! a connection of its own runs `PRAGMA wal_checkpoint(PASSIVE)` whenever the writer has
//! committed a while, and once a second regardless. A passive checkpoint never waits for
//! readers or writers, so the writer goes on committing while it copies pages.
//!
//! SQLite starts the log over only after a checkpoint that copied all of it, which a
//! checkpoint racing a busy writer never does (a test showed the log growing to 50 MB). So
//! once the background checkpoint is done, the writer runs one of its own between two
//! transactions ([`Checkpointer::finish`]): it copies only the frames written meanwhile, and
//! completes.
//!
//! On a starved core that is not enough: the thread may fall behind, and SQLite starts the log
//! over only when no connection still reads the old one, which keeps failing while the thread
//! is busy with its next checkpoint. So the writer runs a `RESTART` checkpoint of its own
//! (having the thread stand aside and waiting for its checkpoint to end, but never for readers)
//! when the thread has
//! not finished one for [`COMMITS_BEFORE_WRITER_CHECKPOINTS`] commits, or when the log still
//! holds more than `MAX_LOG_FRAMES` frames after one. And since SQLite reuses the log file
//! without shrinking it when the log starts over, the writer's connection sets
//! `journal_size_limit` (`open.rs`), which cuts the file back to the length the writer reserves
//! for it. (A `TRUNCATE` checkpoint would cut it to nothing, and the commits after it would
//! lengthen the file again, each paying the longer sync of `log_space.rs`.) The log stays
//! bounded whatever the scheduling (`the_checkpointer_keeps_the_log_bounded`, which once failed
//! on a loaded machine).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use duraflow_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tracing::debug;

/// Commits between two nudges of the checkpointer (a few MiB of log at the usual batch size).
pub(crate) const COMMITS_PER_CHECKPOINT: u32 = 64;

/// Commits after which the writer checkpoints on its own if the checkpointer thread has not
/// finished one meanwhile (a thread starved of CPU on a busy machine): it bounds the log
/// whatever the scheduling.
pub(crate) const COMMITS_BEFORE_WRITER_CHECKPOINTS: u32 = 8 * COMMITS_PER_CHECKPOINT;

/// The most frames the log may hold after a finished checkpoint before the writer restarts
/// it (about 4 MiB at SQLite's default 4 KiB pages).
const MAX_LOG_FRAMES: i64 = 1_024;

/// How often the checkpointer runs when nobody nudges it.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// The most log frames a background checkpoint may leave uncopied for the writer to finish
/// (more, and it runs again first): the writer copies them between two transactions.
const WRITER_SHARE: i64 = 256;

/// The most background checkpoints in a row before the writer is asked to finish anyway.
const ROUNDS: u32 = 8;

/// The checkpointer thread.
pub(crate) struct Checkpointer {
    nudge: SyncSender<()>,
    thread: JoinHandle<()>,
    /// Set after each background checkpoint, for the writer to finish it.
    copied: Arc<AtomicBool>,
    /// Set while the writer waits to checkpoint on its own: the thread starts no checkpoint
    /// meanwhile, so the checkpoint lock becomes free.
    writer_turn: Arc<AtomicBool>,
    /// Held by whoever runs a checkpoint (the thread, or the writer's own), so that the writer
    /// waits for the thread's checkpoint to end instead of finding SQLite's checkpoint lock
    /// taken.
    running: Arc<Mutex<()>>,
}

impl Checkpointer {
    /// Starts checkpointing through `conn`, a read-write connection to the database.
    pub(crate) fn start(conn: Connection) -> StoreResult<Checkpointer> {
        let (nudge, rx) = mpsc::sync_channel::<()>(1);
        let copied = Arc::new(AtomicBool::new(false));
        let done = copied.clone();
        let writer_turn = Arc::new(AtomicBool::new(false));
        let stand_aside = writer_turn.clone();
        let running = Arc::new(Mutex::new(()));
        let gate = running.clone();
        let thread = std::thread::Builder::new()
            .name("duraflow-sqlite-checkpointer".into())
            .spawn(move || {
                // Until the writer hangs up: a nudge, or a second without one.
                while let Ok(()) | Err(RecvTimeoutError::Timeout) = rx.recv_timeout(IDLE_CHECKPOINT)
                {
                    // Copy until what is left is the writer's share (the writer keeps writing
                    // meanwhile, so that is all it can ever be).
                    for _ in 0..ROUNDS {
                        if stand_aside.load(Ordering::Acquire) {
                            break;
                        }
                        let copying = gate.lock().unwrap_or_else(PoisonError::into_inner);
                        let left = passive(&conn);
                        drop(copying);
                        match left {
                            Ok(left) if left > WRITER_SHARE => continue,
                            Ok(_) => {}
                            Err(e) => debug!(
                                error = %e,
                                "a passive SQLite checkpoint failed; the next one will try again"
                            ),
                        }
                        break;
                    }
                    done.store(true, Ordering::Release);
                }
            })
            .map_err(|e| StoreError::Other(format!("cannot start the SQLite checkpointer: {e}")))?;
        Ok(Checkpointer {
            nudge,
            thread,
            copied,
            writer_turn,
            running,
        })
    }

    /// Asks for a checkpoint soon; never blocks (a nudge already pending is enough).
    pub(crate) fn nudge(&self) {
        let _ = self.nudge.try_send(());
    }

    /// Called by the writer between transactions: once a background checkpoint has copied the
    /// log, copies what was written since on the writer's own connection, so that the
    /// checkpoint completes and the next transaction starts the log over.
    ///
    /// `commits` counts the writer's commits since the last checkpoint it finished: past
    /// [`COMMITS_BEFORE_WRITER_CHECKPOINTS`] it copies the whole log and starts it over itself
    /// (`RESTART`, after the checkpoint the thread is running, never waiting for readers).
    pub(crate) fn finish(&self, writer: &Connection, commits: u32) -> Finish {
        if commits >= COMMITS_BEFORE_WRITER_CHECKPOINTS {
            // The thread has fallen behind.
            return self.restart(writer);
        }
        if !self.copied.swap(false, Ordering::AcqRel) {
            return Finish::NotYet;
        }
        // Finish the thread's checkpoint. SQLite starts the log over at the next transaction
        // only if no connection still reads the old one; when that keeps failing (the thread's
        // connection busy with its next checkpoint on a starved core), the log only grows, so
        // past `MAX_LOG_FRAMES` the writer restarts it.
        match frames(writer) {
            Ok((log, 0)) if log > MAX_LOG_FRAMES => self.restart(writer),
            Ok((_, 0)) => Finish::Done,
            Ok(_) => Finish::NotYet,
            Err(e) => {
                debug!(error = %e, "finishing a SQLite checkpoint failed; the next one will try again");
                Finish::NotYet
            }
        }
    }

    /// Copies the whole log and starts it over on the writer's connection (keeping its file's
    /// length, which the next commit cuts back to `journal_size_limit`): keeps the thread from
    /// starting another checkpoint and waits for its current one (a passive checkpoint, which
    /// never waits itself), but never waits for readers. A reader that still uses the old log
    /// (a long read, another process's snapshot) makes it give up at once: waiting would hold
    /// every commit queued behind it, for as long as that reader reads.
    fn restart(&self, writer: &Connection) -> Finish {
        let done = match self.on_writer(|| {
            without_waiting(writer, |conn| {
                conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0))
            })
        }) {
            Ok(busy) => busy == 0,
            Err(e) => {
                debug!(error = %e, "a SQLite checkpoint by the writer failed; it will try again");
                false
            }
        };
        if done {
            self.copied.store(false, Ordering::Release);
            Finish::Done
        } else {
            Finish::Blocked
        }
    }

    /// Folds the whole log into the database file and truncates it on the writer's connection
    /// (what `Store::checkpoint` asks for), after the thread's checkpoint in progress, waiting
    /// for readers up to the connection's busy timeout. Without standing the thread aside, a
    /// fold that met its passive checkpoint found the checkpoint lock taken and gave up at once.
    pub(crate) fn fold(&self, writer: &Connection) -> StoreResult<()> {
        let folded = self.on_writer(|| crate::db::fold_log(writer));
        if folded.is_ok() {
            self.copied.store(false, Ordering::Release);
        }
        folded
    }

    /// Runs the writer's own checkpoint `f`: keeps the thread from starting another one and
    /// waits for its current one to end first.
    fn on_writer<T>(&self, f: impl FnOnce() -> T) -> T {
        self.writer_turn.store(true, Ordering::Release);
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let result = f();
        drop(running);
        self.writer_turn.store(false, Ordering::Release);
        result
    }

    /// Stops the thread and closes its connection.
    pub(crate) fn stop(self) {
        drop(self.nudge);
        let _ = self.thread.join();
    }
}

/// What the writer's end of a checkpoint came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// A checkpoint finished: the writer starts counting its commits again.
    Done,
    /// Nothing to finish yet.
    NotYet,
    /// The writer's own checkpoint found readers on the old log and gave up: it tries again
    /// [`COMMITS_PER_CHECKPOINT`] commits later, not at every commit.
    Blocked,
}

/// Runs `f` on `conn` with its busy handler off (a locked database fails at once), and puts
/// the connection's busy timeout back afterwards.
fn without_waiting<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let timeout: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
    conn.busy_timeout(Duration::ZERO)?;
    let result = f(conn);
    conn.busy_timeout(Duration::from_millis(u64::try_from(timeout).unwrap_or(0)))?;
    result
}

/// Runs a passive checkpoint; returns how many frames of the log it left uncopied.
fn passive(conn: &Connection) -> rusqlite::Result<i64> {
    frames(conn).map(|(_, left)| left)
}

/// Runs a passive checkpoint; returns the frames in the log and how many it left uncopied.
fn frames(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        let log: i64 = r.get(1)?;
        let copied: i64 = r.get(2)?;
        Ok((log, (log - copied).max(0)))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::log_space::{reserve, LOG_BYTES};
    use crate::open::open_writer;
    use crate::SqliteOptions;

    /// The writer's own checkpoint starts the log over and keeps its file's length, so the
    /// commits after it still overwrite blocks already written (a `TRUNCATE` cut the file to
    /// nothing).
    #[test]
    fn the_writers_checkpoint_restarts_the_log_and_keeps_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let options = SqliteOptions::default();
        let writer = open_writer(&path, &options).unwrap();
        writer.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        reserve(&writer);
        for v in 0..50 {
            writer
                .execute("INSERT INTO t (v) VALUES (?1)", [v])
                .unwrap();
        }
        let log_len = || {
            std::fs::metadata(dir.path().join("db.sqlite-wal"))
                .unwrap()
                .len()
        };
        let checkpointer = Checkpointer::start(open_writer(&path, &options).unwrap()).unwrap();

        let finished = checkpointer.finish(&writer, COMMITS_BEFORE_WRITER_CHECKPOINTS);
        assert_eq!(finished, Finish::Done);
        assert_eq!(log_len(), LOG_BYTES, "the log's file keeps its length");
        writer.execute("INSERT INTO t (v) VALUES (50)", []).unwrap();
        let (frames, _) = frames(&writer).unwrap();
        assert!(
            (1..10).contains(&frames),
            "the log started over: it holds {frames} frames after one more commit"
        );
        assert_eq!(log_len(), LOG_BYTES);
        let rows: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 51);
        checkpointer.stop();
    }
}
