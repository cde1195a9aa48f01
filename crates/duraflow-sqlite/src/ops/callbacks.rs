//! Callbacks: opened and closed by turn commits, resolved by external parties by token.

use duraflow_core::{OpId, Timestamp};
use duraflow_store::{
    callback_outcome, callback_state, callback_token_taken, CallbackResolution, CallbackState,
    CallbackStatus, CallbackTarget, StoreError, StoreResult, TurnCommit,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::instances::insert_message;
use crate::codec::{in_row, status as instance_status};
use crate::db::Tx;
use crate::error::{OpError, SqlResult};

/// Refuses a commit that would open a callback with a token that is taken (before anything of
/// the commit is written).
pub(crate) fn check_new(conn: &Connection, c: &TurnCommit) -> SqlResult<()> {
    if c.callbacks.is_empty() {
        return Ok(());
    }
    let mut taken = conn.prepare_cached("SELECT 1 FROM callbacks WHERE token = ?1")?;
    for cb in &c.callbacks {
        if taken.exists([&cb.token])? {
            return Err(callback_token_taken(&c.instance_id, cb).into());
        }
    }
    Ok(())
}

/// Opens a commit's callbacks and closes the open ones it settled.
pub(crate) fn apply(conn: &Connection, c: &TurnCommit) -> SqlResult<()> {
    if c.callbacks.is_empty() && c.closed_callbacks.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO callbacks (token, instance_id, execution, op, name, status, timeout_at,
                                created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7)",
    )?;
    for cb in &c.callbacks {
        insert.execute(params![
            cb.token,
            cb.instance_id,
            cb.execution,
            cb.op.to_string(),
            cb.name,
            cb.timeout_at.map(|t| t.0),
            cb.created_at.0,
        ])?;
    }
    let mut close = conn.prepare_cached(
        "UPDATE callbacks SET status = ?4
         WHERE instance_id = ?1 AND execution = ?2 AND op = ?3 AND status = 'open'",
    )?;
    for (op, status) in &c.closed_callbacks {
        close.execute(params![
            c.instance_id,
            c.execution,
            op.to_string(),
            status.as_str()
        ])?;
    }
    Ok(())
}

/// Deletes the callbacks of instance `id` of executions before `before` (all when `None`).
pub(crate) fn drop_before(conn: &Connection, id: &str, before: Option<u32>) -> SqlResult<()> {
    conn.prepare_cached(
        "DELETE FROM callbacks WHERE instance_id = ?1 AND (?2 IS NULL OR execution < ?2)",
    )?
    .execute(params![id, before])?;
    Ok(())
}

/// Resolves the callback with `token` (see `Store::resolve_callback`). A refusal is the inner
/// error, so that closing a callback that timed out is kept while the refusal is returned.
pub(crate) fn resolve(
    conn: &Connection,
    now: Timestamp,
    token: &str,
    resolution: CallbackResolution,
    tx: &mut Tx<'_>,
) -> SqlResult<StoreResult<CallbackTarget>> {
    let row = conn
        .prepare_cached(
            "SELECT instance_id, execution, op, name, status, timeout_at
               FROM callbacks WHERE token = ?1",
        )?
        .query_row([token], |r| {
            Ok(in_row(
                || "a callback".to_owned(),
                || {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                },
            ))
        })
        .optional()?;
    let Some(row) = row else {
        return Ok(Err(StoreError::CallbackNotFound));
    };
    let (instance_id, execution, op, name, status, timeout_at) = row?;
    let what = || format!("callback {name:?} of instance {instance_id:?}");
    let op: OpId = op
        .parse()
        .map_err(|e| OpError::Store(StoreError::Corrupt(format!("{}: {e}", what()))))?;
    let status: CallbackStatus = status
        .parse()
        .map_err(|e| OpError::Store(StoreError::Corrupt(format!("{}: {e}", what()))))?;
    let instance: Option<(String, u32)> = conn
        .prepare_cached("SELECT status, execution FROM instances WHERE id = ?1")?
        .query_row([&instance_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let live = match instance {
        Some((st, current)) => {
            let st = instance_status(
                &st,
                format_args!("column status of instance {instance_id:?}"),
            )?;
            !st.is_terminal() && current == execution
        }
        None => false,
    };
    let set_status = |status: CallbackStatus| -> SqlResult<()> {
        conn.prepare_cached("UPDATE callbacks SET status = ?2 WHERE token = ?1")?
            .execute(params![token, status.as_str()])?;
        Ok(())
    };
    match callback_state(live, status, timeout_at.map(Timestamp), now) {
        CallbackState::Open => {}
        CallbackState::TimedOut(refused) => {
            set_status(CallbackStatus::TimedOut)?;
            return Ok(Err(refused));
        }
        CallbackState::Refused(refused) => return Ok(Err(refused)),
    }
    let (status, message) = callback_outcome(execution, op.clone(), resolution);
    if status != CallbackStatus::Open {
        set_status(status)?;
    }
    insert_message(conn, &instance_id, &message, now)?;
    tx.wake.turns = true;
    Ok(Ok(CallbackTarget {
        instance_id,
        execution,
        op,
        name,
    }))
}
