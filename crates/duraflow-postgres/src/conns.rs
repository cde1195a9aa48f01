//! The store's connections: its pool, and a few connections kept out of the pool between
//! operations, so that an operation does not pay sqlx's round trips around the pool. sqlx
//! pings every connection it takes back (a `Sync` and its reply, on the server's CPU as well as
//! ours) and, by default, every connection it hands out: two round trips beside a commit's
//! three.
//!
//! - The pool pings a connection it hands out only when it has been idle for
//!   [`PING_WHEN_IDLE_FOR`] or longer (`connect::pool`); so does [`Conns::acquire`] with a kept
//!   one. A connection that died since its last use fails its next operation instead, with a
//!   transient error (`StoreError::Unavailable`) that the engine retries, and is then closed.
//! - Only a connection whose operation ran to its end (every reply read: [`Conns::keep`] is
//!   called after the last `await`) is kept; any other goes back to sqlx, whose ping drains or
//!   closes it.
//! - At most two are kept, and two fewer than the pool's size (`capacity`): a caller waiting for
//!   the pool is never starved by connections sitting here, as each operation that ends while
//!   they are all kept gives its connection back to the pool.
//! - A connection taken from the pool [`KEEP_AT_MOST`] ago or longer goes back to it when its
//!   operation ends instead of being kept, so that the pool's own checks (its `max_lifetime`
//!   and `idle_timeout`, which close old connections) apply to the connections kept here too:
//!   without that, a kept connection served operation after operation without ever going back.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgPool, Postgres};

use crate::error::store_error;
use duraflow_store::StoreResult;

/// How long a connection may have been idle and still be used without a ping (HikariCP's
/// `aliveBypassWindowMs` is the same idea, with the same 500 ms).
pub(crate) const PING_WHEN_IDLE_FOR: Duration = Duration::from_millis(500);

/// The most connections kept out of the pool.
const MOST_KEPT: usize = 2;

/// How many connections are kept out of a pool of `size`.
fn capacity(size: u32) -> usize {
    usize::try_from(size)
        .unwrap_or(usize::MAX)
        .saturating_sub(2)
        .min(MOST_KEPT)
}

/// The longest a connection is kept out of the pool between operations, counted from when it
/// was taken from the pool.
pub(crate) const KEEP_AT_MOST: Duration = Duration::from_secs(60);

/// A pooled connection, and when it was taken from the pool.
#[derive(Debug)]
pub(crate) struct Conn {
    inner: PoolConnection<Postgres>,
    taken: Instant,
}

impl Deref for Conn {
    type Target = PoolConnection<Postgres>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

/// The pool and the connections kept out of it. Clones share both.
#[derive(Clone, Debug)]
pub(crate) struct Conns {
    pool: PgPool,
    kept: Arc<Kept>,
    capacity: usize,
}

/// The connections kept, each with the time it was put back.
#[derive(Debug, Default)]
struct Kept(Mutex<Vec<(Conn, Instant)>>);

impl Drop for Kept {
    /// A connection dropped the usual way goes back to its pool in a task of its own, which
    /// needs a Tokio runtime; a store can be dropped after its runtime has ended. The
    /// connections are then detached from the pool and closed where they are.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err() {
            let kept = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
            for (conn, _) in kept.drain(..) {
                drop(conn.inner.detach());
            }
        }
    }
}

impl Conns {
    /// Keeps up to [`MOST_KEPT`] connections of `pool`, whose size is `max_connections`, and
    /// never more than two fewer than that.
    pub(crate) fn new(pool: PgPool, max_connections: u32) -> Conns {
        Conns {
            pool,
            kept: Arc::default(),
            capacity: capacity(max_connections),
        }
    }

    /// The pool.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How many connections may be kept at once.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many connections are kept now.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.lock().len()
    }

    /// Gives every kept connection back to the pool (the store's opening keeps some).
    #[cfg(test)]
    fn give_back_all(&self) {
        let kept: Vec<_> = self.lock().drain(..).collect();
        drop(kept);
    }

    /// A kept connection (pinged first if it has been idle for [`PING_WHEN_IDLE_FOR`] or
    /// longer; one that fails the ping is closed), or one from the pool.
    pub(crate) async fn acquire(&self) -> StoreResult<Conn> {
        loop {
            let taken = self.lock().pop();
            let Some((mut conn, since)) = taken else {
                break;
            };
            if since.elapsed() < PING_WHEN_IDLE_FOR || conn.ping().await.is_ok() {
                return Ok(conn);
            }
            conn.close_on_drop();
        }
        let inner = self.pool.acquire().await.map_err(store_error)?;
        Ok(Conn {
            inner,
            taken: Instant::now(),
        })
    }

    /// Keeps `conn`, whose operation ran to its end, or gives it back to the pool when as many
    /// connections as may be kept are kept already, or when it was taken from the pool
    /// [`KEEP_AT_MOST`] ago or longer.
    pub(crate) fn keep(&self, conn: Conn) {
        self.keep_since(conn, Instant::now());
    }

    /// [`Conns::keep`], as if the connection had been idle since `since`.
    fn keep_since(&self, conn: Conn, since: Instant) {
        let mut kept = self.lock();
        if kept.len() < self.capacity && conn.taken.elapsed() < KEEP_AT_MOST {
            kept.push((conn, since));
            return;
        }
        drop(kept);
        drop(conn);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Conn, Instant)>> {
        // Push and pop cannot leave the list half-changed by a panic.
        self.kept.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::time::{Duration, Instant};

    use duraflow_store::{Management, StoreError};
    use sqlx::PgConnection;

    use super::{capacity, Conns, KEEP_AT_MOST, PING_WHEN_IDLE_FOR};
    use crate::testing::test_store;

    async fn pid(conn: &mut PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// Kills backend `pid` from another connection, and waits until it is gone.
    async fn terminate(conns: &Conns, pid: i32) {
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)")
            .bind(pid)
            .fetch_one(conns.pool())
            .await
            .unwrap();
        assert!(killed, "backend {pid} was terminated");
    }

    /// Two fewer than the pool's size, and never more than two.
    #[test]
    fn keeps_two_fewer_than_the_pool_holds_and_at_most_two() {
        assert_eq!(
            [0, 1, 2, 3, 4, 10].map(capacity),
            [0, 0, 0, 1, 2, 2],
            "capacity by pool size 0, 1, 2, 3, 4, 10"
        );
    }

    /// A store whose connections are kept can be dropped after its runtime has ended.
    #[test]
    fn a_store_can_be_dropped_outside_its_runtime() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(async {
            let store = test_store("dft_conns_drop").await.unwrap();
            assert!(store.describe("nobody").await.unwrap().is_none());
            store
        });
        assert_eq!(store.conns.kept(), 1);
        drop(rt);
        drop(store);
    }

    /// A kept connection serves the next acquire; beyond the capacity, connections go back
    /// to the pool.
    #[tokio::test]
    async fn a_kept_connection_serves_the_next_operation() {
        let store = test_store("dft_conns_reuse").await.unwrap();
        let conns = &store.conns;
        assert_eq!(conns.capacity(), 2, "a pool of 5");
        let mut first = conns.acquire().await.unwrap();
        let mut second = conns.acquire().await.unwrap();
        let mut third = conns.acquire().await.unwrap();
        let pids = [
            pid(&mut first).await,
            pid(&mut second).await,
            pid(&mut third).await,
        ];
        conns.keep(first);
        conns.keep(second);
        conns.keep(third);
        assert_eq!(conns.kept(), 2, "the third went back to the pool");
        let mut again = conns.acquire().await.unwrap();
        assert_eq!(
            pid(&mut again).await,
            pids[1],
            "the last kept comes out first"
        );
        assert_eq!(conns.kept(), 1);
    }

    /// A store operation keeps its connection, and the next one runs on it.
    #[tokio::test]
    async fn store_operations_keep_their_connection() {
        let store = test_store("dft_conns_ops").await.unwrap();
        store.conns.give_back_all();
        assert!(store.describe("nobody").await.unwrap().is_none());
        assert_eq!(store.conns.kept(), 1, "the read's connection is kept");
        let mut conn = store.conns.acquire().await.unwrap();
        pid(&mut conn).await;
        assert_eq!(store.conns.kept(), 0, "and the next acquire takes it");
    }

    /// A connection keeps the time it was taken from the pool while it is kept and taken
    /// again, and once that is [`KEEP_AT_MOST`] ago it goes back to the pool when its
    /// operation ends (where the pool's lifetime checks apply to it) instead of being kept.
    #[tokio::test]
    async fn a_connection_out_of_the_pool_too_long_goes_back() {
        let store = test_store("dft_conns_old").await.unwrap();
        let conns = &store.conns;
        conns.give_back_all();
        let mut conn = conns.acquire().await.unwrap();
        let almost = Instant::now()
            .checked_sub(KEEP_AT_MOST - Duration::from_secs(5))
            .unwrap();
        conn.taken = almost;
        conns.keep(conn);
        assert_eq!(conns.kept(), 1, "taken less than KEEP_AT_MOST ago: kept");
        let mut conn = conns.acquire().await.unwrap();
        assert_eq!(
            conn.taken, almost,
            "taking a kept connection is not taking it anew"
        );
        conn.taken = Instant::now().checked_sub(KEEP_AT_MOST).unwrap();
        conns.keep(conn);
        assert_eq!(conns.kept(), 0, "taken KEEP_AT_MOST ago: back to the pool");
        let fresh = conns.acquire().await.unwrap();
        assert!(
            fresh.taken.elapsed() < KEEP_AT_MOST,
            "taken from the pool anew"
        );
        conns.keep(fresh);
        assert_eq!(conns.kept(), 1);
    }

    /// A kept connection that died while idle for longer than [`PING_WHEN_IDLE_FOR`] is found
    /// by the ping, closed, and replaced: the caller gets a working connection.
    #[tokio::test]
    async fn a_dead_connection_idle_past_the_window_is_replaced() {
        let store = test_store("dft_conns_ping").await.unwrap();
        let conns = &store.conns;
        let mut conn = conns.acquire().await.unwrap();
        let dead = pid(&mut conn).await;
        let long_ago = Instant::now()
            .checked_sub(PING_WHEN_IDLE_FOR + Duration::from_millis(1))
            .unwrap();
        conns.keep_since(conn, long_ago);
        terminate(conns, dead).await;
        let mut conn = conns.acquire().await.unwrap();
        assert_ne!(pid(&mut conn).await, dead, "a new backend");
        assert_eq!(conns.kept(), 0);
    }

    /// A kept connection that died within the window fails the operation that takes it with a
    /// transient error (the engine retries those); it is not kept, and the next operation
    /// succeeds.
    #[tokio::test]
    async fn a_connection_that_died_within_the_window_fails_once_transiently() {
        let store = test_store("dft_conns_dead").await.unwrap();
        store.conns.give_back_all();
        let mut conn = store.conns.acquire().await.unwrap();
        let dead = pid(&mut conn).await;
        store.conns.keep(conn);
        terminate(&store.conns, dead).await;
        let err = store.describe("nobody").await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(_)),
            "a transient error: {err:?}"
        );
        assert_eq!(store.conns.kept(), 0, "the dead connection was not kept");
        assert!(store.describe("nobody").await.unwrap().is_none());
    }
}
