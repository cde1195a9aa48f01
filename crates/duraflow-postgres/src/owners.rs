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
//! connection that also tells it that connection is alive. The releases run on pooled
//! connections, so that one waiting for row locks never holds up the lock connection (which
//! would then look lost). Only leases still running by the releasing store's clock are
//! released; an expired one is due already.
//!
//! When a statement on the lock connection fails or hangs, the store stops stamping leases
//! with its id at once (leases taken meanwhile carry no owner and are only taken over when they
//! expire), reconnects, and takes a new id rather than the old one: the server may still hold
//! the old session (and its lock) until it notices the session is gone, and once that lock is
//! free any store, this one included, releases the leases still carrying the old id, whose
//! late writes are then refused like a dead owner's.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use duraflow_core::Timestamp;
use duraflow_store::{Notifier, StoreError, StoreResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::{store_error, OpResult};
use crate::listen;

/// How often a store looks for owners that are gone (and checks its own lock connection).
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How long a statement on the lock connection may take before the connection is given up.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long releasing one gone owner's leases may take before it is tried at a later sweep.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The first key of every owner lock of the schema: the `owners` table's oid (found on the
/// search path, which is the store's schema). Advisory locks are per database.
const LOCK_CLASS: &str = "'owners'::regclass::oid::integer";

/// This store's owner identity and the task that keeps it.
pub(crate) struct Owners {
    /// The id stamped on the leases this store takes; 0 while it holds no owner lock (the
    /// sequence starts at 1).
    current: Arc<AtomicI32>,
    /// Sweeps finished so far (each looked for owners that are gone and released theirs).
    sweeps: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Owners {
    /// Takes an owner id and its lock on a connection of its own, then keeps them (and looks
    /// for owners that are gone) in a task until the store is dropped.
    pub(crate) async fn start(
        opts: PgConnectOptions,
        pool: PgPool,
        channel: String,
        notifier: Arc<Notifier>,
    ) -> StoreResult<Owners> {
        let session = Session::claim(&opts).await.map_err(store_error)?;
        let current = Arc::new(AtomicI32::new(session.id));
        let sweeps = Arc::new(AtomicU64::new(0));
        let keeper = Keeper {
            opts,
            pool,
            channel,
            notifier,
            current: Arc::clone(&current),
            sweeps: Arc::clone(&sweeps),
        };
        let task = tokio::spawn(keeper.run(session));
        Ok(Owners {
            current,
            sweeps,
            task,
        })
    }

    /// How many sweeps have finished since the store was opened.
    pub(crate) fn sweeps(&self) -> u64 {
        self.sweeps.load(Ordering::Acquire)
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

/// The statement of `Session::claim`: `$1` now.
pub(crate) static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH s AS MATERIALIZED (SELECT nextval('owner_ids')::integer AS id),
              l AS MATERIALIZED (SELECT id, pg_try_advisory_lock({LOCK_CLASS}, id) AS locked
                                   FROM s)
         INSERT INTO owners (id, started_at, backend_pid)
         SELECT id, $1, pg_backend_pid() FROM l WHERE locked
         RETURNING id",
    )
});

/// The statement of `Session::gone`: `$1` this session's owner id.
pub(crate) static GONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id FROM owners
          WHERE CASE WHEN id = $1 THEN false ELSE pg_try_advisory_lock({LOCK_CLASS}, id) END
          ORDER BY id",
    )
});

/// The statement of `Session::unlock`: `$1` the owner id.
pub(crate) static UNLOCK: LazyLock<String> =
    LazyLock::new(|| format!("SELECT pg_advisory_unlock({LOCK_CLASS}, $1)",));

impl Session {
    /// Connects, takes a fresh id and its lock, then records the owner. The lock is taken
    /// before the row is visible, so no store ever finds the row with the lock free while
    /// this store lives.
    async fn claim(opts: &PgConnectOptions) -> Result<Session, sqlx::Error> {
        let mut conn = PgConnection::connect_with(opts).await?;
        let id: Option<i32> = sqlx::query_scalar(CLAIM.as_str())
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

    /// Lists the owners whose lock is free, taking their locks, so that no other store
    /// releases them at the same time. This session's own id is never tried: it holds that
    /// lock, and would take it again.
    async fn gone(&mut self) -> Result<Vec<i32>, sqlx::Error> {
        sqlx::query_scalar(GONE.as_str())
            .bind(self.id)
            .fetch_all(&mut self.conn)
            .await
    }

    /// Gives back the lock of a gone owner that [`Session::gone`] took.
    async fn unlock(&mut self, owner: i32) -> Result<(), sqlx::Error> {
        sqlx::query(UNLOCK.as_str())
            .bind(owner)
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }
}

/// The turns statement of [`release`]: `$1` the owner, `$2` now. The rows are found, and
/// locked in id order, by a sub-select whose ids the update then seeks one by one (`= ANY` of
/// an array): with `IN (sub-select)` the planner may join them to the whole table instead.
pub(crate) const RELEASE_TURNS: &str = "UPDATE instances SET lease_until = 0, due_at = $2
      WHERE id = ANY(ARRAY(SELECT id FROM instances
                    WHERE due_at > $2 AND lease_until > $2 AND lease_owner = $1
                    ORDER BY id FOR UPDATE))";

/// The tasks statement of [`release`]: `$1` the owner, `$2` now; written as
/// [`RELEASE_TURNS`] is (with `IN (sub-select)`, it read every task to join them).
pub(crate) const RELEASE_TASKS: &str = "UPDATE tasks SET lease_until = 0, visible_at = $2
      WHERE id = ANY(ARRAY(SELECT id FROM tasks
                    WHERE visible_at > $2 AND lease_until > $2 AND lease_owner = $1
                    ORDER BY id FOR UPDATE))";

/// The last statement of [`release`]: `$1` the owner, `$2` the channel, `$3` and `$4` whether
/// turns and tasks were released.
pub(crate) static RELEASE_OWNER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH gone AS (DELETE FROM owners WHERE id = $1)
         SELECT pg_notify($2, w.payload)
           FROM (VALUES ('{turns}', $3::boolean), ('{tasks}', $4::boolean)) AS w(payload, wanted)
          WHERE w.wanted",
        turns = listen::TURNS,
        tasks = listen::TASKS,
    )
});

/// Releases every lease that carries `owner` and is still running, and deletes the owner's
/// row, in one transaction that announces the work it made due. The instances are due now
/// and the tasks visible now, as if their leases had just expired; `lease_until` becomes 0, so
/// that every lease check refuses the old token (whatever the clock of the process checking),
/// while the token itself stays until the next lease replaces it. Instance rows are locked
/// first, sorted by id, and task rows after them, as everywhere in the store.
async fn release(conn: &mut PgConnection, owner: i32, channel: &str) -> OpResult<u64> {
    let now = Timestamp::now_system().0;
    let mut tx = conn.begin().await?;
    let turns = sqlx::query(RELEASE_TURNS)
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let tasks = sqlx::query(RELEASE_TASKS)
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(RELEASE_OWNER.as_str())
        .bind(owner)
        .bind(channel)
        .bind(turns > 0)
        .bind(tasks > 0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(turns + tasks)
}

/// Why the lock connection is given up.
enum Lost {
    Failed(sqlx::Error),
    TimedOut,
}

/// Runs a statement on the lock connection, for at most [`STATEMENT_TIMEOUT`].
async fn timed<T>(
    statement: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, Lost> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, statement).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Lost::Failed(e)),
        Err(_) => Err(Lost::TimedOut),
    }
}

/// What the task that keeps the owner lock works with.
struct Keeper {
    opts: PgConnectOptions,
    pool: PgPool,
    channel: String,
    notifier: Arc<Notifier>,
    current: Arc<AtomicI32>,
    sweeps: Arc<AtomicU64>,
}

impl Keeper {
    /// Keeps the owner lock and sweeps about once a second until aborted. When a statement on
    /// the lock connection fails or takes too long, the connection is given up, the store
    /// stops stamping leases with its id, and it claims a new id on a new connection at the
    /// next tick.
    async fn run(self, session: Session) {
        let mut session = Some(session);
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(s) = session.as_mut() else {
                match timed(Session::claim(&self.opts)).await {
                    Ok(s) => {
                        info!(
                            owner = s.id,
                            "the PostgreSQL store holds a lease-owner lock again"
                        );
                        self.current.store(s.id, Ordering::Release);
                        session = Some(s);
                    }
                    Err(Lost::Failed(e)) => {
                        warn!(error = %e, "cannot take a PostgreSQL lease-owner lock; retrying");
                    }
                    Err(Lost::TimedOut) => {
                        warn!("taking a PostgreSQL lease-owner lock timed out; retrying");
                    }
                }
                continue;
            };
            let swept = self.sweep(s).await;
            self.sweeps.fetch_add(1, Ordering::AcqRel);
            if let Err(lost) = swept {
                self.current.store(0, Ordering::Release);
                let error = match lost {
                    Lost::Failed(e) => e.to_string(),
                    Lost::TimedOut => "a statement timed out".into(),
                };
                warn!(
                    owner = s.id,
                    error,
                    "lost the PostgreSQL lease-owner connection: leases taken until a new \
                     owner lock is held are only taken over when they expire; reconnecting"
                );
                session = None;
            }
        }
    }

    /// Releases the leases of every owner whose lock is free and deletes their rows, each in
    /// a transaction of its own on a pooled connection while `session` holds that owner's
    /// lock, then wakes this process's fetchers if anything was released. A release that
    /// fails is logged and tried again at the next sweep; `Err` means the lock connection
    /// failed.
    async fn sweep(&self, session: &mut Session) -> Result<(), Lost> {
        let gone = timed(session.gone()).await?;
        let mut released = 0;
        for owner in gone {
            let result = tokio::time::timeout(RELEASE_TIMEOUT, async {
                let mut conn = self.pool.acquire().await?;
                release(&mut conn, owner, &self.channel).await
            })
            .await;
            match result {
                Ok(Ok(n)) => {
                    released += n;
                    info!(
                        owner,
                        released = n,
                        "released the leases of a PostgreSQL store that is gone"
                    );
                }
                Ok(Err(e)) => warn!(
                    owner,
                    error = %StoreError::from(e),
                    "cannot release the leases of a PostgreSQL store that is gone; retrying"
                ),
                Err(_) => warn!(
                    owner,
                    "releasing the leases of a PostgreSQL store that is gone timed out; retrying"
                ),
            }
            timed(session.unlock(owner)).await?;
        }
        if released > 0 {
            listen::wake(&self.notifier, listen::TURNS);
            listen::wake(&self.notifier, listen::TASKS);
        }
        Ok(())
    }
}
