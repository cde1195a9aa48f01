//! Flow control: queue configurations, the due candidates of a fetch in priority order, and
//! the admission of pending instances within their queue's limits.
//!
//! The writer thread runs one transaction at a time, so counting what runs and admitting in
//! the same job is atomic: no other fetch (in this process or another, which waits for the
//! write lock) can admit in between.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use duraflow_core::Timestamp;
use duraflow_store::{
    admit_in_order, pending_scan, Admission, Candidate as Pending, FetchFilter, QueueConfig,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::codec::{filter_params, from_json, in_row, json};
use crate::db::Tx;
use crate::error::{OpError, SqlResult};

/// Stores `config` in place of the queue's configuration.
///
/// The flow-control indexes hold only the instances admitted under a limit (`flow_counted`).
/// A queue limit configured now must count what the queue admitted before it, so those
/// instances are marked: the unfinished ones, and those admitted since the latest admission's
/// time less the rate window (a window that ends at any later time starts after that).
pub(crate) fn configure(conn: &Connection, tx: &mut Tx<'_>, config: &QueueConfig) -> SqlResult<()> {
    let before = config_in(conn, tx, &config.name)?;
    tx.queues
        .0
        .insert(config.name.clone(), Some(Arc::new(config.clone())));
    conn.prepare_cached(
        "INSERT INTO queue_configs (name, config) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET config = excluded.config",
    )?
    .execute(params![config.name, json(config)?])?;
    // Since a configuration that limited the queue was stored, every admission was marked;
    // only a first limit, or a longer rate window than before, has earlier ones to mark. (An
    // engine configures its queues at every start: this keeps that from scanning the queue.)
    let marked = before.as_ref().is_some_and(|b| {
        b.limits_queue()
            && config
                .rate_limit
                .is_none_or(|new| b.rate_limit.is_some_and(|old| old.per >= new.per))
    });
    if config.limits_queue() && !marked {
        let window = config
            .rate_limit
            .map(|r| duraflow_core::duration_millis(r.per));
        conn.prepare_cached(
            "UPDATE instances SET flow_counted = 1
              WHERE queue = ?1 AND flow_counted = 0 AND started_at IS NOT NULL
                AND (status IN ('pending', 'running')
                     OR (?2 IS NOT NULL AND started_at >= (
                            SELECT max(started_at) FROM instances WHERE queue = ?1) - ?2))",
        )?
        .execute(params![config.name, window])?;
    }
    Ok(())
}

/// The queue configurations a write transaction has read, by queue. The writer's transaction
/// is the only one writing while it lasts (another process waits for the write lock), so a
/// configuration read once holds until the transaction ends, unless the transaction itself
/// changes it ([`configure`] updates the memo). A fresh memo comes with every transaction.
#[derive(Default)]
pub(crate) struct QueueMemo(HashMap<String, Option<Arc<QueueConfig>>>);

/// The configuration of queue `name`, read at most once per transaction.
pub(crate) fn config_in(
    conn: &Connection,
    tx: &mut Tx<'_>,
    name: &str,
) -> SqlResult<Option<Arc<QueueConfig>>> {
    if let Some(known) = tx.queues.0.get(name) {
        return Ok(known.clone());
    }
    let read = config(conn, name)?.map(Arc::new);
    tx.queues.0.insert(name.to_owned(), read.clone());
    Ok(read)
}

/// The stored configuration of queue `name`.
pub(crate) fn config(conn: &Connection, name: &str) -> SqlResult<Option<QueueConfig>> {
    let text: Option<String> = in_row(
        || format!("queue configuration {name:?}"),
        || {
            Ok(conn
                .prepare_cached("SELECT config FROM queue_configs WHERE name = ?1")?
                .query_row([name], |r| r.get(0))
                .optional()?)
        },
    )?;
    text.map(|t| from_json(&t, format_args!("queue configuration {name:?}")))
        .transpose()
}

/// The task concurrency limit of queue `name`, if it has one.
pub(crate) fn task_limit(conn: &Connection, tx: &mut Tx<'_>, name: &str) -> SqlResult<Option<u32>> {
    Ok(config_in(conn, tx, name)?.and_then(|c| c.task_concurrency))
}

/// The task concurrency limits of the queues that have one, by queue (one read of the small
/// `queue_configs` table, whatever the number of queues a fetch serves).
pub(crate) fn task_limits(conn: &Connection) -> SqlResult<HashMap<String, u32>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, json_extract(config, '$.task_concurrency') FROM queue_configs
          WHERE json_extract(config, '$.task_concurrency') IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = HashMap::new();
    for row in rows {
        let (name, n) = row?;
        out.insert(name, u32::try_from(n).unwrap_or(u32::MAX));
    }
    Ok(out)
}

/// How many more tasks of `queue`, whose task limit is `limit`, may be leased at `now`: the
/// limit less its tasks whose lease is live. A leased task's `visible_at` is its lease's
/// expiry, so the live ones are read from `tasks_queue_due` past `now`.
pub(crate) fn task_quota(
    conn: &Connection,
    queue: &str,
    limit: u32,
    now: Timestamp,
) -> SqlResult<usize> {
    let running: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM tasks INDEXED BY tasks_queue_due
              WHERE queue = ?1 AND visible_at > ?2 AND lease_until > ?2",
        )?
        .query_row(params![queue, now.0], |r| r.get(0))?;
    let running = usize::try_from(running).unwrap_or(usize::MAX);
    Ok((limit as usize).saturating_sub(running))
}

/// Whether instance `id` has a leased task in a queue with a task limit: deleting its tasks
/// frees a slot, so task fetchers must be woken.
pub(crate) fn holds_task_slot(conn: &Connection, id: &str) -> SqlResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (
                 SELECT 1 FROM tasks t JOIN queue_configs q ON q.name = t.queue
                  WHERE t.instance_id = ?1 AND t.lease_until IS NOT NULL
                    AND json_extract(q.config, '$.task_concurrency') IS NOT NULL)",
        )?
        .query_row([id], |r| r.get(0))?)
}

/// Every stored configuration, by name.
pub(crate) fn configs(conn: &Connection) -> SqlResult<Vec<QueueConfig>> {
    let mut stmt = conn.prepare_cached("SELECT name, config FROM queue_configs ORDER BY name")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let (name, text): (String, String) = in_row(
            || "a queue configuration".to_owned(),
            || Ok((row.get(0)?, row.get(1)?)),
        )?;
        out.push(from_json(
            &text,
            format_args!("queue configuration {name:?}"),
        )?);
    }
    Ok(out)
}

/// Where instance `id` stands for admission: whether it is admitted, its concurrency key,
/// its queue and its workflow's name.
struct AdmissionState {
    admitted: bool,
    key: Option<String>,
    queue: String,
    name: String,
}

fn admission_state(conn: &Connection, id: &str) -> SqlResult<Option<AdmissionState>> {
    in_row(
        || format!("instance {id:?}"),
        || {
            Ok(conn
                .prepare_cached(
                    "SELECT started_at IS NOT NULL, concurrency_key, queue, name
                       FROM instances WHERE id = ?1",
                )?
                .query_row([id], |r| {
                    Ok(AdmissionState {
                        admitted: r.get(0)?,
                        key: r.get(1)?,
                        queue: r.get(2)?,
                        name: r.get(3)?,
                    })
                })
                .optional()?)
        },
    )
}

/// Whether instance `id`'s next turn can be leased without an admission decision: it is
/// admitted already, or neither its queue's limits nor a key apply to it. Claims lease only
/// such turns; with a `filter`, only of instances that pass it (their queue and workflow).
pub(crate) fn claimable(
    conn: &Connection,
    tx: &mut Tx<'_>,
    id: &str,
    filter: Option<&FetchFilter>,
) -> SqlResult<bool> {
    let Some(state) = admission_state(conn, id)? else {
        return Ok(false);
    };
    if filter.is_some_and(|f| !f.matches(&state.queue, &state.name)) {
        return Ok(false);
    }
    Ok(state.admitted
        || !duraflow_store::needs_admission(
            config_in(conn, tx, &state.queue)?.as_deref(),
            state.key.as_deref(),
        ))
}

/// Whether instance `id`, about to finish, holds room its queue or key limits: then the
/// fetchers that held others back are woken.
pub(crate) fn frees_room(conn: &Connection, tx: &mut Tx<'_>, id: &str) -> SqlResult<bool> {
    Ok(match admission_state(conn, id)? {
        Some(state) if state.admitted => duraflow_store::needs_admission(
            config_in(conn, tx, &state.queue)?.as_deref(),
            state.key.as_deref(),
        ),
        _ => false,
    })
}

/// A due instance a fetch may lease.
struct Candidate {
    order: (Reverse<i64>, i64, Option<i64>, i64, String),
    queue: String,
    key: Option<String>,
    admitted: bool,
}

/// A due instance a fetch leases.
pub(crate) struct Due {
    /// The instance's id.
    pub(crate) id: String,
    /// Whether a limit admits it now (it was pending and a key or its queue's limits apply):
    /// the flow-control indexes then count it.
    pub(crate) counted: bool,
}

/// The due instances a fetch at `now` leases, at most `max`, in lease order: highest priority
/// first, then due order. Admitted instances are taken whenever due; a pending one only when
/// its queue admits it.
pub(crate) fn due_ids(
    conn: &Connection,
    filter: &FetchFilter,
    now: Timestamp,
    max: usize,
) -> SqlResult<Vec<Due>> {
    let (queues, names) = filter_params(filter)?;
    // Most fetches find what they need among the first `max` pending instances of each queue;
    // only when a full key held some of those back may others further on be admitted instead.
    let mut scan = max;
    loop {
        let mut candidates = Vec::new();
        let mut scanned_full = false;
        for queue in &queues {
            candidates.extend(candidates_of(
                conn,
                queue,
                true,
                now,
                names.as_deref(),
                max,
            )?);
            let pending = candidates_of(conn, queue, false, now, names.as_deref(), scan)?;
            scanned_full |= pending.len() >= scan;
            candidates.extend(pending);
        }
        candidates.sort_by(|a, b| a.order.cmp(&b.order));
        let (ids, skipped) = admit(conn, &candidates, max, now)?;
        if skipped && scanned_full && ids.len() < max && scan < pending_scan(max) {
            scan = pending_scan(max);
            continue;
        }
        return Ok(ids);
    }
}

/// Which `candidates` (in lease order) a fetch of at most `max` leases, and whether a full key
/// held one back ([`admit_in_order`], reading each queue's configuration once).
fn admit(
    conn: &Connection,
    candidates: &[Candidate],
    max: usize,
    now: Timestamp,
) -> SqlResult<(Vec<Due>, bool)> {
    let mut configs: HashMap<&str, Option<QueueConfig>> = HashMap::new();
    for c in candidates.iter().filter(|c| !c.admitted) {
        if !configs.contains_key(c.queue.as_str()) {
            configs.insert(&c.queue, config(conn, &c.queue)?);
        }
    }
    let seen: Vec<Pending<'_>> = candidates
        .iter()
        .map(|c| Pending {
            queue: &c.queue,
            key: c.key.as_deref(),
            admitted: c.admitted,
        })
        .collect();
    let configured = |queue: &str| configs.get(queue).and_then(Option::as_ref);
    let (ready, skipped) = admit_in_order(
        &seen,
        max,
        |queue, key| Ok::<_, OpError>(duraflow_store::needs_admission(configured(queue), key)),
        |queue, keys| admission(conn, queue, configured(queue).cloned(), keys, now),
    )?;
    let due = ready
        .into_iter()
        .map(|i| {
            let c = &candidates[i];
            Due {
                id: c.order.4.clone(),
                counted: !c.admitted
                    && duraflow_store::needs_admission(configured(&c.queue), c.key.as_deref()),
            }
        })
        .collect();
    Ok((due, skipped))
}

/// Counts what runs in `queue` (and under each of `keys`) and what it admitted in the rate
/// window ending at `now`.
fn admission<'a>(
    conn: &Connection,
    queue: &str,
    config: Option<QueueConfig>,
    keys: impl Iterator<Item = &'a str>,
    now: Timestamp,
) -> SqlResult<Admission> {
    let config = config.unwrap_or_else(|| QueueConfig::new(queue));
    let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> SqlResult<u32> {
        let n: i64 = conn.prepare_cached(sql)?.query_row(p, |r| r.get(0))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    };
    // Only instances admitted under a limit are in these indexes; while the queue has a limit,
    // that is every instance it admitted (see `configure`).
    let running = match config.concurrency {
        Some(_) => count(
            "SELECT count(*) FROM instances INDEXED BY instances_running
              WHERE queue = ?1 AND flow_counted = 1 AND started_at IS NOT NULL
                AND status IN ('pending', 'running')",
            &[&queue],
        )?,
        None => 0,
    };
    let in_window = match config.window_start(now) {
        Some(from) => count(
            "SELECT count(*) FROM instances INDEXED BY instances_started
              WHERE queue = ?1 AND flow_counted = 1 AND started_at > ?2 AND started_at <= ?3",
            &[&queue, &from.0, &now.0],
        )?,
        None => 0,
    };
    let mut by_key = HashMap::new();
    for key in keys {
        if !by_key.contains_key(key) {
            let n = count(
                "SELECT count(*) FROM instances INDEXED BY instances_running
                  WHERE queue = ?1 AND concurrency_key = ?2 AND flow_counted = 1
                    AND started_at IS NOT NULL AND status IN ('pending', 'running')",
                &[&queue, &key],
            )?;
            by_key.insert(key.to_owned(), n);
        }
    }
    Ok(Admission::new(config, running, in_window, by_key))
}

/// The statements that read one part (admitted or pending) of a queue's due instances from
/// that part's partial index, as constants so that a fetch neither formats nor hashes new text
/// for the statement cache.
struct PartSql {
    /// The highest and lowest priority with due work in the part (each one index seek).
    range: &'static str,
    /// The next priority below `?2` with due work.
    next: &'static str,
    /// The due rows of one priority, in due order.
    rows: &'static str,
}

macro_rules! part_sql {
    ($index:literal, $part:literal) => {
        PartSql {
            range: concat!(
                "SELECT (SELECT priority FROM instances INDEXED BY ",
                $index,
                " WHERE queue = ?1 AND due_at IS NOT NULL AND ",
                $part,
                " ORDER BY priority DESC LIMIT 1), (SELECT priority FROM instances INDEXED BY ",
                $index,
                " WHERE queue = ?1 AND due_at IS NOT NULL AND ",
                $part,
                " ORDER BY priority ASC LIMIT 1)"
            ),
            next: concat!(
                "SELECT priority FROM instances INDEXED BY ",
                $index,
                " WHERE queue = ?1 AND due_at IS NOT NULL AND ",
                $part,
                " AND priority < ?2 ORDER BY priority DESC LIMIT 1"
            ),
            rows: concat!(
                "SELECT due_at, due_seq, id, concurrency_key, rowid FROM instances INDEXED BY ",
                $index,
                " WHERE queue = ?1 AND priority = ?2 AND due_at IS NOT NULL AND ",
                $part,
                " AND due_at <= ?3 AND (?4 IS NULL OR name IN (SELECT value FROM json_each(?4)))",
                // No `LIMIT ?`: SQLite plans with a LIMIT's bound value, so a statement whose
                // limit changes is prepared again at every run. The rows come in index order,
                // and the reader stops stepping once it has enough.
                // Ties of `due_seq` (starts created with no message sent between them, see
                // migration 0016) in creation order: the row id, the index's last column.
                " ORDER BY due_at, due_seq, rowid"
            ),
        }
    };
}

const ADMITTED: PartSql = part_sql!("instances_admitted_due", "started_at IS NOT NULL");
const PENDING: PartSql = part_sql!("instances_pending_due", "started_at IS NULL");

/// Up to `limit` due instances of `queue` that are admitted (or, with `admitted` false,
/// pending), in lease order, read priority by priority from the partial index of that part:
/// each priority's due rows are one range of the index, so nothing not due is read. The part's
/// highest and lowest priorities come first, so that a queue of one priority (the usual case)
/// costs two statements.
fn candidates_of(
    conn: &Connection,
    queue: &str,
    admitted: bool,
    now: Timestamp,
    names: Option<&str>,
    limit: usize,
) -> SqlResult<Vec<Candidate>> {
    let sql = if admitted { &ADMITTED } else { &PENDING };
    let (highest, lowest): (Option<i64>, Option<i64>) = in_row(
        || format!("an instance of queue {queue:?}"),
        || {
            Ok(conn
                .prepare_cached(sql.range)?
                .query_row(params![queue], |r| Ok((r.get(0)?, r.get(1)?)))?)
        },
    )?;
    let (Some(mut priority), Some(lowest)) = (highest, lowest) else {
        return Ok(Vec::new());
    };
    let mut rows = conn.prepare_cached(sql.rows)?;
    let mut out = Vec::new();
    loop {
        let mut found = rows.query(params![queue, priority, now.0, names])?;
        while out.len() < limit {
            let Some(row) = found.next()? else { break };
            let (due_at, due_seq, id, key, rowid): (i64, Option<i64>, String, Option<String>, i64) = (
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            );
            out.push(Candidate {
                order: (Reverse(priority), due_at, due_seq, rowid, id),
                queue: queue.to_owned(),
                key,
                admitted,
            });
        }
        if out.len() >= limit || priority <= lowest {
            break;
        }
        let below = priority;
        let next: Option<i64> = in_row(
            || format!("an instance of queue {queue:?}"),
            || {
                Ok(conn
                    .prepare_cached(sql.next)?
                    .query_row(params![queue, below], |r| r.get(0))
                    .optional()?)
            },
        )?;
        match next {
            Some(p) => priority = p,
            None => break,
        }
    }
    Ok(out)
}
