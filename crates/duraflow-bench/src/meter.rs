//! Counting a SQLite store's commits without touching the store: the write-ahead log is read.
//!
//! Every committed write transaction appends frames to the WAL and marks its last frame as a
//! commit frame (a non-zero database size in the frame header). The WAL is normally rewound
//! after a checkpoint, so the meter holds a read transaction open on a connection of its own
//! from the start of the run: while a reader needs the old state, checkpoints cannot copy the
//! frames written after it into the database, and the WAL is never rewound. At the end the
//! commit frames of the current WAL generation are counted.
//!
//! The effect on the run: the WAL grows instead of being checkpointed every 1,000 pages, which
//! saves the checkpoints' writes and fsyncs. Write transactions that change nothing (a fetch
//! that found no work) write no frames and are not counted.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::Result;

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// A count of the commits a SQLite store makes while the meter lives.
pub(crate) struct WalMeter {
    reader: Connection,
    wal: PathBuf,
    start: WalScan,
}

/// What a scan of the WAL found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct WalScan {
    /// The header's checkpoint sequence number and salts; `None` for a WAL with no header.
    generation: Option<(u32, u32, u32)>,
    /// Frames of the current generation.
    frames: u64,
    /// Commit frames among them.
    commits: u64,
    /// The page size.
    page_size: u32,
}

/// What the meter counted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalCount {
    /// Committed write transactions.
    pub(crate) commits: u64,
    /// Frames (pages) they wrote.
    pub(crate) frames: u64,
    /// The page size, in bytes.
    pub(crate) page_size: u32,
}

impl WalMeter {
    /// Opens a read transaction on `db` and notes where the WAL is.
    pub(crate) fn start(db: &Path) -> Result<WalMeter> {
        let reader = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.execute_batch("BEGIN")?;
        // The first read takes the snapshot the transaction keeps.
        let _: i64 = reader.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let start = scan(&wal)?;
        Ok(WalMeter { reader, wal, start })
    }

    /// Counts the commits since [`WalMeter::start`] and ends the read transaction. Call it once
    /// the store's writes are over (its engine shut down) and before the store is closed.
    pub(crate) fn finish(self) -> Result<WalCount> {
        let end = scan(&self.wal)?;
        let _ = self.reader.execute_batch("COMMIT");
        let (commits, frames) = match (self.start.generation, end.generation) {
            (Some((a, _, _)), Some((b, _, _))) if a == b => (
                end.commits.checked_sub(self.start.commits),
                end.frames.checked_sub(self.start.frames),
            ),
            // The WAL had been checkpointed in full before the meter started, so it was
            // rewound once at the first commit after: every frame is new.
            (Some((a, _, _)), Some((b, _, _))) if b == a.wrapping_add(1) => {
                (Some(end.commits), Some(end.frames))
            }
            (None, _) => (Some(end.commits), Some(end.frames)),
            _ => (None, None),
        };
        match (commits, frames) {
            (Some(commits), Some(frames)) => Ok(WalCount {
                commits,
                frames,
                page_size: end.page_size,
            }),
            _ => Err(format!(
                "the SQLite WAL was rewound during the run (start {:?}, end {:?}); commits not \
                 counted",
                self.start, end
            )
            .into()),
        }
    }
}

/// Reads the WAL's header and frame headers up to the first frame of another generation.
fn scan(wal: &Path) -> Result<WalScan> {
    let file = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(WalScan::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", wal.display()).into()),
    };
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut header = [0u8; WAL_HEADER];
    if len < WAL_HEADER as u64 || reader.read_exact(&mut header).is_err() {
        return Ok(WalScan::default());
    }
    // A log whose file the store reserved (written with zeros) before its first commit.
    if header == [0; WAL_HEADER] {
        return Ok(WalScan::default());
    }
    let magic = be32(&header, 0);
    if magic != 0x377f_0682 && magic != 0x377f_0683 {
        return Err(format!("{} is not a SQLite WAL (magic {magic:#x})", wal.display()).into());
    }
    let page_size = be32(&header, 8);
    let generation = (be32(&header, 12), be32(&header, 16), be32(&header, 20));
    let mut scan = WalScan {
        generation: Some(generation),
        frames: 0,
        commits: 0,
        page_size,
    };
    let frame_len = FRAME_HEADER as u64 + u64::from(page_size);
    let mut offset = WAL_HEADER as u64;
    let mut frame = [0u8; FRAME_HEADER];
    while offset + frame_len <= len {
        reader.read_exact(&mut frame)?;
        if (be32(&frame, 8), be32(&frame, 12)) != (generation.1, generation.2) {
            break;
        }
        scan.frames += 1;
        if be32(&frame, 4) != 0 {
            scan.commits += 1;
        }
        reader.seek(SeekFrom::Current(i64::from(page_size)))?;
        offset += frame_len;
    }
    Ok(scan)
}

/// The big-endian `u32` at `at` (0 past the end).
fn be32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use super::*;

    /// A database in WAL mode with a table `t`, and a connection that writes it.
    fn wal_database(dir: &Path) -> (PathBuf, Connection) {
        let path = dir.join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x)")
            .unwrap();
        (path, writer)
    }

    #[test]
    fn counts_commits_of_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_database(dir.path());
        let meter = WalMeter::start(&path).unwrap();
        for i in 0..50 {
            writer.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        writer
            .execute_batch("BEGIN; UPDATE t SET x = x WHERE 0; COMMIT")
            .unwrap();
        let count = meter.finish().unwrap();
        assert_eq!(count.commits, 50);
        assert!(count.frames >= 50);
    }

    #[test]
    fn counts_after_a_full_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=5; CREATE TABLE t(x)",
            )
            .unwrap();
        for i in 0..20 {
            writer.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        writer
            .execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
            .unwrap();
        let meter = WalMeter::start(&path).unwrap();
        for i in 0..30 {
            writer.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        let count = meter.finish().unwrap();
        assert_eq!(count.commits, 30);
    }

    /// The store writes a new log's file out with zeros before its first commit: a header of
    /// zeros is a log with no frames yet, not an error.
    #[test]
    fn counts_in_a_log_reserved_with_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_database(dir.path());
        writer
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        std::fs::write(dir.path().join("t.db-wal"), vec![0u8; 1 << 20]).unwrap();
        let meter = WalMeter::start(&path).unwrap();
        for i in 0..30 {
            writer.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        let count = meter.finish().unwrap();
        assert_eq!(count.commits, 30);
    }
}
