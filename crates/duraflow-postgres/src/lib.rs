//! The PostgreSQL store for duraflow: any number of worker processes, on any number of
//! machines, share one database with the same semantics as the embedded store.
//!
//! - **Claims** use `FOR UPDATE SKIP LOCKED` on the instance and task rows themselves, with
//!   leases and fencing tokens from one sequence; two concurrent fetches never get the same
//!   instance or task.
//! - **Group commit**: a batch of turn commits (or task completions) shares one transaction,
//!   each in its own savepoint, so one lost lease does not undo the others.
//! - **Wakeups** with LISTEN/NOTIFY on the schema's channel, so work committed by any process
//!   is picked up within milliseconds; the engine still polls as a fallback for notifications
//!   lost while a connection was down.
//! - **Migrations** are embedded and applied on connect under an advisory lock; a database
//!   migrated by a newer build is refused (`StoreError::NewerSchema`).
//! - **A schema per application or tenant** (`PostgresOptions::schema`, default `duraflow`).
//! - **Connection failures** surface as `StoreError::Unavailable`; the engine retries with
//!   backoff and the pool reconnects when the server is back.
//!
//! ```no_run
//! # async fn demo() -> Result<(), duraflow_store::StoreError> {
//! use duraflow_postgres::{PostgresOptions, PostgresStore};
//!
//! let store = PostgresStore::connect("postgres://app@db.internal/orders").await?;
//! let tenant = PostgresStore::connect_with(
//!     "postgres://app@db.internal/orders",
//!     PostgresOptions { schema: "tenant_42".into(), ..PostgresOptions::default() },
//! )
//! .await?;
//! # Ok(()) }
//! ```

mod codec;
mod connect;
mod error;
mod listen;
mod ops;
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use duraflow_core::{Event, Timestamp};
use duraflow_store::{
    Cache, Committed, Completed, CreateOutcome, InstanceInfo, LeaseToken, ListFilter, NewInstance,
    NewMessage, NextDue, Notifier, Page, Store, StoreResult, StoreStats, TaskCompletion, TaskId,
    TaskRelease, TaskWork, TurnCommit, TurnWork,
};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::task::JoinHandle;

use crate::error::{store_error, OpResult};
use crate::ops::{admin, instances, tasks, turns, Wake};

/// The most items of a batch committed in one transaction, each in its own savepoint.
/// PostgreSQL slows every reader down once a transaction has more than 64 subtransactions
/// that wrote (their ids no longer fit the per-backend cache), so larger batches are split.
const MAX_SAVEPOINTS: usize = 48;

/// One item of a group commit.
enum BatchItem<'a> {
    Turn(&'a TurnCommit),
    Completion(Timestamp, &'a TaskCompletion),
}

/// What one item of a group commit wrote.
enum Written {
    Turn(Committed),
    /// A completion, with the turn it claimed.
    Completion(Box<Completed>),
}

/// Settings for [`PostgresStore::connect_with`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The schema that holds the store's tables (default `duraflow`); created if missing.
    /// Lowercase letters, digits and underscores.
    pub schema: String,
    /// The most connections in the pool (default 10).
    pub max_connections: u32,
    /// How long to wait for a connection from the pool (default 10 s).
    pub acquire_timeout: Duration,
    /// The `application_name` the connections report (default `duraflow`).
    pub application_name: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "duraflow".into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            application_name: "duraflow".into(),
        }
    }
}

/// The PostgreSQL store. See the [crate documentation](crate).
pub struct PostgresStore {
    pool: PgPool,
    notifier: Arc<Notifier>,
    channel: String,
    schema: String,
    listener: JoinHandle<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The newest schema version this build applies.
pub fn schema_version() -> i64 {
    connect::latest_version()
}

impl PostgresStore {
    /// Connects with the default settings (schema `duraflow`), applying migrations.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects, creates the schema if needed and applies migrations.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> StoreResult<PostgresStore> {
        let opts = connect::connect_options(url, &options)?;
        connect::migrate(&opts, &options.schema).await?;
        let pool = connect::pool(opts, &options).await?;
        let notifier = Arc::new(Notifier::new());
        let channel = listen::channel(&options.schema);
        let listener = tokio::spawn(listen::listen(
            pool.clone(),
            channel.clone(),
            notifier.clone(),
        ));
        Ok(PostgresStore {
            pool,
            notifier,
            channel,
            schema: options.schema,
            listener,
        })
    }

    /// The schema the store's tables are in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection pool, for tests and operators.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(store_error)
    }

    /// Commits `tx` if `result` is a success (announcing the wakeups on the channel inside it
    /// and in this process after it), or rolls it back.
    async fn finish<T>(
        &self,
        mut tx: Transaction<'static, Postgres>,
        result: OpResult<T>,
        wake: Wake,
    ) -> StoreResult<T> {
        match result {
            Ok(value) => {
                self.announce(&mut tx, wake).await.map_err(store_error)?;
                tx.commit().await.map_err(store_error)?;
                self.wake_local(wake);
                Ok(value)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e.into())
            }
        }
    }

    async fn announce(&self, conn: &mut PgConnection, wake: Wake) -> Result<(), sqlx::Error> {
        for (on, what) in [
            (wake.turns, listen::TURNS),
            (wake.tasks, listen::TASKS),
            (wake.instances, listen::INSTANCES),
        ] {
            if on {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&self.channel)
                    .bind(what)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    fn wake_local(&self, wake: Wake) {
        if wake.turns {
            listen::wake(&self.notifier, listen::TURNS);
        }
        if wake.tasks {
            listen::wake(&self.notifier, listen::TASKS);
        }
        if wake.instances {
            listen::wake(&self.notifier, listen::INSTANCES);
        }
    }

    /// Writes a batch, [`MAX_SAVEPOINTS`] items to a transaction, each item in a savepoint so
    /// that one failing item (a lost lease) leaves the others. The outer error means the
    /// database could not be reached for a chunk; nothing of that chunk was written. Claims of
    /// the chunk's completions are granted at the end of its transaction, once every result is
    /// in.
    async fn write_batch(
        &self,
        items: &[BatchItem<'_>],
        cache: Cache<'_>,
    ) -> StoreResult<Vec<StoreResult<Written>>> {
        let mut results = Vec::with_capacity(items.len());
        // Results on their way into claimed turns are made durable by those turns' commits:
        // their own commit need not wait for the WAL flush.
        let lazy = items
            .iter()
            .all(|item| matches!(item, BatchItem::Completion(_, c) if c.claim_turn.is_some()));
        for chunk in items.chunks(MAX_SAVEPOINTS) {
            let mut tx = self.begin().await?;
            if lazy {
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
            }
            let mut wake = Wake::default();
            let mut chunk_results = Vec::with_capacity(chunk.len());
            let mut claims: Vec<(usize, String, Timestamp, Duration)> = Vec::new();
            for (i, item) in chunk.iter().enumerate() {
                let mut savepoint = sqlx::Connection::begin(&mut *tx)
                    .await
                    .map_err(store_error)?;
                let mut this = Wake::default();
                let written = match item {
                    BatchItem::Turn(commit) => turns::commit(&mut savepoint, commit, &mut this)
                        .await
                        .map(Written::Turn),
                    BatchItem::Completion(now, completion) => {
                        tasks::complete(&mut savepoint, *now, completion, &mut this)
                            .await
                            .map(|instance_id| {
                                if let Some(lease) = completion.claim_turn {
                                    if !claims.iter().any(|(_, id, _, _)| *id == instance_id) {
                                        claims.push((i, instance_id.clone(), *now, lease));
                                    }
                                }
                                Written::Completion(Box::default())
                            })
                    }
                };
                match written {
                    Ok(w) => {
                        savepoint.commit().await.map_err(store_error)?;
                        wake.merge(this);
                        chunk_results.push(Ok(w));
                    }
                    Err(e) => {
                        savepoint.rollback().await.map_err(store_error)?;
                        chunk_results.push(Err(e.into()));
                    }
                }
            }
            for (i, instance_id, now, lease) in claims {
                match turns::claim(&mut tx, &instance_id, now, lease, cache).await {
                    Ok(turn) => {
                        if let Some(Ok(Written::Completion(c))) = chunk_results.get_mut(i) {
                            c.turn = turn;
                        }
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        return Err(e.into());
                    }
                }
            }
            results.extend(self.finish(tx, Ok(chunk_results), wake).await?);
        }
        Ok(results)
    }

    async fn conn(&self) -> StoreResult<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(store_error)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn notifier(&self) -> Option<&Notifier> {
        Some(&self.notifier)
    }

    async fn create_instance(&self, instance: NewInstance) -> StoreResult<CreateOutcome> {
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let out = instances::create(&mut tx, &instance, &mut wake).await;
        self.finish(tx, out, wake).await
    }

    async fn send(&self, message: NewMessage) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let out = instances::send(&mut tx, &message, &mut wake).await;
        self.finish(tx, out, wake).await
    }

    async fn fetch_turns(
        &self,
        now: Timestamp,
        max: usize,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<TurnWork>> {
        let mut tx = self.begin().await?;
        let out = turns::fetch(&mut tx, now, max, lease, cache).await;
        self.finish(tx, out, Wake::default()).await
    }

    async fn commit_turns(
        &self,
        commits: Vec<TurnCommit>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        let items: Vec<BatchItem<'_>> = commits.iter().map(BatchItem::Turn).collect();
        let written = self.write_batch(&items, None).await?;
        Ok(written
            .into_iter()
            .map(|w| match w {
                Ok(Written::Turn(committed)) => Ok(committed),
                Ok(Written::Completion(_)) => Ok(Committed::default()),
                Err(e) => Err(e),
            })
            .collect())
    }

    async fn abandon_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let out = turns::abandon(&mut tx, instance_id, token, retry_at, &mut wake).await;
        self.finish(tx, out, wake).await
    }

    async fn fetch_tasks(
        &self,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> StoreResult<Vec<TaskWork>> {
        let mut tx = self.begin().await?;
        let out = tasks::fetch(&mut tx, now, max, lease).await;
        self.finish(tx, out, Wake::default()).await
    }

    async fn complete_tasks(
        &self,
        now: Timestamp,
        completions: Vec<TaskCompletion>,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<StoreResult<Completed>>> {
        let items: Vec<BatchItem<'_>> = completions
            .iter()
            .map(|c| BatchItem::Completion(now, c))
            .collect();
        let written = self.write_batch(&items, cache).await?;
        Ok(written
            .into_iter()
            .map(|w| match w {
                Ok(Written::Completion(completed)) => Ok(*completed),
                Ok(Written::Turn(_)) => Ok(Completed::default()),
                Err(e) => Err(e),
            })
            .collect())
    }

    async fn renew_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp> {
        let mut tx = self.begin().await?;
        let out = tasks::renew(&mut tx, id, token, now, lease).await;
        self.finish(tx, out, Wake::default()).await
    }

    async fn release_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let out = tasks::release(&mut tx, id, token, &release, &mut wake).await;
        self.finish(tx, out, wake).await
    }

    async fn next_due(&self, now: Timestamp) -> StoreResult<NextDue> {
        let mut conn = self.conn().await?;
        Ok(admin::next_due(&mut conn, now).await?)
    }

    async fn instance(&self, id: &str) -> StoreResult<Option<InstanceInfo>> {
        let mut conn = self.conn().await?;
        Ok(instances::get(&mut conn, id).await?)
    }

    async fn journal(&self, id: &str, execution: Option<u32>) -> StoreResult<Vec<Event>> {
        let mut conn = self.conn().await?;
        Ok(admin::journal(&mut conn, id, execution).await?)
    }

    async fn list(&self, filter: ListFilter) -> StoreResult<Page> {
        let mut conn = self.conn().await?;
        Ok(admin::list(&mut conn, &filter).await?)
    }

    async fn purge(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let out = admin::purge(&mut tx, id).await;
        self.finish(tx, out, Wake::default()).await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let mut conn = self.conn().await?;
        Ok(admin::stats(&mut conn).await?)
    }
}
