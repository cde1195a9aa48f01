//! Flow control: queue configurations, and the admission of pending instances within their
//! queue's limits.
//!
//! **Atomicity.** Admissions that a limit or a key governs happen only in [`admit`], in a
//! transaction that first takes a transaction-level advisory lock per queue
//! (`pg_advisory_xact_lock`, on the schema and queue name, queues in sorted order) and only
//! then selects its candidates and counts what runs. In `READ COMMITTED` every statement reads
//! a snapshot taken when it starts, so the statements after the lock see every admission that
//! an earlier holder of the lock committed (it held the lock until its commit); nothing else
//! admits such instances (the one-statement fetch and the claims take only instances that need
//! no admission). A finish committed meanwhile only lowers the count, which can hold back an
//! instance until the next fetch, never admit one too many. Candidates are locked `FOR UPDATE
//! SKIP LOCKED`; a fetcher waiting for the queue's lock holds no lock the holder waits for, so
//! they cannot deadlock. Fetches of queues without limits never take the lock. The transaction
//! commits without waiting for its WAL flush (`synchronous_commit = off`): what it writes,
//! leases and admission times, need not be durable, and the lock is held for less time.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use duraflow_core::Timestamp;
use duraflow_store::{codec, needs_admission, Admission, FetchFilter, QueueConfig, Verdict};
use sqlx::{Connection, PgConnection, Row};

use super::turns::{leased_columns, leased_row, turn_extras, Leased, TURN_EXTRA_COLUMNS};
use crate::error::OpResult;

/// Whether the instance row `i` can be leased without an admission decision: it is admitted
/// already, or it has no key and its queue no limit. Claims take only such turns.
pub(crate) const ADMISSION_FREE: &str = "(i.started_at IS NOT NULL OR (i.concurrency_key IS NULL
     AND NOT EXISTS (SELECT 1 FROM queue_configs qc
                      WHERE qc.name = i.queue AND qc.limits_queue)))";

/// The statement of [`configure`]: `$1` the queue, `$2` its configuration, `$3` whether it
/// limits the queue, `$4` the channel.
pub(crate) static CONFIGURE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH stored AS (
             INSERT INTO queue_configs (name, config, limits_queue) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                SET config = excluded.config, limits_queue = excluded.limits_queue
             RETURNING name
         )
         SELECT pg_notify($4, '{turns}'), pg_notify($4, '{tasks}') FROM stored",
        turns = crate::listen::TURNS,
        tasks = crate::listen::TASKS,
    )
});

/// Stores `config` in place of the queue's configuration.
/// Every fetcher on the schema is woken: looser limits may admit (or lease) what was held back.
pub(crate) async fn configure(
    conn: &mut PgConnection,
    config: &QueueConfig,
    channel: &str,
) -> OpResult<()> {
    sqlx::query(CONFIGURE.as_str())
        .bind(&config.name)
        .bind(codec::to_json(config)?)
        .bind(config.limits_queue())
        .bind(channel)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn decode(name: &str, text: &str) -> OpResult<QueueConfig> {
    Ok(codec::from_json(
        text,
        format_args!("queue configuration {name:?}"),
    )?)
}

/// The statement of [`config`]: `$1` the queue.
pub(crate) const CONFIG: &str = "SELECT config FROM queue_configs WHERE name = $1";

/// The stored configuration of queue `name`.
pub(crate) async fn config(conn: &mut PgConnection, name: &str) -> OpResult<Option<QueueConfig>> {
    let text: Option<(String,)> = sqlx::query_as(CONFIG)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    text.map(|(t,)| decode(name, &t)).transpose()
}

/// The statement of [`configs`].
pub(crate) const CONFIGS: &str = "SELECT name, config FROM queue_configs ORDER BY name";

/// Every stored configuration, by name.
pub(crate) async fn configs(conn: &mut PgConnection) -> OpResult<Vec<QueueConfig>> {
    let rows: Vec<(String, String)> = sqlx::query_as(CONFIGS).fetch_all(&mut *conn).await?;
    rows.iter().map(|(name, text)| decode(name, text)).collect()
}

/// Whether due pending instances that need an admission wait in the served queues: the
/// expression the one-statement fetch adds, with its parameters (`$1` now, `$4` queues, `$5`
/// names).
///
/// The queues with limits are found first, and each is probed for one waiting instance: the
/// probe is a scalar subquery with `LIMIT 1`, which PostgreSQL runs per limited queue as
/// written. Written as a nested `EXISTS`, the planner joined the other way round: it read
/// every pending due instance of the served queues, grouped them by queue, and only then
/// looked for a limit (at every fetch, 0.4 ms of a 1 ms fetch with 1,294 instances waiting for
/// a fetch in a queue without limits, and growing with them).
pub(crate) const ADMISSIONS_WAITING: &str = "(EXISTS (
        SELECT 1 FROM instances w
         WHERE w.queue = ANY($4::text[]) AND w.due_at <= $1 AND w.started_at IS NULL
           AND w.concurrency_key IS NOT NULL
           AND ($5::text[] IS NULL OR w.name = ANY($5::text[])))
     OR EXISTS (
        SELECT 1 FROM queue_configs qc
         WHERE qc.name = ANY($4::text[]) AND qc.limits_queue
           AND (SELECT true FROM instances w
                 WHERE w.queue = qc.name AND w.due_at <= $1 AND w.started_at IS NULL
                   AND ($5::text[] IS NULL OR w.name = ANY($5::text[]))
                 LIMIT 1)))";

/// A pending due instance that needs an admission.
struct Candidate {
    order: (Reverse<i32>, i64, Option<i64>, String),
    queue: String,
    key: Option<String>,
}

/// The lock [`admit`] takes per queue: `$1` the queue.
pub(crate) const QUEUE_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '/' || $1))";

/// The candidates [`admit`] reads per queue: `$1` the queue, `$2` now, `$3` the workflow names
/// served (NULL: all), `$4` whether the queue has a limit, `$5` the most candidates.
pub(crate) const CANDIDATES: &str =
    "SELECT id, priority, due_at, due_seq, concurrency_key FROM instances
      WHERE queue = $1 AND due_at IS NOT NULL AND started_at IS NULL AND due_at <= $2
        AND ($3::text[] IS NULL OR name = ANY($3::text[]))
        AND ($4 OR concurrency_key IS NOT NULL)
      ORDER BY priority DESC, due_at, due_seq
      LIMIT $5
        FOR UPDATE SKIP LOCKED";

/// Admits and leases up to `max` pending due instances of the served queues that need an
/// admission, in lease order (priority, then due order), within their queues' limits; see the
/// module's doc for why it is atomic.
pub(crate) async fn admit(
    conn: &mut PgConnection,
    filter: &FetchFilter,
    now: Timestamp,
    max: usize,
    lease: Duration,
    owner: Option<i32>,
) -> OpResult<Vec<Leased>> {
    let mut queues: Vec<&str> = filter.queues.iter().map(String::as_str).collect();
    queues.sort_unstable();
    queues.dedup();
    let mut tx = conn.begin().await?;
    // Only leases and admissions are written, which need not be durable (a crash loses both
    // together: the instance is pending again); not waiting for the WAL flush keeps the
    // queue's lock short.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let mut candidates = Vec::new();
    let mut configs = HashMap::new();
    for queue in queues {
        let config = config(&mut tx, queue).await?;
        let limited = config.as_ref().is_some_and(QueueConfig::limits_queue);
        sqlx::query(QUEUE_LOCK)
            .bind(queue)
            .execute(&mut *tx)
            .await
            .map(|_| ())?;
        let rows = sqlx::query(CANDIDATES)
            .bind(queue)
            .bind(now.0)
            .bind(&filter.names)
            .bind(limited)
            .bind(duraflow_store::pending_scan(max) as i64)
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            candidates.push(Candidate {
                order: (
                    Reverse(row.try_get("priority")?),
                    row.try_get("due_at")?,
                    row.try_get("due_seq")?,
                    row.try_get("id")?,
                ),
                queue: queue.to_owned(),
                key: row.try_get("concurrency_key")?,
            });
        }
        configs.insert(queue.to_owned(), config);
    }
    candidates.sort_by(|a, b| a.order.cmp(&b.order));
    let mut admissions: HashMap<String, Admission> = HashMap::new();
    let mut ids: Vec<&str> = Vec::new();
    for c in &candidates {
        if ids.len() == max {
            break;
        }
        let config = configs.get(&c.queue).cloned().flatten();
        if !needs_admission(config.as_ref(), c.key.as_deref()) {
            continue;
        }
        if !admissions.contains_key(&c.queue) {
            let keys: Vec<&str> = candidates
                .iter()
                .filter(|o| o.queue == c.queue)
                .filter_map(|o| o.key.as_deref())
                .collect();
            let admission = counts(&mut tx, &c.queue, config, &keys, now).await?;
            admissions.insert(c.queue.clone(), admission);
        }
        let verdict = admissions
            .get_mut(&c.queue)
            .map_or(Verdict::Stop, |a| a.admit(c.key.as_deref()));
        if verdict == Verdict::Admit {
            ids.push(&c.order.3);
        }
    }
    let leased = if ids.is_empty() {
        Vec::new()
    } else {
        lease_admitted(&mut tx, &ids, now, lease, owner).await?
    };
    tx.commit().await?;
    Ok(leased)
}

/// The queue-wide counts of [`counts`]: `$1` the queue, `$2` the start of the rate window
/// (NULL: none), `$3` now.
pub(crate) const COUNTS: &str = "SELECT (SELECT count(*) FROM instances
              WHERE queue = $1 AND started_at IS NOT NULL
                AND status IN ('pending', 'running')),
            CASE WHEN $2::bigint IS NULL THEN 0 ELSE
                 (SELECT count(*) FROM instances
                   WHERE queue = $1 AND started_at IS NOT NULL
                     AND started_at > $2 AND started_at <= $3) END";

/// The per-key counts of [`counts`]: `$1` the queue, `$2` the keys.
pub(crate) const KEY_COUNTS: &str = "SELECT concurrency_key, count(*) FROM instances
      WHERE queue = $1 AND concurrency_key = ANY($2::text[])
        AND started_at IS NOT NULL AND status IN ('pending', 'running')
      GROUP BY concurrency_key";

/// Counts what runs in `queue` (and under each of `keys`) and what it admitted in the rate
/// window ending at `now`.
async fn counts(
    conn: &mut PgConnection,
    queue: &str,
    config: Option<QueueConfig>,
    keys: &[&str],
    now: Timestamp,
) -> OpResult<Admission> {
    let config = config.unwrap_or_else(|| QueueConfig::new(queue));
    let from = config.window_start(now);
    let (running, in_window): (i64, i64) = sqlx::query_as(COUNTS)
        .bind(queue)
        .bind(from.map(|f| f.0))
        .bind(now.0)
        .fetch_one(&mut *conn)
        .await?;
    let by_key: Vec<(String, i64)> = if keys.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(KEY_COUNTS)
            .bind(queue)
            .bind(keys)
            .fetch_all(&mut *conn)
            .await?
    };
    let n = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(Admission::new(
        config,
        n(running),
        n(in_window),
        by_key.into_iter().map(|(k, c)| (k, n(c))).collect(),
    ))
}

/// The statement of [`lease_admitted`]: `$1` now, `$2` the instance ids, `$3` the lease's expiry,
/// `$4` the lease owner.
pub(crate) static LEASE_ADMITTED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH leased AS (
             UPDATE instances AS t
                SET lease_token = nextval('lease_tokens'), lease_until = $3, due_at = $3,
                    lease_owner = $4, started_at = $1
               FROM unnest($2::text[]) WITH ORDINALITY AS k(id, n)
              WHERE t.id = k.id
             RETURNING {leased}, k.n AS n
         )
         SELECT l.*, {TURN_EXTRA_COLUMNS} FROM leased l {extras} ORDER BY l.n",
        leased = leased_columns("t"),
        extras = turn_extras(
            "SELECT m.id, m.visible_at, m.kind FROM messages m
              WHERE m.instance_id = l.id AND m.visible_at <= $1"
        ),
    )
});

/// Leases the admitted instances `ids` (locked by this transaction), recording their
/// admission, with their visible messages. The rows were locked before this statement began,
/// so its snapshot already holds the latest commit to each.
async fn lease_admitted(
    conn: &mut PgConnection,
    ids: &[&str],
    now: Timestamp,
    lease: Duration,
    owner: Option<i32>,
) -> OpResult<Vec<Leased>> {
    let rows = sqlx::query(LEASE_ADMITTED.as_str())
        .bind(now.0)
        .bind(ids)
        .bind(now.plus(lease).0)
        .bind(owner)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(leased_row).collect()
}
