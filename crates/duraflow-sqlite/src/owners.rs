//! Lease owners: which store openings are alive, so that the leases of one that died are
//! released at once instead of when they expire.
//!
//! Every opening of a database reserves a lease-token epoch (see [`crate::db::Tokens`]): the
//! high bits of every token it issues, so each lease row names the opening that holds it. The
//! opening also creates `<database>-owners/<epoch>` and holds an exclusive lock on it
//! (`flock`) for as long as it is open. The operating system releases the lock when the
//! process ends however it ends, SIGKILL included. Any store on the same file that can take
//! the lock of another epoch's file therefore knows that opening is gone, and releases every
//! lease it held: its turns and tasks become due at once, their fencing tokens stay what they
//! were (so nothing the dead process might still have written is accepted), and the attempt
//! it was making still counts.
//!
//! A store whose directory cannot be written (a read-only location) works without owner files
//! and falls back to lease expiry.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use tracing::{debug, warn};

use crate::db::EPOCH_SHIFT;
use crate::error::SqlResult;

/// What a [`Owner::sweep`] found.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    /// Leases released, of openings that are gone.
    pub(crate) released: usize,
    /// Other openings of the database that are alive.
    pub(crate) alive: usize,
}

/// This opening's owner file, locked while the store is open.
pub(crate) struct Owner {
    dir: PathBuf,
    epoch: i64,
    /// Holds the lock; `None` when the file could not be created.
    file: Option<File>,
}

/// The owner-file directory of the database at `db`.
pub(crate) fn owners_dir(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-owners");
    PathBuf::from(name)
}

impl Owner {
    /// Creates and locks the owner file of `epoch` for the database at `db`.
    pub(crate) fn claim(db: &Path, epoch: i64) -> Owner {
        let dir = owners_dir(db);
        let file = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(dir.join(epoch.to_string()))
            })
            .and_then(|file| match file.try_lock() {
                Ok(()) => Ok(file),
                Err(TryLockError::WouldBlock) => Err(std::io::Error::other(
                    "another opening holds the same epoch's owner file",
                )),
                Err(TryLockError::Error(e)) => Err(e),
            });
        let file = match file {
            Ok(file) => Some(file),
            Err(e) => {
                warn!(
                    dir = %dir.display(),
                    error = %e,
                    "cannot keep an owner file for the SQLite store: leases of a crashed \
                     process will be taken over when they expire, not at once"
                );
                None
            }
        };
        Owner { dir, epoch, file }
    }

    /// Releases the leases of every opening of this database that has ended without closing
    /// (its owner file is no longer locked), and removes their owner files.
    pub(crate) fn sweep(&self, conn: &Connection) -> SqlResult<Sweep> {
        let mut swept = Sweep::default();
        if self.file.is_none() {
            return Ok(swept);
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(swept);
        };
        for entry in entries.flatten() {
            let Some(epoch) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i64>().ok())
            else {
                continue;
            };
            if epoch == self.epoch {
                continue;
            }
            let path = entry.path();
            let Ok(file) = OpenOptions::new().write(true).open(&path) else {
                continue;
            };
            match file.try_lock() {
                Ok(()) => {}
                // Its opening is alive.
                Err(_) => {
                    swept.alive += 1;
                    continue;
                }
            }
            let released = release_leases_of(conn, epoch)?;
            swept.released += released;
            debug!(
                epoch,
                released, "released the leases of a SQLite store that is gone"
            );
            // Still holding its lock: nobody else is sweeping it meanwhile.
            if let Err(e) = std::fs::remove_file(&path) {
                debug!(path = %path.display(), error = %e, "cannot remove an owner file");
            }
        }
        Ok(swept)
    }

    /// Removes this opening's owner file (the store is closing; it holds no leases any more
    /// that anyone should wait for).
    pub(crate) fn retire(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(self.dir.join(self.epoch.to_string()));
            // Leave the directory when others still use it.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Releases every lease issued in `epoch`, in a transaction of its own: the instances become
/// due as if their leases had just expired (a checkpointed turn's even with an empty inbox,
/// so that it is redone), the tasks visible at once.
fn release_leases_of(conn: &Connection, epoch: i64) -> SqlResult<usize> {
    let low = epoch << EPOCH_SHIFT;
    let high = (epoch + 1) << EPOCH_SHIFT;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let released = (|| -> SqlResult<usize> {
        let instances = conn
            .prepare_cached(
                "UPDATE instances SET lease_until = 0,
                        due_at = coalesce((SELECT max(min(m.visible_at), instances.not_before)
                                             FROM messages m WHERE m.instance_id = instances.id),
                                           instances.not_before)
                 WHERE lease_until IS NOT NULL AND lease_token >= ?1 AND lease_token < ?2",
            )?
            .execute(params![low, high])?;
        let tasks = conn
            .prepare_cached(
                "UPDATE tasks SET lease_until = 0, visible_at = 0
                 WHERE lease_until IS NOT NULL AND lease_token >= ?1 AND lease_token < ?2",
            )?
            .execute(params![low, high])?;
        Ok(instances + tasks)
    })();
    match released {
        Ok(n) => {
            conn.execute_batch("COMMIT")?;
            Ok(n)
        }
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}
