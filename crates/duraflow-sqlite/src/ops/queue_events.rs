//! Queue-wide events: emitted by clients and turn commits, awaited by turn commits.

use duraflow_core::{EmitOutcome, NewAwait, NewEmit, OpId, Payload, StoredEvent, Timestamp};
use duraflow_store::queue_events::{emit_result_message, queue_event_message};
use duraflow_store::{StoreError, TurnCommit};
use rusqlite::{params, Connection, OptionalExtension};

use super::instances::insert_message;
use crate::codec::in_row;
use crate::db::Tx;
use crate::error::{OpError, SqlResult};

/// The stored event `name` of `queue`.
pub(crate) fn get(conn: &Connection, queue: &str, name: &str) -> SqlResult<Option<StoredEvent>> {
    let what = || format!("queue event {name:?} of queue {queue:?}");
    let row = conn
        .prepare_cached("SELECT data, emitted_at FROM queue_events WHERE queue = ?1 AND name = ?2")?
        .query_row(params![queue, name], |r| {
            Ok(in_row(what, || {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            }))
        })
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (data, emitted_at) = row?;
    let data = Payload::from_json(&data)
        .map_err(|e| OpError::Store(StoreError::Corrupt(format!("{}: {e}", what()))))?;
    Ok(Some(StoredEvent {
        queue: queue.to_owned(),
        name: name.to_owned(),
        data,
        emitted_at: Timestamp(emitted_at),
    }))
}

/// Emits `name` in `queue` (see `Store::emit_event`): stores it unless it is there, and then
/// answers and deletes its waiters.
pub(crate) fn emit(
    conn: &Connection,
    queue: &str,
    name: &str,
    data: &Payload,
    now: Timestamp,
    tx: &mut Tx<'_>,
) -> SqlResult<EmitOutcome> {
    let stored = conn
        .prepare_cached(
            "INSERT INTO queue_events (queue, name, data, emitted_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (queue, name) DO NOTHING",
        )?
        .execute(params![queue, name, data.as_json(), now.0])?;
    if stored == 0 {
        return Ok(EmitOutcome::AlreadyEmitted);
    }
    let mut waiters: Vec<(String, u32, String)> = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT instance_id, execution, op FROM queue_event_waiters
             WHERE queue = ?1 AND name = ?2 ORDER BY instance_id, execution, op",
        )?;
        let mut rows = stmt.query(params![queue, name])?;
        while let Some(row) = rows.next()? {
            let what = || format!("a waiter of queue event {name:?} of queue {queue:?}");
            waiters.push(in_row(what, || {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?);
        }
    }
    conn.prepare_cached("DELETE FROM queue_event_waiters WHERE queue = ?1 AND name = ?2")?
        .execute(params![queue, name])?;
    let woken = waiters.len() as u64;
    for (instance_id, execution, op) in waiters {
        let op: OpId = op.parse().map_err(|e| {
            OpError::Store(StoreError::Corrupt(format!(
                "a waiter of queue event {name:?} of instance {instance_id:?}: {e}"
            )))
        })?;
        let message = queue_event_message(execution, op, name, data.clone());
        if insert_message(conn, &instance_id, &message, now)? {
            tx.wake.turns = true;
        }
    }
    Ok(EmitOutcome::Emitted { woken })
}

/// Applies a commit's emits (each telling its operation what it did), then its awaits, then
/// deletes the waiters of the awaits it cancelled.
pub(crate) fn apply(conn: &Connection, c: &TurnCommit, tx: &mut Tx<'_>) -> SqlResult<()> {
    for e in &c.emits {
        apply_emit(conn, e, c.now, tx)?;
    }
    for a in &c.awaits {
        register(conn, a, c.now, tx)?;
    }
    if !c.cancelled_awaits.is_empty() {
        let mut cancel = conn.prepare_cached(
            "DELETE FROM queue_event_waiters
             WHERE instance_id = ?1 AND execution = ?2 AND op = ?3",
        )?;
        for op in &c.cancelled_awaits {
            cancel.execute(params![c.instance_id, c.execution, op.to_string()])?;
        }
    }
    Ok(())
}

fn apply_emit(conn: &Connection, e: &NewEmit, now: Timestamp, tx: &mut Tx<'_>) -> SqlResult<()> {
    let outcome = emit(conn, &e.queue, &e.name, &e.data, now, tx)?;
    insert_message(conn, &e.instance_id, &emit_result_message(e, outcome), now)?;
    Ok(())
}

/// Registers an await: answered at once when its event is stored, kept as a waiter otherwise.
fn register(conn: &Connection, a: &NewAwait, now: Timestamp, tx: &mut Tx<'_>) -> SqlResult<()> {
    if let Some(event) = get(conn, &a.queue, &a.name)? {
        let message = queue_event_message(a.execution, a.op.clone(), &a.name, event.data);
        if insert_message(conn, &a.instance_id, &message, now)? {
            tx.wake.turns = true;
        }
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO queue_event_waiters (queue, name, instance_id, execution, op)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        a.queue,
        a.name,
        a.instance_id,
        a.execution,
        a.op.to_string()
    ])?;
    Ok(())
}

/// Deletes the waiters of instance `id` of executions before `before` (all when `None`).
pub(crate) fn drop_waiters(conn: &Connection, id: &str, before: Option<u32>) -> SqlResult<()> {
    conn.prepare_cached(
        "DELETE FROM queue_event_waiters
         WHERE instance_id = ?1 AND (?2 IS NULL OR execution < ?2)",
    )?
    .execute(params![id, before])?;
    Ok(())
}
