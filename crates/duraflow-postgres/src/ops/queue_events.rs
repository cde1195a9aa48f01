//! Queue-wide events: emitted by clients and turn commits, awaited by turn commits.
//!
//! **Serializing emits and awaits.** An await must either see the event stored or leave a
//! waiter that the emit sees; under `READ COMMITTED` an emit and an await running at once could
//! each miss the other. So every transaction that emits or awaits `(queue, name)` first takes a
//! transaction-scoped advisory lock of the pair ([`lock_key`]), and reads after it has the
//! lock. Advisory locks are taken before any instance row (a commit batch takes them in its lock
//! statement, sorted, before its rows; a client's emit takes its one lock first), so they add no
//! cycle to the row locks' order.

use duraflow_core::{EmitOutcome, NewEmit, OpId, Payload, StoredEvent, Timestamp};
use duraflow_store::queue_events::{emit_result_message, queue_event_message};
use duraflow_store::{codec, MessageKind, StoreError, TurnCommit};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::sync::LazyLock;

use super::{Wake, OPEN};
use crate::error::OpResult;
use crate::listen;

/// The advisory lock key of `(queue, name)`: a 64-bit FNV-1a hash of both (two pairs that
/// share a key only serialize with each other).
pub(crate) fn lock_key(queue: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in queue.bytes().chain([0x1f]).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// The sorted, distinct lock keys of the emits and awaits of `commits`.
pub(crate) fn batch_keys(commits: &[TurnCommit]) -> Vec<i64> {
    let mut keys: Vec<i64> = commits
        .iter()
        .flat_map(|c| {
            let emits = c.emits.iter().map(|e| lock_key(&e.queue, &e.name));
            emits.chain(c.awaits.iter().map(|a| lock_key(&a.queue, &a.name)))
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The statement of [`lock`]: `$1` the key.
pub(crate) const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// Takes the advisory lock of `(queue, name)` for the rest of the transaction.
pub(crate) async fn lock(conn: &mut PgConnection, queue: &str, name: &str) -> OpResult<()> {
    sqlx::query(LOCK)
        .bind(lock_key(queue, name))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The statement of [`get`]: `$1` the queue, `$2` the event.
pub(crate) const GET: &str =
    "SELECT data, emitted_at FROM queue_events WHERE queue = $1 AND name = $2";

/// The stored event `name` of `queue`.
pub(crate) async fn get(
    conn: &mut PgConnection,
    queue: &str,
    name: &str,
) -> OpResult<Option<StoredEvent>> {
    let row = sqlx::query(GET)
        .bind(queue)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let data: String = row.try_get("data")?;
    let data = Payload::from_json(&data).map_err(|e| {
        StoreError::Corrupt(format!("queue event {name:?} of queue {queue:?}: {e}"))
    })?;
    Ok(Some(StoredEvent {
        queue: queue.to_owned(),
        name: name.to_owned(),
        data,
        emitted_at: Timestamp(row.try_get("emitted_at")?),
    }))
}

/// The first statement of [`emit`]: `$1` the queue, `$2` the event, `$3` its data, `$4` now.
pub(crate) const EMIT: &str =
    "INSERT INTO queue_events (queue, name, data, emitted_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (queue, name) DO NOTHING";

/// The second statement of [`emit`]: `$1` the queue, `$2` the event.
pub(crate) const TAKE_WAITERS: &str =
    "DELETE FROM queue_event_waiters WHERE queue = $1 AND name = $2
     RETURNING instance_id, execution, op";

/// Emits `name` in `queue` (see `Store::emit_event`); the caller holds the pair's lock.
pub(crate) async fn emit(
    conn: &mut PgConnection,
    queue: &str,
    name: &str,
    data: &Payload,
    now: Timestamp,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<EmitOutcome> {
    let stored = sqlx::query(EMIT)
        .bind(queue)
        .bind(name)
        .bind(data.as_json())
        .bind(now.0)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if stored == 0 {
        return Ok(EmitOutcome::AlreadyEmitted);
    }
    let rows = sqlx::query(TAKE_WAITERS)
        .bind(queue)
        .bind(name)
        .fetch_all(&mut *conn)
        .await?;
    let mut messages = Vec::with_capacity(rows.len());
    for row in &rows {
        let (instance_id, execution, op) = waiter_of(row, name)?;
        let kind = queue_event_message(execution, op, name, data.clone());
        messages.push((instance_id, kind, now));
    }
    deliver(conn, &messages, channel, wake).await?;
    Ok(EmitOutcome::Emitted {
        woken: rows.len() as u64,
    })
}

/// The statement of [`apply`] for the instances that finished or continued as new: `$1` the
/// instances, `$2` the execution before which their waiters go.
pub(crate) const DROP_WAITERS: &str = "DELETE FROM queue_event_waiters w
      USING unnest($1::text[], $2::int[]) AS d(instance_id, before)
      WHERE w.instance_id = d.instance_id AND w.execution < d.before";

/// The statement of [`apply`] for cancelled awaits: `$1` the instances, `$2` the executions,
/// `$3` the operations.
pub(crate) const CANCEL: &str = "DELETE FROM queue_event_waiters w
      USING unnest($1::text[], $2::int[], $3::text[]) AS x(instance_id, execution, op)
      WHERE w.instance_id = x.instance_id AND w.execution = x.execution
        AND w.op = x.op";

/// Applies the emits and awaits of a batch's accepted commits, after the batch's main
/// statement (so that the instances' states are the batch's): deletes the waiters of the
/// instances that finished or continued as new, then applies the emits in order (each
/// telling its operation what it did), then registers the awaits of the commits whose
/// instances go on, answering at once those whose event is stored, and last deletes the
/// waiters of the awaits those commits cancelled.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    accepted: &[&TurnCommit],
    has_waiters: impl Fn(&str) -> bool,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<()> {
    let mut dropped_instances = Vec::new();
    let mut dropped_before = Vec::new();
    // An instance with no waiter stored has none to drop (a commit that ends or continues its
    // execution registers none).
    for c in accepted.iter().filter(|c| has_waiters(&c.instance_id)) {
        if c.continue_as_new.is_some() {
            dropped_instances.push(c.instance_id.clone());
            dropped_before.push(c.execution as i32 + 1);
        } else if c.status.is_terminal() {
            dropped_instances.push(c.instance_id.clone());
            dropped_before.push(i32::MAX);
        }
    }
    if !dropped_instances.is_empty() {
        sqlx::query(DROP_WAITERS)
            .bind(&dropped_instances)
            .bind(&dropped_before)
            .execute(&mut *conn)
            .await?;
    }
    for c in accepted {
        for e in &c.emits {
            apply_emit(conn, e, c.now, channel, wake).await?;
        }
    }
    let mut awaits = Awaits::default();
    for c in accepted {
        if c.continue_as_new.is_some() || c.status.is_terminal() {
            continue;
        }
        for a in &c.awaits {
            awaits.queues.push(a.queue.clone());
            awaits.names.push(a.name.clone());
            awaits.instances.push(a.instance_id.clone());
            awaits.executions.push(a.execution as i32);
            awaits.ops.push(a.op.to_string());
            awaits.nows.push(c.now.0);
        }
    }
    awaits.register(conn, channel, wake).await?;
    let mut cancelled = (Vec::new(), Vec::new(), Vec::new());
    for c in accepted {
        if c.continue_as_new.is_some() || c.status.is_terminal() {
            continue;
        }
        for op in &c.cancelled_awaits {
            cancelled.0.push(c.instance_id.clone());
            cancelled.1.push(c.execution as i32);
            cancelled.2.push(op.to_string());
        }
    }
    if !cancelled.0.is_empty() {
        sqlx::query(CANCEL)
            .bind(&cancelled.0)
            .bind(&cancelled.1)
            .bind(&cancelled.2)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn apply_emit(
    conn: &mut PgConnection,
    e: &NewEmit,
    now: Timestamp,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<()> {
    let outcome = emit(conn, &e.queue, &e.name, &e.data, now, channel, wake).await?;
    let reply = [(e.instance_id.clone(), emit_result_message(e, outcome), now)];
    deliver(conn, &reply, channel, wake).await
}

/// The awaits of a batch, one array per column.
#[derive(Default)]
struct Awaits {
    queues: Vec<String>,
    names: Vec<String>,
    instances: Vec<String>,
    executions: Vec<i32>,
    ops: Vec<String>,
    nows: Vec<i64>,
}

/// The statement of `Awaits::register`: `$1`..`$6` the awaits' queues, events, instances,
/// executions, operations and times.
pub(crate) const REGISTER: &str = "WITH a AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[],
                              $6::bigint[])
             AS a(queue, name, instance_id, execution, op, now)
     ), ev AS (
         SELECT a.*, e.data FROM a
           LEFT JOIN queue_events e ON e.queue = a.queue AND e.name = a.name
     ), kept AS (
         INSERT INTO queue_event_waiters (queue, name, instance_id, execution, op)
         SELECT queue, name, instance_id, execution, op FROM ev WHERE data IS NULL
         ON CONFLICT DO NOTHING
     )
     SELECT name, instance_id, execution, op, now, data FROM ev WHERE data IS NOT NULL";

impl Awaits {
    /// Registers the awaits in one statement: those whose event is stored are returned with
    /// its data (and answered here, in one more), the others are kept as waiters.
    async fn register(
        self,
        conn: &mut PgConnection,
        channel: &str,
        wake: &mut Wake,
    ) -> OpResult<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let rows = sqlx::query(REGISTER)
            .bind(&self.queues)
            .bind(&self.names)
            .bind(&self.instances)
            .bind(&self.executions)
            .bind(&self.ops)
            .bind(&self.nows)
            .fetch_all(&mut *conn)
            .await?;
        let mut answered = Vec::with_capacity(rows.len());
        for row in &rows {
            let name: String = row.try_get("name")?;
            let (instance_id, execution, op) = waiter_of(row, &name)?;
            let data: String = row.try_get("data")?;
            let data = Payload::from_json(&data).map_err(|e| {
                StoreError::Corrupt(format!("queue event {name:?} for {instance_id:?}: {e}"))
            })?;
            let kind = queue_event_message(execution, op, &name, data);
            answered.push((instance_id, kind, Timestamp(row.try_get("now")?)));
        }
        deliver(conn, &answered, channel, wake).await
    }
}

/// The instance, execution and operation of a waiter of the event `name` in `row`.
fn waiter_of(row: &PgRow, name: &str) -> OpResult<(String, u32, OpId)> {
    let instance_id: String = row.try_get("instance_id")?;
    let execution: i32 = row.try_get("execution")?;
    let op: String = row.try_get("op")?;
    let corrupt = |e: String| {
        StoreError::Corrupt(format!(
            "a waiter of queue event {name:?} of instance {instance_id:?}: {e}"
        ))
    };
    let op: OpId = op.parse().map_err(|e| corrupt(format!("{e}")))?;
    let execution = u32::try_from(execution).map_err(|e| corrupt(format!("{e}")))?;
    Ok((instance_id, execution, op))
}

/// A message to put in an inbox: the addressee, the message, and when it is visible.
type Outgoing = (String, MessageKind, Timestamp);

/// The statement of [`deliver`]: `$1` the addressees, `$2` when each message is visible, `$3`
/// the messages, `$4` the channel.
pub(crate) static DELIVER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH inst AS (
             SELECT id FROM instances WHERE id = ANY($1) AND status IN {OPEN}
              ORDER BY id FOR KEY SHARE
         ), ins AS (
             INSERT INTO messages (instance_id, visible_at, kind)
             SELECT m.instance_id, m.visible_at, m.kind
               FROM unnest($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY
                    AS m(instance_id, visible_at, kind, ord)
              WHERE m.instance_id IN (SELECT id FROM inst)
              ORDER BY m.ord
             RETURNING id, instance_id, visible_at
         ), due AS (
             UPDATE instances i SET
                 due_at = CASE WHEN i.lease_until IS NOT NULL THEN i.lease_until
                               ELSE greatest(s.visible_at, i.not_before) END,
                 due_seq = coalesce(i.due_seq, s.first)
               FROM (SELECT instance_id, min(visible_at) AS visible_at, min(id) AS first
                       FROM ins GROUP BY instance_id) s
              WHERE i.id = s.instance_id AND i.status IN {OPEN}
                AND (i.due_at IS NULL OR i.due_at > greatest(s.visible_at, i.not_before))
         ), announced AS (
             SELECT pg_notify($4, '{turns}') WHERE EXISTS (SELECT 1 FROM ins)
         )
         SELECT (SELECT count(*) FROM ins) AS sent, (SELECT count(*) FROM announced) AS n",
        turns = listen::TURNS,
    )
});

/// Puts `messages` in the inboxes of the open instances among their addressees, in one
/// statement that holds the instance rows `FOR KEY SHARE` (sorted by id), brings their due
/// times forward as `send` does, and announces them.
async fn deliver(
    conn: &mut PgConnection,
    messages: &[Outgoing],
    channel: &str,
    wake: &mut Wake,
) -> OpResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(messages.len());
    let mut kinds = Vec::with_capacity(messages.len());
    let mut visible = Vec::with_capacity(messages.len());
    for (id, kind, at) in messages {
        ids.push(id.as_str());
        kinds.push(codec::to_json(kind)?);
        visible.push(at.0);
    }
    let row = sqlx::query(DELIVER.as_str())
        .bind(&ids)
        .bind(&visible)
        .bind(&kinds)
        .bind(channel)
        .fetch_one(&mut *conn)
        .await?;
    if row.try_get::<i64, _>("sent")? > 0 {
        wake.turns = true;
    }
    Ok(())
}
