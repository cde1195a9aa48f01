//! Lease owners: which stores on the schema are alive, so that the leases of one whose process
//! died are released within about a second instead of when they expire.
//!
//! Every store takes an owner id from the `owner_ids` sequence and holds the session-level
//! advisory lock `(class, id)` on a connection of its own, outside the pool, for as long as it
//! lives (`class` is the oid of the schema's `owners` table, so the keys of two schemas, or of
//! two databases, never meet); only then does it record itself in `owners`. Every lease it
//! takes, renews or keeps carries its id in `lease_owner`. PostgreSQL drops a session's locks
//! when the session ends, however it ends (the process SIGKILLed, its machine gone once the
//! server notices, the backend terminated), so a store that can take the lock of another id
//! listed in `owners` knows that owner is gone: it releases the leases carrying the id (the
//! instances become due, the tasks visible; their fencing tokens stay what they were, so
//! nothing the dead owner might still write is accepted, and the attempt it was making still
//! counts) and deletes the row, in one transaction, holding the dead id's lock meanwhile so
//! that no other store does the same at once.
//!
//! Each store looks about once a second ([`SWEEP_EVERY`]), with one statement on its lock
//! connection that also tells it that connection is alive. When the lock connection is lost
//! the store stops stamping leases with that id at once (leases taken meanwhile carry no owner
//! and are only taken over when they expire), reconnects, and takes a new id: the old one's
//! lock may still be held by a session the server has not yet noticed is gone, and once it is
//! free any store, this one included, releases the leases still carrying it.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use duraflow_core::Timestamp;
use duraflow_store::{Notifier, StoreResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::{store_error, OpResult};
use crate::listen;

/// How often a store looks for owners that are gone (and checks its own lock connection).
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How long a statement on the lock connection may take before the connection is given up.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first key of every owner lock of the schema: the `owners` table's oid (found on the
/// search path, which is the store's schema). Advisory locks are per database.
const LOCK_CLASS: &str = "'owners'::regclass::oid::integer";

/// This store's owner identity and the task that keeps it.
pub(crate) struct Owners {
    /// The id stamped on the leases this store takes; 0 while it holds no owner lock (the
    /// sequence starts at 1).
    current: Arc<AtomicI32>,
    task: JoinHandle<()>,
}

impl Owners {
    /// Takes an owner id and its lock on a connection of its own, then keeps them (and looks
    /// for owners that are gone) in a task until the store is dropped.
    pub(crate) async fn start(
        opts: PgConnectOptions,
        channel: String,
        notifier: Arc<Notifier>,
    ) -> StoreResult<Owners> {
        let session = Session::claim(&opts).await.map_err(store_error)?;
        let current = Arc::new(AtomicI32::new(session.id));
        let task = tokio::spawn(keep(session, opts, channel, notifier, Arc::clone(&current)));
        Ok(Owners { current, task })
    }

    /// The id to stamp on leases taken now, or `None` while the store holds no owner lock.
    pub(crate) fn current(&self) -> Option<i32> {
        match self.current.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }
}

impl Drop for Owners {
    fn drop(&mut self) {
        // Dropping the connection ends the session and frees the lock: other stores release
        // whatever leases this one still held and delete its row.
        self.task.abort();
    }
}

/// The lock connection of one owner id.
struct Session {
    conn: PgConnection,
    id: i32,
}

impl Session {
    /// Connects, takes a fresh id and its lock, then records the owner. The lock is taken
    /// before the row is visible, so no store ever finds the row with the lock free while
    /// this store lives.
    async fn claim(opts: &PgConnectOptions) -> Result<Session, sqlx::Error> {
        let mut conn = PgConnection::connect_with(opts).await?;
        let id: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH s AS MATERIALIZED (SELECT nextval('owner_ids')::integer AS id),
                  l AS MATERIALIZED (SELECT id, pg_try_advisory_lock({LOCK_CLASS}, id) AS locked
                                       FROM s)
             INSERT INTO owners (id, started_at, backend_pid)
             SELECT id, $1, pg_backend_pid() FROM l WHERE locked
             RETURNING id"
        )))
        .bind(Timestamp::now_system().0)
        .fetch_optional(&mut conn)
        .await?;
        match id {
            Some(id) => {
                debug!(owner = id, "took a PostgreSQL lease-owner id");
                Ok(Session { conn, id })
            }
            // Nobody knows a fresh id: only a server that lost its sequence's state gets here.
            None => Err(sqlx::Error::Protocol(
                "the lock of a fresh lease-owner id was taken".into(),
            )),
        }
    }

    /// Releases the leases of every owner whose lock is free, and deletes their rows; returns
    /// how many leases were released.
    async fn sweep(&mut self, channel: &str) -> OpResult<u64> {
        // Taking a gone owner's lock keeps other stores from sweeping it at the same time; our
        // own id is never tried (this session holds its lock, and would take it again).
        let gone: Vec<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM owners
              WHERE CASE WHEN id = $1 THEN false ELSE pg_try_advisory_lock({LOCK_CLASS}, id) END
              ORDER BY id"
        )))
        .bind(self.id)
        .fetch_all(&mut self.conn)
        .await?;
        let mut released = 0;
        let mut failed = None;
        for &owner in &gone {
            if failed.is_none() {
                match release(&mut self.conn, owner, channel).await {
                    Ok(n) => {
                        released += n;
                        info!(
                            owner,
                            released = n,
                            "released the leases of a PostgreSQL store that is gone"
                        );
                    }
                    Err(e) => failed = Some(e),
                }
            }
            sqlx::query(AssertSqlSafe(format!(
                "SELECT pg_advisory_unlock({LOCK_CLASS}, $1)"
            )))
            .bind(owner)
            .execute(&mut self.conn)
            .await?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(released),
        }
    }
}

/// Releases every lease that carries `owner` and is still running, and deletes the owner's
/// row, in one transaction that announces the work it made due. The instances are due now
/// and the tasks visible now, as if their leases had just expired; `lease_until` becomes 0, so
/// that every lease check refuses the old token (whatever the clock of the process checking),
/// while the token itself stays until the next lease replaces it. Instance rows are locked
/// first, sorted by id, and task rows after them, as everywhere in the store.
async fn release(conn: &mut PgConnection, owner: i32, channel: &str) -> OpResult<u64> {
    let now = Timestamp::now_system().0;
    let mut tx = conn.begin().await?;
    let turns = sqlx::query(
        "UPDATE instances SET lease_until = 0, due_at = $2
          WHERE id IN (SELECT id FROM instances
                        WHERE due_at > $2 AND lease_until > $2 AND lease_owner = $1
                        ORDER BY id FOR UPDATE)",
    )
    .bind(owner)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let tasks = sqlx::query(
        "UPDATE tasks SET lease_until = 0, visible_at = $2
          WHERE id IN (SELECT id FROM tasks
                        WHERE visible_at > $2 AND lease_until > $2 AND lease_owner = $1
                        ORDER BY id FOR UPDATE)",
    )
    .bind(owner)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(AssertSqlSafe(format!(
        "WITH gone AS (DELETE FROM owners WHERE id = $1)
         SELECT pg_notify($2, w.payload)
           FROM (VALUES ('{turns}', $3), ('{tasks}', $4)) AS w(payload, wanted)
          WHERE w.wanted",
        turns = listen::TURNS,
        tasks = listen::TASKS,
    )))
    .bind(owner)
    .bind(channel)
    .bind(turns > 0)
    .bind(tasks > 0)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(turns + tasks)
}

/// Keeps the owner lock and sweeps about once a second until aborted. A sweep that fails is
/// followed by a ping; when that fails too (or either takes too long) the connection is
/// given up, the store stops stamping leases with its id, and it claims a new id on a new
/// connection at the next tick.
async fn keep(
    session: Session,
    opts: PgConnectOptions,
    channel: String,
    notifier: Arc<Notifier>,
    current: Arc<AtomicI32>,
) {
    let mut session = Some(session);
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(s) = session.as_mut() else {
            match tokio::time::timeout(STATEMENT_TIMEOUT, Session::claim(&opts)).await {
                Ok(Ok(s)) => {
                    info!(
                        owner = s.id,
                        "the PostgreSQL store holds a lease-owner lock again"
                    );
                    current.store(s.id, Ordering::Release);
                    session = Some(s);
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot take a PostgreSQL lease-owner lock; retrying");
                }
                Err(_) => warn!("taking a PostgreSQL lease-owner lock timed out; retrying"),
            }
            continue;
        };
        let lost = match tokio::time::timeout(STATEMENT_TIMEOUT, s.sweep(&channel)).await {
            Ok(Ok(0)) => false,
            Ok(Ok(_)) => {
                listen::wake(&notifier, listen::TURNS);
                listen::wake(&notifier, listen::TASKS);
                false
            }
            Ok(Err(e)) => {
                let e = duraflow_store::StoreError::from(e);
                debug!(error = %e, "sweeping PostgreSQL lease owners failed");
                let ping = sqlx::query("SELECT 1").execute(&mut s.conn);
                !matches!(
                    tokio::time::timeout(STATEMENT_TIMEOUT, ping).await,
                    Ok(Ok(_))
                )
            }
            Err(_) => true,
        };
        if lost {
            current.store(0, Ordering::Release);
            if let Some(s) = session.take() {
                warn!(
                    owner = s.id,
                    "lost the PostgreSQL lease-owner connection: leases taken until a new \
                     owner lock is held are only taken over when they expire; reconnecting"
                );
            }
        }
    }
}
