//! Leasing, committing and abandoning workflow turns.

use std::time::Duration;

use duraflow_core::{Event, Timestamp, JOURNAL_FORMAT_VERSION};
use duraflow_store::{
    InstanceStatus, LeaseToken, Message, MessageId, MessageKind, StoreError, TurnCommit, TurnWork,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::instances::{self, insert_message, not_found};
use crate::codec::{event_data, from_json, json};
use crate::db::Wake;
use crate::error::SqlResult;

fn lease_lost(id: &str) -> StoreError {
    StoreError::LeaseLost {
        what: format!("instance {id:?}"),
    }
}

/// Reads an execution's journal; a row that cannot be decoded is reported with its position.
pub(crate) fn read_journal(
    conn: &Connection,
    id: &str,
    execution: u32,
) -> SqlResult<Result<Vec<Event>, StoreError>> {
    let mut stmt = conn.prepare_cached(
        "SELECT position, format, data FROM events
         WHERE instance_id = ?1 AND execution = ?2 ORDER BY position",
    )?;
    let mut rows = stmt.query(params![id, execution])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let position: i64 = row.get(0)?;
        let format: u32 = row.get(1)?;
        let data: String = row.get(2)?;
        match Event::decode(&data, format) {
            Ok(ev) => events.push(ev),
            Err(error) => {
                drop(rows);
                return Ok(Err(StoreError::CorruptJournal {
                    instance_id: id.to_owned(),
                    execution,
                    position: usize::try_from(position).unwrap_or(usize::MAX),
                    journal_len: journal_len(conn, id, execution)?,
                    error,
                }));
            }
        }
    }
    Ok(Ok(events))
}

fn journal_len(conn: &Connection, id: &str, execution: u32) -> SqlResult<usize> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM events WHERE instance_id = ?1 AND execution = ?2")?
        .query_row(params![id, execution], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

fn visible_messages(conn: &Connection, id: &str, now: Timestamp) -> SqlResult<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, visible_at, kind FROM messages
         WHERE instance_id = ?1 AND visible_at <= ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![id, now.0])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let msg_id: i64 = row.get(0)?;
        let kind: String = row.get(2)?;
        out.push(Message {
            id: MessageId(msg_id),
            instance_id: id.to_owned(),
            kind: from_json::<MessageKind>(&kind, &format!("message {msg_id}"))?,
            visible_at: Timestamp(row.get(1)?),
        });
    }
    Ok(out)
}

pub(crate) fn fetch(
    conn: &Connection,
    now: Timestamp,
    max: usize,
    lease: Duration,
) -> SqlResult<Vec<TurnWork>> {
    let ids: Vec<String> = {
        let mut stmt = conn.prepare_cached(
            "SELECT m.instance_id, min(m.id) AS first FROM messages m
             JOIN instances i ON i.id = m.instance_id
             WHERE m.visible_at <= ?1
               AND i.status IN ('pending', 'running')
               AND (i.lease_until IS NULL OR i.lease_until <= ?1)
               AND i.not_before <= ?1
             GROUP BY m.instance_id ORDER BY first LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now.0, max as i64], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let until = now.plus(lease);
    let mut work = Vec::with_capacity(ids.len());
    for id in ids {
        let token = instances::next_token(conn)?;
        conn.prepare_cached(
            "UPDATE instances SET lease_token = ?2, lease_until = ?3 WHERE id = ?1",
        )?
        .execute(params![id, token, until.0])?;
        let Some(instance) = instances::get(conn, &id)? else {
            continue;
        };
        let journal = read_journal(conn, &id, instance.execution)?;
        let messages = visible_messages(conn, &id, now)?;
        work.push(TurnWork {
            instance,
            journal,
            messages,
            token: LeaseToken(token),
        });
    }
    Ok(work)
}

pub(crate) fn commit(conn: &Connection, c: &TurnCommit, wake: &mut Wake) -> SqlResult<()> {
    let id = &c.instance_id;
    let row: Option<(i64, Option<i64>, u32)> = conn
        .prepare_cached("SELECT lease_token, lease_until, execution FROM instances WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((token, lease_until, execution)) = row else {
        return Err(not_found(id).into());
    };
    if token != c.token.0 || lease_until.is_none_or(|until| until <= c.now.0) {
        return Err(lease_lost(id).into());
    }
    if c.execution != execution {
        return Err(StoreError::Invalid(format!(
            "a turn of instance {id:?} commits to execution {} but the current execution is \
             {execution}",
            c.execution
        ))
        .into());
    }
    if journal_len(conn, id, execution)? != c.journal_base {
        return Err(lease_lost(id).into());
    }

    {
        let mut insert = conn.prepare_cached(
            "INSERT INTO events (instance_id, execution, position, format, data)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (i, event) in c.new_events.iter().enumerate() {
            insert.execute(params![
                id,
                execution,
                (c.journal_base + i) as i64,
                JOURNAL_FORMAT_VERSION,
                event_data(event)
            ])?;
        }
    }
    {
        let mut delete =
            conn.prepare_cached("DELETE FROM messages WHERE id = ?1 AND instance_id = ?2")?;
        for m in &c.consumed {
            delete.execute(params![m.0, id])?;
        }
    }
    for child in &c.new_instances {
        if instances::status_of(conn, &child.id)?.is_none() {
            instances::insert(conn, child, wake)?;
        }
    }
    for task in &c.tasks {
        conn.prepare_cached(
            "INSERT INTO tasks (instance_id, execution, op, name, input, options, scheduled_at,
                                visible_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )?
        .execute(params![
            task.instance_id,
            task.execution,
            task.op.to_string(),
            task.name,
            task.input.as_json(),
            json(&task.options)?,
            task.scheduled_at.0,
        ])?;
        wake.tasks = true;
    }

    let (new_execution, input) = match &c.continue_as_new {
        Some(input) => (execution + 1, Some(input.as_json().to_owned())),
        None => (execution, None),
    };
    let status = if c.continue_as_new.is_some() {
        InstanceStatus::Running
    } else {
        c.status
    };
    conn.prepare_cached(
        "UPDATE instances SET status = ?2, output = ?3, failure = ?4, updated_at = ?5,
                execution = ?6, input = coalesce(?7, input), lease_until = NULL
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        status.as_str(),
        c.output.as_ref().map(|p| p.as_json().to_owned()),
        c.failure.as_ref().map(json).transpose()?,
        c.now.0,
        new_execution,
        input,
    ])?;
    if c.continue_as_new.is_some() {
        wake.instances = true;
    }
    if status.is_terminal() {
        conn.prepare_cached("DELETE FROM messages WHERE instance_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM tasks WHERE instance_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("UPDATE instances SET not_before = 0 WHERE id = ?1")?
            .execute([id])?;
        wake.instances = true;
    }

    for m in &c.messages {
        let open = instances::status_of(conn, &m.instance_id)?.is_some_and(|s| !s.is_terminal());
        if open {
            insert_message(conn, &m.instance_id, &m.kind, m.visible_at)?;
            wake.turns = true;
        }
    }
    if !status.is_terminal() {
        let waiting: i64 = conn
            .prepare_cached("SELECT count(*) FROM messages WHERE instance_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        if waiting > 0 {
            wake.turns = true;
        }
    }
    Ok(())
}

pub(crate) fn abandon(
    conn: &Connection,
    id: &str,
    token: LeaseToken,
    retry_at: Timestamp,
    wake: &mut Wake,
) -> SqlResult<()> {
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT lease_token, lease_until FROM instances WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((current, lease_until)) = row else {
        return Err(not_found(id).into());
    };
    if current != token.0 || lease_until.is_none() {
        return Err(lease_lost(id).into());
    }
    conn.prepare_cached("UPDATE instances SET lease_until = NULL, not_before = ?2 WHERE id = ?1")?
        .execute(params![id, retry_at.0])?;
    wake.turns = true;
    Ok(())
}
