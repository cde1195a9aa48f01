//! The connections: one writer thread that groups writes into transactions, and a small pool of
//! reader connections.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use duraflow_store::{Notifier, StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;
use tracing::warn;

use crate::error::{store_error, SqlResult};
use crate::open::open_reader;

/// Whom to wake once a transaction has committed.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    pub(crate) turns: bool,
    pub(crate) tasks: bool,
    pub(crate) instances: bool,
}

/// A write waiting for the writer thread.
trait Job: Send {
    /// Whether the write must be on disk before it is acknowledged. Writes that only take
    /// leases need not be: a lease protects work from other live processes, and a power loss
    /// leaves none, so losing one costs nothing. A later durable commit makes every earlier
    /// write durable too, since the write-ahead log is synced as a whole.
    fn durable(&self) -> bool;
    /// Runs inside the batch's transaction (in its own savepoint) and returns how to answer
    /// once the transaction has committed or failed.
    fn run(self: Box<Self>, conn: &Connection, wake: &mut Wake) -> Box<dyn Answer>;
    /// Answers without running (the transaction could not begin).
    fn fail(self: Box<Self>, error: StoreError);
}

trait Answer: Send {
    /// The write's own error, if it failed.
    fn error(&self) -> Option<StoreError>;
    fn send(self: Box<Self>, commit_error: Option<&StoreError>);
}

struct WriteJob<F, T> {
    f: F,
    durable: bool,
    reply: oneshot::Sender<StoreResult<T>>,
}

struct WriteAnswer<T> {
    result: StoreResult<T>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Job for WriteJob<F, T>
where
    F: FnOnce(&Connection, &mut Wake) -> SqlResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn run(self: Box<Self>, conn: &Connection, wake: &mut Wake) -> Box<dyn Answer> {
        let WriteJob { f, reply, .. } = *self;
        let result = in_savepoint(conn, |c| f(c, wake));
        Box::new(WriteAnswer { result, reply })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

impl<T: Send + 'static> Answer for WriteAnswer<T> {
    fn error(&self) -> Option<StoreError> {
        self.result.as_ref().err().cloned()
    }

    fn send(self: Box<Self>, commit_error: Option<&StoreError>) {
        let result = match commit_error {
            Some(e) => Err(e.clone()),
            None => self.result,
        };
        let _ = self.reply.send(result);
    }
}

/// Runs `f` in a savepoint: its changes are undone if it fails, leaving the rest of the batch.
/// Savepoints nest: a write made of several independent items runs each in one of its own.
pub(crate) fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> SqlResult<T>,
) -> StoreResult<T> {
    conn.prepare_cached("SAVEPOINT op")
        .and_then(|mut s| s.execute([]))
        .map_err(store_error)?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE op")
                .and_then(|mut s| s.execute([]))
                .map_err(store_error)?;
            Ok(v)
        }
        Err(e) => {
            if !conn.is_autocommit() {
                if let Err(undo) = conn.execute_batch("ROLLBACK TO op; RELEASE op") {
                    warn!(error = %undo, "rolling back a failed SQLite write failed");
                }
            }
            Err(e.into())
        }
    }
}

/// Runs a batch of writes in one transaction, each in its own savepoint, and answers them once
/// it has committed. Some errors (a full disk, an I/O error) make SQLite roll back the whole
/// transaction: the writes before the failing one are then answered with that error, and the
/// writes after it go on in a new transaction.
fn run_batch(
    conn: &Connection,
    batch: Vec<Box<dyn Job>>,
    notifier: &Notifier,
    sync: &mut SyncLevel,
) {
    let durable = batch.iter().any(|job| job.durable());
    if let Err(e) = sync.set(conn, durable) {
        for job in batch {
            job.fail(e.clone());
        }
        return;
    }
    let mut jobs = batch.into_iter().peekable();
    while jobs.peek().is_some() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = store_error(e);
            for job in jobs {
                job.fail(e.clone());
            }
            return;
        }
        let mut wake = Wake::default();
        let mut answers: Vec<Box<dyn Answer>> = Vec::new();
        let mut rolled_back = None;
        for job in jobs.by_ref() {
            let answer = job.run(conn, &mut wake);
            if conn.is_autocommit() {
                // SQLite ended the transaction itself: nothing before this write survived.
                let cause = answer.error().unwrap_or_else(|| {
                    StoreError::Other("SQLite rolled back the transaction".into())
                });
                answer.send(None);
                rolled_back = Some(cause);
                break;
            }
            answers.push(answer);
        }
        if let Some(cause) = rolled_back {
            for answer in answers {
                answer.send(Some(&cause));
            }
            continue;
        }
        let commit_error = conn.execute_batch("COMMIT").err().map(|e| {
            if !conn.is_autocommit() {
                if let Err(undo) = conn.execute_batch("ROLLBACK") {
                    warn!(error = %undo, "rolling back a failed SQLite commit failed");
                }
            }
            store_error(e)
        });
        // Wake before answering: whoever hears back has the wakeup already armed.
        if commit_error.is_none() {
            if wake.turns {
                notifier.turns.notify_waiters();
            }
            if wake.tasks {
                notifier.tasks.notify_waiters();
            }
            if wake.instances {
                notifier.instances.notify_waiters();
            }
        }
        for answer in answers {
            answer.send(commit_error.as_ref());
        }
    }
}

/// The writer connection's `synchronous` setting, switched per transaction: the configured one
/// for a batch with a durable write, `NORMAL` for a batch that only takes leases.
pub(crate) struct SyncLevel {
    /// `synchronous = FULL` was asked for.
    full: bool,
    /// What the connection is set to now.
    current_full: bool,
}

impl SyncLevel {
    fn new(full: bool) -> Self {
        // `open_writer` set the configured level.
        SyncLevel {
            full,
            current_full: full,
        }
    }

    fn set(&mut self, conn: &Connection, durable: bool) -> StoreResult<()> {
        let want = self.full && durable;
        if want != self.current_full {
            let level = if want { "FULL" } else { "NORMAL" };
            conn.execute_batch(&format!("PRAGMA synchronous = {level}"))
                .map_err(store_error)?;
            self.current_full = want;
        }
        Ok(())
    }
}

/// The database: writes go through one thread, reads through a pool.
pub(crate) struct Db {
    jobs: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    busy_timeout: Duration,
}

impl Db {
    pub(crate) fn start(
        conn: Connection,
        path: PathBuf,
        busy_timeout: Duration,
        max_batch: usize,
        full_sync: bool,
        notifier: Arc<Notifier>,
    ) -> StoreResult<Db> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let writer = std::thread::Builder::new()
            .name("duraflow-sqlite-writer".into())
            .spawn(move || {
                writer_loop(
                    conn,
                    rx,
                    max_batch.max(1),
                    SyncLevel::new(full_sync),
                    notifier,
                )
            })
            .map_err(|e| {
                StoreError::Other(format!("cannot start the SQLite writer thread: {e}"))
            })?;
        Ok(Db {
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            path,
            busy_timeout,
        })
    }

    /// Queues `f` to run in a write transaction, grouped with whatever other writes are queued,
    /// and returns a future of its result once that transaction has committed (and is on disk,
    /// as far as the configured `synchronous` promises). The write is queued when this is
    /// called, not when the future is first polled, so several writes started together share a
    /// transaction.
    pub(crate) fn write<T, F>(&self, f: F) -> impl std::future::Future<Output = StoreResult<T>>
    where
        F: FnOnce(&Connection, &mut Wake) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.queue(f, true)
    }

    /// Like [`Db::write`] for a write that only takes leases: its transaction, unless shared
    /// with a durable write, is not synced to disk (see [`Job::durable`]).
    pub(crate) fn lease<T, F>(&self, f: F) -> impl std::future::Future<Output = StoreResult<T>>
    where
        F: FnOnce(&Connection, &mut Wake) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.queue(f, false)
    }

    fn queue<T, F>(&self, f: F, durable: bool) -> impl std::future::Future<Output = StoreResult<T>>
    where
        F: FnOnce(&Connection, &mut Wake) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let sent = {
            let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            match jobs.as_ref() {
                Some(tx) => tx.send(Box::new(WriteJob { f, durable, reply })).is_ok(),
                None => false,
            }
        };
        async move {
            if !sent {
                return Err(StoreError::Unavailable("the SQLite store is closed".into()));
            }
            rx.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable("the SQLite writer stopped".into()))
            })
        }
    }

    /// Runs `f` on a reader connection, off the async runtime.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let busy_timeout = self.busy_timeout;
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_reader(&path, busy_timeout)?,
            };
            let result = f(&conn).map_err(StoreError::from);
            let mut pool = readers.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < 4 {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Other(format!("a SQLite read failed to run: {e}")))?
    }

    /// Stops the writer after the queued writes and closes every connection.
    pub(crate) fn close(&self) {
        // Readers first: the writer's connection must be the last one closed, so that SQLite
        // folds the write-ahead log into the database file and removes it.
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Box<dyn Job>>,
    max_batch: usize,
    mut sync: SyncLevel,
    notifier: Arc<Notifier>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch, &notifier, &mut sync);
    }
    // Leave the WAL folded into the main file for whoever opens it next.
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        warn!(error = %e, "checkpointing the SQLite WAL at close failed");
    }
}
