//! The embedded SQLite store for duraflow: one database file, zero infrastructure.
//!
//! - **Durable**: write-ahead logging with `synchronous = FULL` by default, so every committed
//!   turn survives a crash or a power loss. [`Synchronous::Normal`] trades that last guarantee
//!   (a power loss may undo the most recent commits, never corrupt the file) for speed.
//! - **Group commit**: one writer thread takes every write queued while the previous
//!   transaction was committing (turn commits, task completions, fetches, sends) and commits
//!   them together, each in its own savepoint, so one failing write does not undo the others.
//!   Reads use a pool of reader connections and never wait for the writer.
//! - **In-process wakeups** through its [`Notifier`]: the engine does not poll the file.
//! - **Versioned schema**: numbered migrations (the files in `migrations/`) are applied when the
//!   store is opened; a database written by a newer duraflow is refused, never modified, and a
//!   SQLite file of another application is refused.
//! - **Several processes** may open the same file: SQLite's locking serialises their writes
//!   (a writer waits up to the busy timeout, then the engine retries), and leases with fencing
//!   tokens keep them from running the same work twice. While another opening of the file is
//!   alive, the writer looks for its commits every 2 ms (`PRAGMA data_version`, which the
//!   store's own commits do not change) and wakes this process's waiters (of turns, tasks and
//!   the feed, and the watchers of the instances it finds changed), so the other
//!   processes' new work is seen within milliseconds rather than at the next poll
//!   (`EngineOptions::poll_interval`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), duraflow_store::StoreError> {
//! use duraflow_sqlite::{SqliteOptions, SqliteStore, Synchronous};
//!
//! let store = SqliteStore::open("orders.db").await?;
//! let fast = SqliteStore::open_with(
//!     "scratch.db",
//!     SqliteOptions { synchronous: Synchronous::Normal, ..SqliteOptions::default() },
//! )
//! .await?;
//! # Ok(()) }
//! ```

mod checkpoint;
mod codec;
mod db;
mod error;
mod foreign;
mod log_space;
mod open;
mod ops;
mod owners;
mod requests;
pub mod testing;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use duraflow_core::{EmitOutcome, Event, Payload, StoredEvent, Timestamp};
use duraflow_store::feed::validate_subscriber;
use duraflow_store::management::purge_filter;
use duraflow_store::{
    validate_queue_event, Cache, CallbackResolution, CallbackTarget, Committed, Completed,
    CreateOutcome, FeedEntry, FetchFilter, InstanceInfo, LeaseToken, ListFilter, Management,
    NewInstance, NewMessage, NextDue, Notifier, Page, QueueConfig, QueueDepth, Registered,
    Registration, Store, StoreError, StoreResult, StoreStats, TaskCompletion, TaskId, TaskRelease,
    TaskWork, TurnCommit, TurnWork,
};

use crate::db::Db;
use crate::ops::{admin, callbacks, feed, flow, instances, queue_events, registry, tasks, turns};

pub use crate::open::{schema_version_of, SCHEMA_VERSION};

/// How hard SQLite works to make each commit durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit is on disk before it is acknowledged; survives power loss (the default).
    #[default]
    Full,
    /// Commits are durable against a crash of the process, but a power loss or an operating
    /// system crash may undo the last few. The file is never corrupted. Faster.
    Normal,
}

/// Settings for [`SqliteStore::open_with`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Durability of commits (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// How long a write waits for another process's lock before failing as unavailable
    /// (default 5 s).
    pub busy_timeout: Duration,
    /// The most writes grouped into one transaction (default 256).
    pub max_batch: usize,
    /// Caps the database's size in pages (of 4 KiB by default); writes beyond it fail with
    /// `StoreError::Full`. `None` (the default) leaves it to the file system.
    pub max_page_count: Option<u64>,
    /// How much of the database file each connection reads through a memory map, in bytes
    /// (SQLite's `mmap_size`; default 0, [`DEFAULT_MMAP_SIZE`]: no map, pages are read with
    /// system calls). A map suits a file that is read far more than it is written: in WAL
    /// mode, a connection whose read transaction begins after any commit drops the whole map
    /// (SQLite's pager unmaps it, with its page cache, when the log has changed) and faults
    /// the pages it reads back in, so on a store that commits all the time a map costs more
    /// than it saves (a cold turn of 10,000 steps: 16.2–20.0 ms with 256 MiB mapped, 15.1–15.6
    /// ms without; see BENCHMARKS.md). With a map, an I/O error while reading the file stops
    /// the process with `SIGBUS` instead of failing the read.
    pub mmap_size: u64,
}

/// The default [`SqliteOptions::mmap_size`]: 0, no memory map (see there why).
pub const DEFAULT_MMAP_SIZE: u64 = 0;

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            max_batch: 256,
            max_page_count: None,
            mmap_size: DEFAULT_MMAP_SIZE,
        }
    }
}

/// The SQLite store. See the [crate documentation](crate).
pub struct SqliteStore {
    db: Db,
    notifier: Arc<Notifier>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path` with the default settings.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<SqliteStore> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating it if needed) the database at `path`.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> StoreResult<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let opened = path.clone();
        let conn = tokio::task::spawn_blocking(move || {
            let mut conn = open::open_writer(&opened, &options)?;
            open::migrate(&mut conn, &opened)?;
            let epoch = db::reserve_epoch(&conn).map_err(StoreError::from)?;
            let checkpointer =
                checkpoint::Checkpointer::start(open::open_writer(&opened, &options)?)?;
            Ok::<_, StoreError>((conn, options, epoch, checkpointer))
        })
        .await
        .map_err(|e| StoreError::Other(format!("opening the SQLite store failed to run: {e}")))?;
        let (conn, options, epoch, checkpointer) = conn?;
        let notifier = Arc::new(Notifier::new());
        let writer = db::Writer {
            conn,
            max_batch: options.max_batch,
            full_sync: options.synchronous == Synchronous::Full,
            tokens: db::Tokens::new(epoch),
            owner: owners::Owner::claim(&path, epoch),
            checkpointer,
        };
        let db = Db::start(writer, path.clone(), options, notifier.clone())?;
        Ok(SqliteStore { db, notifier, path })
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finishes the queued writes and closes the database (dropping the store does the same).
    pub fn close(&self) {
        self.db.close();
    }
}

#[async_trait]
impl Management for SqliteStore {
    async fn describe(&self, id: &str) -> StoreResult<Option<InstanceInfo>> {
        let id = id.to_owned();
        self.db.read(move |c| instances::describe(c, &id)).await
    }

    async fn list(&self, filter: ListFilter) -> StoreResult<Page> {
        self.db.read(move |c| admin::list(c, &filter)).await
    }

    async fn purge(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.db.write(move |c, _| admin::purge(c, &id)).await
    }

    async fn purge_finished(&self, filter: ListFilter, max: usize) -> StoreResult<Vec<String>> {
        let filter = purge_filter(filter, max)?;
        self.db
            .write(move |c, _| admin::purge_finished(c, &filter))
            .await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        self.db.read(admin::stats).await
    }

    async fn queue_depths(&self, now: Timestamp) -> StoreResult<Vec<QueueDepth>> {
        self.db.read(move |c| admin::queue_depths(c, now)).await
    }

    async fn registrations(&self) -> StoreResult<Vec<Registered>> {
        self.db.read(registry::list).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn notifier(&self) -> Option<&Notifier> {
        Some(&self.notifier)
    }

    fn management(&self) -> Option<&dyn Management> {
        Some(self)
    }

    async fn create_instance(&self, instance: NewInstance) -> StoreResult<CreateOutcome> {
        self.db
            .write_joining(move |c, tx| instances::create(c, &instance, None, tx))
            .await
            .map(|(outcome, _)| outcome)
    }

    async fn create_instances_claiming(
        &self,
        instances: Vec<NewInstance>,
        claim: Vec<bool>,
        lease: Duration,
    ) -> StoreResult<Vec<(CreateOutcome, Option<TurnWork>)>> {
        for new in &instances {
            duraflow_store::validate_instance_id(&new.id)?;
        }
        self.db
            .write_joining(move |c, tx| {
                instances
                    .iter()
                    .enumerate()
                    .map(|(i, new)| {
                        let claimed = claim.get(i).copied().unwrap_or(false).then_some(lease);
                        instances::create(c, new, claimed, tx)
                    })
                    .collect()
            })
            .await
    }

    async fn create_instance_claiming(
        &self,
        instance: NewInstance,
        lease: Duration,
    ) -> StoreResult<(CreateOutcome, Option<TurnWork>)> {
        self.db
            .write_joining(move |c, tx| instances::create(c, &instance, Some(lease), tx))
            .await
    }

    async fn send(&self, message: NewMessage) -> StoreResult<()> {
        self.db
            .write_joining(move |c, tx| instances::send(c, &message, tx))
            .await
    }

    async fn send_claiming(
        &self,
        message: NewMessage,
        filter: &FetchFilter,
        now: Timestamp,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Option<TurnWork>> {
        let cache = cache.cloned();
        let filter = filter.clone();
        self.db
            .write_joining(move |c, tx| {
                let claim = instances::Claim {
                    filter: &filter,
                    now,
                    lease,
                    cache: cache.as_ref(),
                };
                instances::send_claiming(c, tx, &message, &claim)
            })
            .await
    }

    async fn fetch_turns(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<TurnWork>> {
        let cache = cache.cloned();
        let filter = filter.clone();
        self.db
            .lease(move |c, tx| turns::fetch(c, tx, &filter, now, max, lease, cache.as_ref()))
            .await
    }

    async fn commit_turns(
        &self,
        commits: Vec<TurnCommit>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        let writes = commits
            .into_iter()
            .map(|commit| self.db.write(move |c, tx| turns::commit(c, &commit, tx)));
        Ok(futures_join(writes).await)
    }

    async fn abandon_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        let id = instance_id.to_owned();
        self.db
            .write(move |c, tx| turns::abandon(c, &id, token, retry_at, tx))
            .await
    }

    async fn renew_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp> {
        let id = instance_id.to_owned();
        self.db
            .lease(move |c, _| turns::renew(c, &id, token, now, lease))
            .await
    }

    async fn fetch_tasks(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> StoreResult<Vec<TaskWork>> {
        let filter = filter.clone();
        self.db
            .lease(move |c, tx| tasks::fetch(c, tx, &filter, now, max, lease))
            .await
    }

    async fn complete_tasks(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        completions: Vec<TaskCompletion>,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<StoreResult<Completed>>> {
        let cache = cache.cloned();
        let filter = filter.clone();
        // Results on their way into a claimed turn are made durable by that turn's commit.
        let durable = completions.iter().any(|c| c.claim_turn.is_none());
        self.db
            .queue(
                move |c, tx| {
                    tasks::complete_batch(c, &filter, now, &completions, cache.as_ref(), tx)
                },
                durable,
            )
            .await
    }

    async fn renew_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
        details: Option<Payload>,
    ) -> StoreResult<Timestamp> {
        self.db
            .lease(move |c, _| tasks::renew(c, id, token, now, lease, details.as_ref()))
            .await
    }

    async fn release_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
    ) -> StoreResult<()> {
        self.db
            .write(move |c, tx| tasks::release(c, id, token, &release, tx))
            .await
    }

    async fn resolve_callback(
        &self,
        now: Timestamp,
        token: &str,
        resolution: CallbackResolution,
    ) -> StoreResult<CallbackTarget> {
        let token = token.to_owned();
        self.db
            .write(move |c, tx| callbacks::resolve(c, now, &token, resolution, tx))
            .await?
    }

    async fn emit_event(
        &self,
        queue: &str,
        name: &str,
        data: Payload,
        now: Timestamp,
    ) -> StoreResult<EmitOutcome> {
        validate_queue_event(queue, name)?;
        let (queue, name) = (queue.to_owned(), name.to_owned());
        self.db
            .write(move |c, tx| queue_events::emit(c, &queue, &name, &data, now, tx))
            .await
    }

    async fn queue_event(&self, queue: &str, name: &str) -> StoreResult<Option<StoredEvent>> {
        let (queue, name) = (queue.to_owned(), name.to_owned());
        self.db
            .read(move |c| queue_events::get(c, &queue, &name))
            .await
    }

    async fn configure_queue(&self, config: QueueConfig) -> StoreResult<()> {
        config.validate()?;
        self.db
            .write(move |c, tx| {
                flow::configure(c, tx, &config)?;
                // Looser limits may admit (or lease) what was held back.
                tx.wake.turns = true;
                tx.wake.tasks = true;
                Ok(())
            })
            .await
    }

    async fn queue_config(&self, name: &str) -> StoreResult<Option<QueueConfig>> {
        let name = name.to_owned();
        self.db.read(move |c| flow::config(c, &name)).await
    }

    async fn queue_configs(&self) -> StoreResult<Vec<QueueConfig>> {
        self.db.read(flow::configs).await
    }

    async fn next_due(&self, now: Timestamp) -> StoreResult<NextDue> {
        self.db.read(move |c| admin::next_due(c, now)).await
    }

    async fn instance(&self, id: &str) -> StoreResult<Option<InstanceInfo>> {
        let id = id.to_owned();
        self.db.read(move |c| instances::get(c, &id)).await
    }

    async fn journal(&self, id: &str, execution: Option<u32>) -> StoreResult<Vec<Event>> {
        let id = id.to_owned();
        self.db
            .read(move |c| admin::journal(c, &id, execution))
            .await
    }

    async fn checkpoint(&self) -> StoreResult<()> {
        self.db.fold().await
    }

    async fn read_feed(
        &self,
        after: u64,
        limit: usize,
        topic_prefix: Option<&str>,
    ) -> StoreResult<Vec<FeedEntry>> {
        let prefix = topic_prefix.map(str::to_owned);
        self.db
            .read(move |c| feed::read(c, after, limit, prefix.as_deref()))
            .await
    }

    async fn feed_cursor(&self, subscriber: &str) -> StoreResult<Option<u64>> {
        let name = subscriber.to_owned();
        self.db.read(move |c| feed::cursor(c, &name)).await
    }

    async fn save_feed_cursor(&self, subscriber: &str, position: u64) -> StoreResult<()> {
        validate_subscriber(subscriber)?;
        let name = subscriber.to_owned();
        self.db
            .write(move |c, _| feed::save_cursor(c, &name, position))
            .await
    }

    async fn announce(&self, registrations: Vec<Registration>, now: Timestamp) -> StoreResult<()> {
        duraflow_store::validate_registrations(&registrations)?;
        self.db
            .write(move |c, _| registry::announce(c, &registrations, now))
            .await
    }
}

/// Queues every write first, then awaits them: the writer commits them in one transaction.
async fn futures_join<F, T>(writes: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let queued: Vec<F> = writes.collect();
    let mut out = Vec::with_capacity(queued.len());
    for w in queued {
        out.push(w.await);
    }
    out
}
