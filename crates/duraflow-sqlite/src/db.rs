//! The connections: one writer thread that groups writes into transactions, and a small pool of
//! reader connections.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use duraflow_store::{Notifier, StoreError, StoreResult, Wake};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::oneshot;
use tracing::warn;

use crate::checkpoint::{
    Checkpointer, Finish, COMMITS_BEFORE_WRITER_CHECKPOINTS, COMMITS_PER_CHECKPOINT,
};
use crate::error::{store_error, SqlResult};
use crate::foreign::{Foreign, FOREIGN_CHECK};
use crate::open::open_reader;
use crate::owners::Owner;
use crate::requests::{Next, Request, Requests};
use crate::SqliteOptions;

/// Lease tokens, issued by the writer without a write each: the high bits are an epoch that
/// opening the store reserved durably (`lease_tokens` counts epochs), the low bits count the
/// tokens issued since. No two writers, in this process or another, ever share an epoch, so no
/// two leases ever share a token; tokens of a transaction that rolled back are simply skipped.
///
/// Task ids come from here too, without a write each: `tasks` keeps `AUTOINCREMENT` (an id is
/// never given twice, so a completion of a task that is gone finds none), whose largest id
/// `sqlite_sequence` rewrote at every transaction that inserted a task, one page of the log
/// per activity. The writer instead moves `sqlite_sequence` forward by [`TASK_ID_BLOCK`] at a
/// time and gives the ids of that block itself: an explicit id below the sequence leaves it
/// alone. Blocks are reserved under the write lock, so no two writers share one; an id
/// SQLite picks (an older build's insert) is past every block reserved; a block reserved by a
/// transaction that rolled back is dropped, since another writer may reserve it again.
pub(crate) struct Tokens {
    epoch: i64,
    issued: i64,
    /// The next task id of the current block, and the end of the block (exclusive).
    task_next: i64,
    task_end: i64,
    /// Whether the current block was reserved by the transaction under way.
    task_block_tentative: bool,
}

/// How many task ids a writer reserves at once (see [`Tokens`]).
pub(crate) const TASK_ID_BLOCK: i64 = 1024;

/// Bits of a token that count within its epoch.
pub(crate) const EPOCH_SHIFT: u32 = 40;

impl Tokens {
    /// Tokens of a freshly reserved epoch.
    pub(crate) fn new(epoch: i64) -> Self {
        Tokens {
            epoch,
            issued: 0,
            task_next: 0,
            task_end: 0,
            task_block_tentative: false,
        }
    }

    /// A task id never given before, from the current block or a new one reserved in the
    /// transaction under way on `conn`.
    fn task_id(&mut self, conn: &Connection) -> SqlResult<i64> {
        if self.task_next >= self.task_end {
            let moved: Option<i64> = conn
                .query_row(
                    "UPDATE sqlite_sequence SET seq = seq + ?1 WHERE name = 'tasks' RETURNING seq",
                    [TASK_ID_BLOCK],
                    |r| r.get(0),
                )
                .optional()?;
            let top = match moved {
                Some(top) => top,
                // No task was ever inserted: the sequence has no row yet.
                None => conn.query_row(
                    "INSERT INTO sqlite_sequence (name, seq)
                     VALUES ('tasks', coalesce((SELECT max(id) FROM tasks), 0) + ?1)
                     RETURNING seq",
                    [TASK_ID_BLOCK],
                    |r| r.get(0),
                )?,
            };
            self.task_next = top - TASK_ID_BLOCK + 1;
            self.task_end = top + 1;
            self.task_block_tentative = true;
        }
        let id = self.task_next;
        self.task_next += 1;
        Ok(id)
    }

    /// The transaction under way committed: a block it reserved is this writer's.
    fn committed(&mut self) {
        self.task_block_tentative = false;
    }

    /// The transaction under way rolled back: a block it reserved is dropped.
    fn rolled_back(&mut self) {
        if self.task_block_tentative {
            self.task_next = self.task_end;
            self.task_block_tentative = false;
        }
    }

    fn next(&mut self) -> SqlResult<i64> {
        if self.issued >= (1 << EPOCH_SHIFT) - 1 {
            return Err(StoreError::Unavailable(
                "this SQLite store has issued all the lease tokens of its epoch; open it again"
                    .into(),
            )
            .into());
        }
        self.issued += 1;
        Ok((self.epoch << EPOCH_SHIFT) | self.issued)
    }
}

/// Reserves a lease-token epoch for a writer (see [`Tokens`]).
pub(crate) fn reserve_epoch(conn: &Connection) -> SqlResult<i64> {
    Ok(conn.query_row(
        "UPDATE lease_tokens SET value = value + 1 WHERE id = 1 RETURNING value",
        [],
        |r| r.get(0),
    )?)
}

/// What a write runs with besides the connection: whom to wake once its transaction commits,
/// and the writer's lease tokens.
pub(crate) struct Tx<'a> {
    pub(crate) wake: Wake,
    /// Queue configurations read in this transaction.
    pub(crate) queues: crate::ops::flow::QueueMemo,
    tokens: &'a mut Tokens,
}

impl Tx<'_> {
    /// A lease token never issued before.
    pub(crate) fn token(&mut self) -> SqlResult<i64> {
        self.tokens.next()
    }

    /// A task id never given before (see [`Tokens`]).
    pub(crate) fn task_id(&mut self, conn: &Connection) -> SqlResult<i64> {
        self.tokens.task_id(conn)
    }
}

/// A write waiting for the writer thread.
pub(crate) trait Job: Send {
    /// Whether the write must be on disk before it is acknowledged. Writes that only take
    /// leases need not be: a lease protects work from other live processes, and a power loss
    /// leaves none, so losing one costs nothing. A later durable commit makes every earlier
    /// write durable too, since the write-ahead log is synced as a whole.
    fn durable(&self) -> bool;
    /// Whether the write may join a durable transaction already under way, before its
    /// `COMMIT` (see [`Db::write_joining`]).
    fn joins(&self) -> bool;
    /// Runs inside the batch's transaction. A write checks everything that can refuse it (a
    /// lost lease, a missing instance) before it writes anything, so a refused write leaves the
    /// transaction as it found it.
    fn run(self: Box<Self>, conn: &Connection, tx: &mut Tx<'_>) -> Box<dyn Answer>;
    /// Answers without running (the transaction could not begin).
    fn fail(self: Box<Self>, error: StoreError);
}

pub(crate) trait Answer: Send {
    /// The write's own error, if it failed.
    fn error(&self) -> Option<StoreError>;
    fn send(self: Box<Self>, commit_error: Option<&StoreError>);
}

struct WriteJob<F, T> {
    f: F,
    durable: bool,
    joins: bool,
    reply: oneshot::Sender<StoreResult<T>>,
}

struct WriteAnswer<T> {
    result: StoreResult<T>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Job for WriteJob<F, T>
where
    F: FnOnce(&Connection, &mut Tx<'_>) -> SqlResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn joins(&self) -> bool {
        self.joins
    }

    fn run(self: Box<Self>, conn: &Connection, tx: &mut Tx<'_>) -> Box<dyn Answer> {
        let WriteJob { f, reply, .. } = *self;
        let result = f(conn, tx).map_err(StoreError::from);
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

/// Runs a batch of writes in one transaction and answers them once it has committed.
///
/// There are no savepoints (SQLite copies every page a savepoint's writes touch): a write that
/// is refused has written nothing, and the others go on. A write that fails after it wrote
/// (an I/O error, a full disk, a broken invariant), or whose failure made SQLite roll the
/// transaction back, takes the transaction with it: the writes before it are answered with its
/// error (the engine tries them again), and the writes after it go on in a new transaction.
///
/// A durable transaction takes in, before its `COMMIT`, the writes queued meanwhile that may
/// join it ([`Db::write_joining`], at most `max_batch` writes in all): a client's start that
/// arrives while the engine's commits run shares their sync instead of waiting for it to end
/// and then paying its own.
fn run_batch(
    conn: &Connection,
    batch: Vec<Box<dyn Job>>,
    requests: &mut Requests,
    max_batch: usize,
    notifier: &Notifier,
    sync: &mut SyncLevel,
    tokens: &mut Tokens,
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
        let mut tx = Tx {
            wake: Wake::default(),
            queues: Default::default(),
            tokens: &mut *tokens,
        };
        let mut answers: Vec<Box<dyn Answer>> = Vec::new();
        let mut aborted = None;
        for job in jobs.by_ref() {
            aborted = run_job(conn, &mut tx, job, &mut answers);
            if aborted.is_some() {
                break;
            }
        }
        while aborted.is_none() && durable && answers.len() < max_batch {
            let Some(job) = requests.join() else { break };
            aborted = run_job(conn, &mut tx, job, &mut answers);
        }
        if let Some(cause) = aborted {
            if !conn.is_autocommit() {
                if let Err(undo) = conn.execute_batch("ROLLBACK") {
                    warn!(error = %undo, "rolling back a failed SQLite transaction failed");
                }
            }
            tokens.rolled_back();
            for answer in answers {
                answer.send(Some(&cause));
            }
            continue;
        }
        let mut wake = tx.wake;
        // The finished instances' state for their watchers in this process, read here from the
        // rows just written (a point read each, watched ones only) rather than by each waiting
        // client on a reader connection after its wakeup. A failed read hands nothing over.
        for id in wake.to_hand_over(notifier) {
            match crate::ops::instances::get(conn, &id) {
                Ok(Some(info)) => wake.hand_over(info),
                Ok(None) => {}
                Err(_) => break,
            }
        }
        let commit_error = conn.execute_batch("COMMIT").err().map(|e| {
            if !conn.is_autocommit() {
                if let Err(undo) = conn.execute_batch("ROLLBACK") {
                    warn!(error = %undo, "rolling back a failed SQLite commit failed");
                }
            }
            store_error(e)
        });
        match commit_error {
            None => tokens.committed(),
            Some(_) => tokens.rolled_back(),
        }
        // Wake before answering: whoever hears back has the wakeup already armed.
        if commit_error.is_none() {
            wake.notify(notifier);
        }
        for answer in answers {
            answer.send(commit_error.as_ref());
        }
    }
}

/// Runs one write of a transaction under way. Returns why the transaction must be rolled back
/// (the write failed after writing, or SQLite rolled it back), having answered the write;
/// otherwise keeps its answer in `answers` for after the `COMMIT`.
fn run_job(
    conn: &Connection,
    tx: &mut Tx<'_>,
    job: Box<dyn Job>,
    answers: &mut Vec<Box<dyn Answer>>,
) -> Option<StoreError> {
    let changes = conn.total_changes();
    let answer = job.run(conn, tx);
    let failed_after_writing = answer.error().is_some() && conn.total_changes() != changes;
    if conn.is_autocommit() || failed_after_writing {
        let cause = answer
            .error()
            .unwrap_or_else(|| StoreError::Other("SQLite rolled back the transaction".into()));
        answer.send(None);
        return Some(cause);
    }
    answers.push(answer);
    None
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
    jobs: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    /// What reader connections are opened with.
    options: SqliteOptions,
}

/// What the writer thread runs with.
pub(crate) struct Writer {
    /// The write connection, migrated.
    pub(crate) conn: Connection,
    /// The most writes grouped into one transaction.
    pub(crate) max_batch: usize,
    /// `synchronous = FULL` was asked for.
    pub(crate) full_sync: bool,
    /// The lease tokens of this opening's epoch.
    pub(crate) tokens: Tokens,
    /// This opening's owner file.
    pub(crate) owner: Owner,
    /// Runs the checkpoints (the writer's connection runs none).
    pub(crate) checkpointer: Checkpointer,
}

impl Db {
    pub(crate) fn start(
        writer: Writer,
        path: PathBuf,
        options: SqliteOptions,
        notifier: Arc<Notifier>,
    ) -> StoreResult<Db> {
        let (tx, rx) = mpsc::channel::<Request>();
        let writer = std::thread::Builder::new()
            .name("duraflow-sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx, notifier))
            .map_err(|e| {
                StoreError::Other(format!("cannot start the SQLite writer thread: {e}"))
            })?;
        Ok(Db {
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            path,
            options,
        })
    }

    /// Queues `f` to run in a write transaction, grouped with whatever other writes are queued,
    /// and returns a future of its result once that transaction has committed (and is on disk,
    /// as far as the configured `synchronous` promises). The write is queued when this is
    /// called, not when the future is first polled, so several writes started together share a
    /// transaction.
    pub(crate) fn write<T, F>(&self, f: F) -> impl std::future::Future<Output = StoreResult<T>>
    where
        F: FnOnce(&Connection, &mut Tx<'_>) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.queue(f, true)
    }

    /// Like [`Db::write`] for a write that only takes leases: its transaction, unless shared
    /// with a durable write, is not synced to disk (see [`Job::durable`]).
    pub(crate) fn lease<T, F>(&self, f: F) -> impl std::future::Future<Output = StoreResult<T>>
    where
        F: FnOnce(&Connection, &mut Tx<'_>) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.queue(f, false)
    }

    /// Like [`Db::write`] for a short write that a client waits for (a start, an event): if a
    /// durable transaction is under way when it is queued, it joins that transaction before
    /// its `COMMIT` instead of waiting for the next one. It may then be committed before
    /// writes queued earlier that may not join (the engine's commits), never before one whose
    /// answer its caller waited for.
    pub(crate) fn write_joining<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = StoreResult<T>>
    where
        F: FnOnce(&Connection, &mut Tx<'_>) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.enqueue(f, true, true)
    }

    /// Like [`Db::write`], durable or not (see [`Job::durable`]).
    pub(crate) fn queue<T, F>(
        &self,
        f: F,
        durable: bool,
    ) -> impl std::future::Future<Output = StoreResult<T>>
    where
        F: FnOnce(&Connection, &mut Tx<'_>) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.enqueue(f, durable, false)
    }

    /// Queues a write (see [`Job::durable`] and [`Job::joins`]).
    fn enqueue<T, F>(
        &self,
        f: F,
        durable: bool,
        joins: bool,
    ) -> impl std::future::Future<Output = StoreResult<T>>
    where
        F: FnOnce(&Connection, &mut Tx<'_>) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let sent = {
            let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            match jobs.as_ref() {
                Some(tx) => tx
                    .send(Request::Write(Box::new(WriteJob {
                        f,
                        durable,
                        joins,
                        reply,
                    })))
                    .is_ok(),
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

    /// Folds the write-ahead log into the database file and empties it, once the writes queued
    /// before have committed: the file alone then holds everything committed so far.
    pub(crate) async fn fold(&self) -> StoreResult<()> {
        let (reply, rx) = oneshot::channel();
        let sent = {
            let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            jobs.as_ref()
                .is_some_and(|tx| tx.send(Request::Fold(reply)).is_ok())
        };
        if !sent {
            return Err(StoreError::Unavailable("the SQLite store is closed".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the SQLite writer stopped".into())))
    }

    /// Runs `f` on a reader connection, off the async runtime.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> SqlResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let options = self.options.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_reader(&path, &options)?,
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

/// How long the writer, after a transaction, keeps looking for the next request before it
/// sleeps. A sleeping thread takes a futex wakeup to start again, which on the virtual machines
/// measured cost tens of microseconds a write: 1,000 sequential activities and 1,000 inline
/// steps took 475–494 ms without the look, 427–439 ms with 50 µs of it and 443–454 ms with
/// 100 µs, for 13% and 18% more processor time (BENCHMARKS.md, "SQLite: the writer looks
/// before it sleeps"). It yields the processor between looks, so other threads run meanwhile.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// How often the writer looks for openings of the database that are gone (see [`Owner`]).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

fn writer_loop(writer: Writer, rx: mpsc::Receiver<Request>, notifier: Arc<Notifier>) {
    let Writer {
        conn,
        max_batch,
        full_sync,
        mut tokens,
        mut owner,
        checkpointer,
    } = writer;
    // Commits overwrite the log's file from now on instead of lengthening it.
    crate::log_space::reserve(&conn);
    let mut commits = 0u32;
    // Commits since the writer last ran a checkpoint itself.
    let mut since_checkpoint = 0u32;
    let max_batch = max_batch.max(1);
    let mut sync = SyncLevel::new(full_sync);
    let mut requests = Requests::new(rx);
    // Returns how many other openings are alive.
    let sweep = |conn: &Connection| match owner.sweep(conn) {
        Ok(swept) => {
            if swept.released > 0 {
                notifier.turns.notify_waiters();
                notifier.tasks.notify_waiters();
            }
            swept.alive
        }
        Err(e) => {
            let e = StoreError::from(e);
            warn!(error = %e, "releasing the leases of a SQLite store that is gone failed");
            0
        }
    };
    let mut foreign = Foreign::new(&conn);
    // Work left by a crashed process is taken over before anything else.
    let mut alive = sweep(&conn);
    let mut swept = Instant::now();
    // When another connection's commit was last seen.
    let mut seen: Option<Instant> = None;
    // Whether the last round ran a transaction: the next request is then likely to follow at
    // once (a workflow's next step, a loop's next start), and the writer looks for it a while
    // before it sleeps.
    let mut busy = false;
    loop {
        // While the file is shared, look for other processes' commits often (`foreign`): while
        // another opening is alive, or for a while after another connection's commit (an
        // opening without an owner file, in a read-only directory, is not counted).
        let shared = alive > 0 || seen.is_some_and(|at| at.elapsed() < 2 * SWEEP_EVERY);
        let wait = if shared { FOREIGN_CHECK } else { SWEEP_EVERY };
        let spin = if busy {
            SPIN_BEFORE_SLEEP
        } else {
            Duration::ZERO
        };
        let first = match requests.next(spin, wait) {
            Next::Request(request) => Some(request),
            Next::Idle => None,
            Next::Closed => break,
        };
        let mut batch = Vec::new();
        let mut folds = Vec::new();
        let mut next = first;
        while let Some(request) = next.take() {
            match request {
                Request::Write(job) => batch.push(job),
                Request::Fold(reply) => folds.push(reply),
            }
            if batch.len() < max_batch {
                next = requests.try_next();
            }
        }
        busy = !batch.is_empty();
        if !batch.is_empty() {
            run_batch(
                &conn,
                batch,
                &mut requests,
                max_batch,
                &notifier,
                &mut sync,
                &mut tokens,
            );
            commits += 1;
            since_checkpoint += 1;
            if commits >= COMMITS_PER_CHECKPOINT {
                checkpointer.nudge();
                commits = 0;
            }
            match checkpointer.finish(&conn, since_checkpoint) {
                Finish::Done => since_checkpoint = 0,
                Finish::NotYet => {}
                // Readers held the old log: try again a nudge's worth of commits later.
                Finish::Blocked => {
                    since_checkpoint = COMMITS_BEFORE_WRITER_CHECKPOINTS - COMMITS_PER_CHECKPOINT;
                }
            }
        }
        for reply in folds {
            let _ = reply.send(checkpointer.fold(&conn));
        }
        let sweep_due = swept.elapsed() >= SWEEP_EVERY;
        if ((shared && foreign.due()) || sweep_due) && foreign.committed(&conn) {
            seen = Some(Instant::now());
            foreign.wake(&conn, &notifier);
        } else {
            // Watched instances whose read was put off (many are watched) are read in turn.
            foreign.read_watched(&conn, &notifier);
        }
        if sweep_due {
            alive = sweep(&conn);
            swept = Instant::now();
        }
    }
    owner.retire();
    // The writer's connection must be the last one closed, for the log to be removed.
    checkpointer.stop();
    // Leave the WAL folded into the main file for whoever opens it next.
    if let Err(e) = fold_log(&conn) {
        warn!(error = %e, "checkpointing the SQLite WAL at close failed");
    }
}

/// Copies the whole write-ahead log into the database file and truncates it to nothing. Fails
/// as unavailable when a reader of another process holds a snapshot that the log still serves
/// (after the busy timeout).
pub(crate) fn fold_log(conn: &Connection) -> StoreResult<()> {
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .map_err(store_error)?;
    if busy != 0 {
        return Err(StoreError::Unavailable(
            "the SQLite write-ahead log could not be folded into the database file: another \
             connection was reading or writing; it will be folded when that is done"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use super::*;
    use crate::error::OpError;
    use crate::open::{migrate, open_writer};
    use crate::Synchronous;

    /// A store's writer on a fresh file, with a scratch table `t(v)`.
    fn writer() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let normal = SqliteOptions {
            synchronous: Synchronous::Normal,
            ..SqliteOptions::default()
        };
        let mut conn = open_writer(&path, &normal).unwrap();
        migrate(&mut conn, &path).unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let epoch = reserve_epoch(&conn).unwrap();
        let writer = Writer {
            conn,
            max_batch: 64,
            full_sync: false,
            tokens: Tokens::new(epoch),
            owner: Owner::claim(&path, epoch),
            checkpointer: Checkpointer::start(open_writer(&path, &normal).unwrap()).unwrap(),
        };
        let db = Db::start(writer, path, normal, Arc::new(Notifier::new())).unwrap();
        (dir, db)
    }

    fn insert(conn: &Connection, v: i64) -> SqlResult<()> {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
        Ok(())
    }

    /// A write of the test batch.
    type TestJob = Box<dyn FnOnce(&Connection) -> SqlResult<()> + Send>;

    fn refused() -> OpError {
        StoreError::LeaseLost { what: "x".into() }.into()
    }

    /// Runs `jobs` as one batch (a first write holds the writer until all are queued) and
    /// returns their results and the rows committed.
    async fn one_batch(db: &Db, jobs: Vec<TestJob>) -> (Vec<StoreResult<()>>, Vec<i64>) {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let holder = db.write(move |_, _| {
            let _ = started.send(());
            let _ = hold.recv();
            Ok(())
        });
        // The holder's batch is under way: everything queued now waits for the next one.
        running.recv().unwrap();
        let queued: Vec<_> = jobs
            .into_iter()
            .map(|job| db.write(move |conn, _| job(conn)))
            .collect();
        release.send(()).unwrap();
        holder.await.unwrap();
        let mut results = Vec::new();
        for q in queued {
            results.push(q.await);
        }
        let rows = db
            .write(|conn, _| {
                let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<i64>, _>>()?)
            })
            .await
            .unwrap();
        (results, rows)
    }

    fn rows(conn: &Connection) -> SqlResult<Vec<i64>> {
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<i64>, _>>()?)
    }

    /// The answers of three writes: a holder (durable or a lease) that inserts 1 and holds its
    /// transaction open until the other two are queued, a plain write of 3, and a joining
    /// write that returns the rows it saw and then runs `then`.
    async fn join_behind(
        db: &Db,
        holder_durable: bool,
        then: impl FnOnce(&Connection) -> SqlResult<()> + Send + 'static,
    ) -> (StoreResult<()>, StoreResult<()>, StoreResult<Vec<i64>>) {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let holder = db.queue(
            move |conn, _| {
                insert(conn, 1)?;
                let _ = started.send(());
                let _ = hold.recv();
                Ok(())
            },
            holder_durable,
        );
        running.recv().unwrap();
        let plain = db.write(|conn, _| insert(conn, 3));
        let joining = db.write_joining(move |conn, _| {
            let seen = rows(conn)?;
            then(conn)?;
            Ok(seen)
        });
        release.send(()).unwrap();
        (holder.await, plain.await, joining.await)
    }

    #[tokio::test]
    async fn a_joining_write_joins_the_durable_transaction_under_way() {
        let (_dir, db) = writer();
        let (holder, plain, joining) = join_behind(&db, true, |c| insert(c, 2)).await;
        holder.unwrap();
        plain.unwrap();
        // It ran in the holder's transaction, ahead of the plain write queued before it.
        assert_eq!(joining.unwrap(), [1]);
        assert_eq!(db.write(|c, _| rows(c)).await.unwrap(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_joining_write_waits_its_turn_behind_a_lease() {
        let (_dir, db) = writer();
        let (holder, plain, joining) = join_behind(&db, false, |c| insert(c, 2)).await;
        holder.unwrap();
        plain.unwrap();
        // A transaction that only takes leases is not synced, so a durable write does not
        // join it: it runs after the plain write, in order.
        assert_eq!(joining.unwrap(), [1, 3]);
    }

    #[tokio::test]
    async fn a_joined_write_that_fails_after_writing_takes_the_transaction_it_joined() {
        let (_dir, db) = writer();
        let (holder, plain, joining) = join_behind(&db, true, |c| {
            insert(c, 2)?;
            Err(StoreError::Other("broke half way".into()).into())
        })
        .await;
        assert!(
            matches!(&holder, Err(StoreError::Other(m)) if m.contains("broke")),
            "{holder:?}"
        );
        assert!(joining.is_err(), "{joining:?}");
        // The plain write, queued before the joining one but left for the next transaction,
        // went on.
        plain.unwrap();
        assert_eq!(db.write(|c, _| rows(c)).await.unwrap(), [3]);
    }

    #[tokio::test]
    async fn a_refused_write_leaves_the_rest_of_its_batch() {
        let (_dir, db) = writer();
        let (results, rows) = one_batch(
            &db,
            vec![
                Box::new(|c| insert(c, 1)),
                Box::new(|_| Err(refused())),
                Box::new(|c| insert(c, 3)),
            ],
        )
        .await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(matches!(results[1], Err(StoreError::LeaseLost { .. })));
        assert_eq!(rows, [1, 3]);
    }

    #[tokio::test]
    async fn a_write_that_fails_after_writing_takes_its_transaction_along() {
        let (_dir, db) = writer();
        let (results, rows) = one_batch(
            &db,
            vec![
                Box::new(|c| insert(c, 1)),
                Box::new(|c| {
                    insert(c, 2)?;
                    Err(StoreError::Other("broke half way".into()).into())
                }),
                Box::new(|c| insert(c, 3)),
            ],
        )
        .await;
        // The first write shared the failed transaction: it is answered with the error (and
        // would be tried again); the third ran in a transaction of its own.
        assert!(
            matches!(&results[0], Err(StoreError::Other(m)) if m.contains("broke")),
            "{results:?}"
        );
        assert!(matches!(&results[1], Err(StoreError::Other(_))));
        assert!(results[2].is_ok(), "{results:?}");
        assert_eq!(rows, [3], "nothing of the failed transaction is left");
    }

    #[tokio::test]
    async fn a_reader_holding_the_old_log_does_not_hold_up_commits() {
        let (dir, db) = writer();
        // Another connection reads in a transaction that stays open: its snapshot needs the
        // log, so no checkpoint can start the log over while it lasts.
        let reader = Connection::open(dir.path().join("db.sqlite")).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        // Past `COMMITS_BEFORE_WRITER_CHECKPOINTS` commits the writer truncates the log itself;
        // if it waited for the reader (the busy timeout, 5 s), this would take over an hour.
        let commits = async {
            for v in 0..3 * i64::from(COMMITS_BEFORE_WRITER_CHECKPOINTS) {
                db.write(move |conn, _| insert(conn, v)).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(120), commits)
            .await
            .expect("commits waited for a reader: the writer's checkpoint blocked them");
        // Once the reader is done, the writer's checkpoint starts the log over again.
        reader.execute_batch("COMMIT").unwrap();
        for v in 0..i64::from(COMMITS_BEFORE_WRITER_CHECKPOINTS) {
            db.write(move |conn, _| insert(conn, v)).await.unwrap();
        }
        let wal = dir.path().join("db.sqlite-wal");
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(
            size < 16 << 20,
            "the log is {size} bytes: it was never started over"
        );
    }

    #[tokio::test]
    async fn the_checkpointer_keeps_the_log_bounded() {
        let (dir, db) = writer();
        db.write(|conn, _| Ok(conn.execute_batch("CREATE TABLE blobs (b BLOB)")?))
            .await
            .unwrap();
        // 3,000 commits of about 8 KiB each: 24 MiB of log if nothing checkpointed it.
        for _ in 0..3_000 {
            db.write(|conn, _| {
                conn.execute("INSERT INTO blobs VALUES (zeroblob(8000))", [])?;
                Ok(())
            })
            .await
            .unwrap();
        }
        // Unbounded, the log would hold about 48 MiB (two or three pages per commit); the
        // writer checkpoints on its own at the latest every `COMMITS_BEFORE_WRITER_CHECKPOINTS`
        // commits (about 8 MiB of these), so a bound of twice that shows it stays bounded
        // without depending on how much CPU the checkpointer thread gets.
        let wal = dir.path().join("db.sqlite-wal");
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(
            size < 16 << 20,
            "the log is {size} bytes after 24 MiB of commits: checkpoints did not keep up"
        );
    }

    /// A block of task ids reserved by a transaction that rolled back is dropped: another
    /// writer may reserve the same block, and the first then takes the next one, so no id is
    /// given twice.
    #[test]
    fn a_task_id_block_of_a_rolled_back_transaction_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let options = SqliteOptions::default();
        let mut first = open_writer(&path, &options).unwrap();
        migrate(&mut first, &path).unwrap();
        let second = open_writer(&path, &options).unwrap();
        let (mut one, mut two) = (Tokens::new(1), Tokens::new(2));

        first.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert_eq!(one.task_id(&first).unwrap(), 1);
        first.execute_batch("ROLLBACK").unwrap();
        one.rolled_back();

        second.execute_batch("BEGIN IMMEDIATE").unwrap();
        let taken: Vec<i64> = (0..3).map(|_| two.task_id(&second).unwrap()).collect();
        second.execute_batch("COMMIT").unwrap();
        two.committed();
        assert_eq!(taken, [1, 2, 3], "the block the rollback gave back");

        first.execute_batch("BEGIN IMMEDIATE").unwrap();
        let next = one.task_id(&first).unwrap();
        first.execute_batch("COMMIT").unwrap();
        one.committed();
        assert_eq!(
            next,
            TASK_ID_BLOCK + 1,
            "the next block, not the dropped one"
        );
        // A committed block stays the writer's: no reservation until it is used up.
        second.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert_eq!(two.task_id(&second).unwrap(), 4);
        second.execute_batch("COMMIT").unwrap();
    }
}
