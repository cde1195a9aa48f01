//! The PostgreSQL store for duraflow: any number of worker processes, on any number of
//! machines, share one database with the same semantics as the embedded store.
//!
//! - **Claims** use `FOR UPDATE SKIP LOCKED` on the instance and task rows themselves, with
//!   leases and fencing tokens from one sequence; two concurrent fetches never get the same
//!   instance or task.
//! - **Group commit**: a batch of turn commits (or task completions) shares one transaction
//!   and a few statements, whatever its size: each step is one statement for every item of
//!   the batch. Whatever can refuse an item (a lost lease) is checked before anything of it is
//!   written, so one refused item does not undo the others.
//! - **Creations share statements**: `create_instance` calls made while another is being
//!   written are created together, in one statement and one commit.
//! - **Few round trips**: an operation that is one statement runs outside a transaction
//!   (PostgreSQL commits it by itself), lease checks are conditions of the writes they guard,
//!   and wakeups are announced by the writing statements.
//! - **Wakeups** with LISTEN/NOTIFY on the schema's channel, so work committed by any process
//!   is picked up within milliseconds; the engine still polls as a fallback for notifications
//!   lost while a connection was down.
//! - **Migrations** are embedded and applied on connect under an advisory lock; a database
//!   migrated by a newer build is refused (`StoreError::NewerSchema`).
//! - **A schema per application or tenant** (`PostgresOptions::schema`, default `duraflow`).
//! - **Connection failures** surface as `StoreError::Unavailable`; the engine retries with
//!   backoff and the pool reconnects when the server is back.
//! - **A dead process's work is taken over within about a second**, not when its leases
//!   expire: each store holds a session-level advisory lock on a connection of its own (one
//!   more than its pool) and stamps its leases with its owner id
//!   ([`PostgresStore::owner_id`]); PostgreSQL drops the lock when the session ends, however
//!   the process ended, and the other stores, which look about once a second, then release
//!   that owner's leases. The fencing tokens stay, so anything the dead process still writes
//!   is refused.
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
mod conns;
mod creates;
mod error;
#[cfg(test)]
mod hot_updates;
mod listen;
mod ops;
mod owners;
#[cfg(test)]
mod plans;
#[cfg(test)]
mod races;
mod skipped;
pub mod testing;
mod tx;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use duraflow_core::{EmitOutcome, Event, Payload, StoredEvent, Timestamp};
use duraflow_store::feed::validate_subscriber;
use duraflow_store::management::purge_filter;
use duraflow_store::{
    validate_instance_id, validate_queue_event, Cache, CallbackResolution, CallbackTarget,
    Committed, Completed, CreateOutcome, FeedEntry, FetchFilter, InstanceInfo, LeaseToken,
    ListFilter, Management, NewInstance, NewMessage, NextDue, Notifier, Page, QueueConfig,
    QueueDepth, Registered, Registration, Store, StoreResult, StoreStats, TaskCompletion, TaskId,
    TaskRelease, TaskWork, TurnCommit, TurnWork,
};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::task::JoinHandle;

use crate::conns::{Conn, Conns};
use crate::creates::Creates;
use crate::error::{store_error, OpResult};
use crate::ops::instances::FirstTurnClaim;
use crate::ops::{
    admin, callbacks, commit, feed, fetch, flow, instances, queue_events, registry, tasks, turns,
    Wake,
};
use crate::owners::Owners;
use crate::skipped::SkippedRows;
use crate::tx::LockedTx;

/// Settings for [`PostgresStore::connect_with`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The schema that holds the store's tables (default `duraflow`); created if missing.
    /// Lowercase letters, digits and underscores.
    pub schema: String,
    /// The most connections in the pool (default 10). The store keeps two more of its own:
    /// one that LISTENs for wakeups and one that holds its lease-owner lock.
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
    conns: Conns,
    notifier: Arc<Notifier>,
    channel: String,
    schema: String,
    listener: JoinHandle<()>,
    creates: Creates,
    creator: JoinHandle<()>,
    owners: Owners,
    skipped: SkippedRows,
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
        self.creator.abort();
    }
}

/// The newest schema version this build applies.
pub fn schema_version() -> i64 {
    connect::latest_version()
}

/// The version of the duraflow schema `schema` in the database at `url`, read without
/// changing anything: the newest migration applied, or `None` when there is none yet
/// (connecting a store creates and migrates it).
pub async fn schema_version_of(url: &str, schema: &str) -> StoreResult<Option<i64>> {
    connect::applied_version(url, schema).await
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
        let pool = connect::pool(opts.clone(), &options).await?;
        let notifier = Arc::new(Notifier::new());
        let channel = listen::channel(&options.schema);
        let owners = Owners::start(opts, pool.clone(), channel.clone(), notifier.clone()).await?;
        let listener = tokio::spawn(listen::listen(
            pool.clone(),
            channel.clone(),
            notifier.clone(),
        ));
        let conns = Conns::new(pool, options.max_connections);
        let (creates, creator) = Creates::spawn(conns.clone(), channel.clone(), notifier.clone());
        Ok(PostgresStore {
            conns,
            notifier,
            channel,
            schema: options.schema,
            listener,
            creates,
            creator,
            owners,
            skipped: SkippedRows::default(),
        })
    }

    /// The schema the store's tables are in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection pool, for tests and operators.
    pub fn pool(&self) -> &PgPool {
        self.conns.pool()
    }

    /// The lease-owner id this store stamps on the leases it takes (the `owners` table and the
    /// `lease_owner` columns), or `None` while it holds no owner lock: its lock connection was
    /// lost and it has not yet taken a new id. See [the crate documentation](crate).
    pub fn owner_id(&self) -> Option<i32> {
        self.owners.current()
    }

    /// How many times this store has looked for lease owners that are gone (about once a
    /// second) since it was opened: for diagnostics, and for tests that wait for sweeps to
    /// have happened rather than for a time to pass.
    pub fn owner_sweeps(&self) -> u64 {
        self.owners.sweeps()
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.conns.pool().begin().await.map_err(store_error)
    }

    /// Commits `tx` if `result` is a success (its statements announced the wakeups on the
    /// channel; this wakes this process after the commit), or rolls it back.
    async fn finish<T>(
        &self,
        tx: Transaction<'static, Postgres>,
        result: OpResult<T>,
        wake: Wake,
    ) -> StoreResult<T> {
        match result {
            Ok(value) => {
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

    /// Commits `tx` if `result` is a success, then wakes this process, or rolls it back.
    async fn finish_locked<T>(
        &self,
        tx: LockedTx<'_>,
        result: OpResult<T>,
        wake: Wake,
    ) -> StoreResult<T> {
        match result {
            Ok(value) => {
                let mut wake = wake;
                let watched = wake.to_hand_over(&self.notifier);
                if watched.is_empty() {
                    tx.commit().await?;
                } else {
                    // The instances it finished, for their watchers in this process: read with
                    // the `COMMIT`, in its round trip, so that a waiting client need not read.
                    let rows = tx
                        .read_and_commit(&instances::get_many_sql(&watched))
                        .await?;
                    for row in &rows {
                        if let Ok(info) = crate::codec::instance_row(row) {
                            wake.hand_over(info);
                        }
                    }
                }
                self.wake_local(wake);
                Ok(value)
            }
            Err(e) => {
                tx.rollback().await;
                Err(e.into())
            }
        }
    }

    /// Runs a one-statement operation (or one whose later statements only read) on a pooled
    /// connection outside a transaction: PostgreSQL commits each statement by itself, which
    /// saves the `BEGIN` and `COMMIT` round trips.
    fn autocommit<T>(&self, conn: Conn, result: OpResult<T>, wake: Wake) -> StoreResult<T> {
        let value = self.done(conn, result)?;
        self.wake_local(wake);
        Ok(value)
    }

    fn wake_local(&self, wake: Wake) {
        if wake.turns {
            listen::wake(&self.notifier, listen::TURNS);
        }
        if wake.tasks {
            listen::wake(&self.notifier, listen::TASKS);
        }
        if !wake.instances.is_empty() || !wake.finished.is_empty() {
            self.notifier
                .instances_finished(wake.instances.iter().map(String::as_str), wake.finished);
        }
        if wake.feed {
            self.notifier.feed.notify_waiters();
        }
    }

    async fn conn(&self) -> StoreResult<Conn> {
        self.conns.acquire().await
    }

    /// The result of a read on `conn`, which is kept for the next operation when the read
    /// succeeded (it then ran to its end: see [`crate::conns`]).
    fn done<T>(&self, conn: Conn, result: OpResult<T>) -> StoreResult<T> {
        if result.is_ok() {
            self.conns.keep(conn);
        }
        Ok(result?)
    }
}

#[async_trait]
impl Management for PostgresStore {
    async fn describe(&self, id: &str) -> StoreResult<Option<InstanceInfo>> {
        let mut conn = self.conn().await?;
        let out = instances::describe(&mut conn, id).await;
        self.done(conn, out)
    }

    async fn list(&self, filter: ListFilter) -> StoreResult<Page> {
        let mut conn = self.conn().await?;
        let out = admin::list(&mut conn, &filter).await;
        self.done(conn, out)
    }

    async fn purge(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let out = admin::purge(&mut tx, id).await;
        self.finish(tx, out, Wake::default()).await
    }

    async fn purge_finished(&self, filter: ListFilter, max: usize) -> StoreResult<Vec<String>> {
        let filter = purge_filter(filter, max)?;
        let mut tx = self.begin().await?;
        let out = admin::purge_finished(&mut tx, &filter).await;
        self.finish(tx, out, Wake::default()).await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        // A transaction of its own, for the planner setting of its whole-table reads.
        let mut tx = self.begin().await?;
        let out = admin::stats(&mut tx).await;
        self.finish(tx, out, Wake::default()).await
    }

    async fn queue_depths(&self, now: Timestamp) -> StoreResult<Vec<QueueDepth>> {
        let mut tx = self.begin().await?;
        let out = admin::queue_depths(&mut tx, now).await;
        self.finish(tx, out, Wake::default()).await
    }

    async fn registrations(&self) -> StoreResult<Vec<Registered>> {
        let mut conn = self.conn().await?;
        let out = registry::list(&mut conn).await;
        self.done(conn, out)
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

    fn management(&self) -> Option<&dyn Management> {
        Some(self)
    }

    async fn create_instance(&self, instance: NewInstance) -> StoreResult<CreateOutcome> {
        validate_instance_id(&instance.id)?;
        self.creates.create(instance).await
    }

    async fn create_instances_claiming(
        &self,
        instances: Vec<NewInstance>,
        claim: Vec<bool>,
        lease: Duration,
    ) -> StoreResult<Vec<(CreateOutcome, Option<TurnWork>)>> {
        // Created in shared statements, which claim the first turns asked for that need no
        // admission.
        for new in &instances {
            validate_instance_id(&new.id)?;
        }
        let owner = self.owner_id();
        let mut claim = claim.into_iter();
        let new = instances
            .into_iter()
            .map(|instance| {
                let claimed = claim.next().unwrap_or(false);
                (instance, claimed.then_some(FirstTurnClaim { lease, owner }))
            })
            .collect();
        self.creates.create_many(new).await
    }

    async fn create_instance_claiming(
        &self,
        instance: NewInstance,
        lease: Duration,
    ) -> StoreResult<(CreateOutcome, Option<TurnWork>)> {
        validate_instance_id(&instance.id)?;
        if instance.due_at() > instance.created_at || instance.options.concurrency_key.is_some() {
            // A delayed start is not due yet, and a first turn with a key needs an admission:
            // nothing to claim.
            return Ok((self.create_instance(instance).await?, None));
        }
        let mut conn = self.conn().await?;
        // The statement also reads whether the queue has a limit (and then writes nothing).
        let out = instances::create_claiming(&mut conn, &instance, lease, self.owner_id()).await;
        match self.done(conn, out)? {
            Some(created) => Ok(created),
            None => Ok((self.create_instance(instance).await?, None)),
        }
    }

    async fn send(&self, message: NewMessage) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut wake = Wake::default();
        let out = instances::send(&mut conn, &message, &self.channel, &mut wake).await;
        self.autocommit(conn, out, wake)
    }

    async fn send_claiming(
        &self,
        message: NewMessage,
        filter: &FetchFilter,
        now: Timestamp,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Option<TurnWork>> {
        let mut conn = self.conn().await?;
        let mut wake = Wake::default();
        let claim = ops::sends::Claim {
            filter,
            now,
            lease,
            owner: self.owner_id(),
            cache,
        };
        let out =
            ops::sends::send_claiming(&mut conn, &message, &claim, &self.channel, &mut wake).await;
        self.autocommit(conn, out, wake)
    }

    async fn fetch_turns(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<TurnWork>> {
        // The lease commits by itself; journals read afterwards cannot change while it lasts.
        let mut conn = self.conn().await?;
        let out = fetch::fetch(&mut conn, filter, now, max, lease, self.owner_id(), cache).await;
        let fetched = self.autocommit(conn, out, Wake::default())?;
        self.skipped.after_fetch(fetched.skipped, &self.notifier);
        Ok(fetched.turns)
    }

    async fn commit_turns(
        &self,
        commits: Vec<TurnCommit>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip when the batch needs nothing but its own rows' checks; a batch the
        // statement refuses wrote nothing and goes the batch path, which says why.
        if commit::one_statement::eligible(&commits) {
            let mut conn = self.conn().await?;
            let out = commit::one_statement::commit(
                &mut conn,
                &commits,
                &self.channel,
                self.owner_id(),
                &self.notifier,
            )
            .await;
            if let Some((results, wake)) = self.done(conn, out)? {
                self.wake_local(wake);
                return Ok(results);
            }
        }
        let lock = commit::lock_statement(&commits);
        let (mut tx, locked) = LockedTx::begin(&self.conns, "", &lock).await?;
        let mut wake = Wake::default();
        let out = commit::commit_batch(
            tx.conn()?,
            &commits,
            &locked,
            &self.channel,
            self.owner_id(),
            &mut wake,
        )
        .await;
        self.finish_locked(tx, out, wake).await
    }

    async fn abandon_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let out = turns::abandon(
            &mut tx,
            instance_id,
            token,
            retry_at,
            &self.channel,
            &mut wake,
        )
        .await;
        self.finish(tx, out, wake).await
    }

    async fn renew_turn(
        &self,
        instance_id: &str,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
    ) -> StoreResult<Timestamp> {
        let mut conn = self.conn().await?;
        let out = turns::renew(&mut conn, instance_id, token, now, lease, self.owner_id()).await;
        self.autocommit(conn, out, Wake::default())
    }

    async fn fetch_tasks(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> StoreResult<Vec<TaskWork>> {
        let mut conn = self.conn().await?;
        let out = tasks::fetch(&mut conn, filter, now, max, lease, self.owner_id()).await;
        self.autocommit(conn, out, Wake::default())
    }

    async fn complete_tasks(
        &self,
        filter: &FetchFilter,
        now: Timestamp,
        completions: Vec<TaskCompletion>,
        cache: Cache<'_>,
    ) -> StoreResult<Vec<StoreResult<Completed>>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        // Results on their way into claimed turns are made durable by those turns' commits:
        // their own commit need not wait for the WAL flush.
        let lazy = completions.iter().all(|c| c.claim_turn.is_some());
        let setup = if lazy {
            "SET LOCAL synchronous_commit = off;"
        } else {
            ""
        };
        let lock = tasks::lock_statement(&completions);
        let (mut tx, locked) = LockedTx::begin(&self.conns, setup, &lock).await?;
        let mut wake = Wake::default();
        let out = tasks::complete_batch(
            tx.conn()?,
            tasks::Claims {
                filter,
                cache,
                owner: self.owner_id(),
            },
            now,
            &completions,
            &locked,
            &self.channel,
            &mut wake,
        )
        .await;
        self.finish_locked(tx, out, wake).await
    }

    async fn renew_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        now: Timestamp,
        lease: Duration,
        details: Option<Payload>,
    ) -> StoreResult<Timestamp> {
        let mut conn = self.conn().await?;
        let out = tasks::renew(
            &mut conn,
            id,
            token,
            now,
            lease,
            details.as_ref(),
            self.owner_id(),
        )
        .await;
        self.autocommit(conn, out, Wake::default())
    }

    async fn release_task(
        &self,
        id: TaskId,
        token: LeaseToken,
        release: TaskRelease,
    ) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut wake = Wake::default();
        let out = tasks::release(&mut conn, id, token, &release, &self.channel, &mut wake).await;
        self.autocommit(conn, out, wake)
    }

    async fn resolve_callback(
        &self,
        now: Timestamp,
        token: &str,
        resolution: CallbackResolution,
    ) -> StoreResult<CallbackTarget> {
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let out =
            callbacks::resolve(&mut tx, now, token, resolution, &self.channel, &mut wake).await;
        self.finish(tx, out, wake).await?
    }

    async fn emit_event(
        &self,
        queue: &str,
        name: &str,
        data: Payload,
        now: Timestamp,
    ) -> StoreResult<EmitOutcome> {
        validate_queue_event(queue, name)?;
        let mut tx = self.begin().await?;
        let mut wake = Wake::default();
        let out = async {
            queue_events::lock(&mut tx, queue, name).await?;
            queue_events::emit(&mut tx, queue, name, &data, now, &self.channel, &mut wake).await
        }
        .await;
        self.finish(tx, out, wake).await
    }

    async fn queue_event(&self, queue: &str, name: &str) -> StoreResult<Option<StoredEvent>> {
        let mut conn = self.conn().await?;
        let out = queue_events::get(&mut conn, queue, name).await;
        self.done(conn, out)
    }

    async fn configure_queue(&self, config: QueueConfig) -> StoreResult<()> {
        config.validate()?;
        let mut conn = self.conn().await?;
        let out = flow::configure(&mut conn, &config, &self.channel).await;
        let wake = Wake {
            turns: true,
            tasks: true,
            ..Wake::default()
        };
        self.autocommit(conn, out, wake)
    }

    async fn queue_config(&self, name: &str) -> StoreResult<Option<QueueConfig>> {
        let mut conn = self.conn().await?;
        let out = flow::config(&mut conn, name).await;
        self.done(conn, out)
    }

    async fn queue_configs(&self) -> StoreResult<Vec<QueueConfig>> {
        let mut conn = self.conn().await?;
        let out = flow::configs(&mut conn).await;
        self.done(conn, out)
    }

    async fn next_due(&self, now: Timestamp) -> StoreResult<NextDue> {
        let mut conn = self.conn().await?;
        let out = admin::next_due(&mut conn, now).await;
        self.done(conn, out)
    }

    async fn instance(&self, id: &str) -> StoreResult<Option<InstanceInfo>> {
        let mut conn = self.conn().await?;
        let out = instances::get(&mut conn, id).await;
        self.done(conn, out)
    }

    async fn journal(&self, id: &str, execution: Option<u32>) -> StoreResult<Vec<Event>> {
        let mut conn = self.conn().await?;
        let out = admin::journal(&mut conn, id, execution).await;
        self.done(conn, out)
    }

    async fn read_feed(
        &self,
        after: u64,
        limit: usize,
        topic_prefix: Option<&str>,
    ) -> StoreResult<Vec<FeedEntry>> {
        let mut conn = self.conn().await?;
        let out = feed::read(&mut conn, after, limit, topic_prefix).await;
        self.done(conn, out)
    }

    async fn feed_cursor(&self, subscriber: &str) -> StoreResult<Option<u64>> {
        let mut conn = self.conn().await?;
        let out = feed::cursor(&mut conn, subscriber).await;
        self.done(conn, out)
    }

    async fn save_feed_cursor(&self, subscriber: &str, position: u64) -> StoreResult<()> {
        validate_subscriber(subscriber)?;
        let mut conn = self.conn().await?;
        let out = feed::save_cursor(&mut conn, subscriber, position).await;
        self.done(conn, out)
    }

    async fn announce(&self, registrations: Vec<Registration>, now: Timestamp) -> StoreResult<()> {
        duraflow_store::validate_registrations(&registrations)?;
        let mut conn = self.conn().await?;
        let out = registry::announce(&mut conn, &registrations, now).await;
        self.done(conn, out)
    }
}
