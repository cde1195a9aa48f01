//! Leasing, committing and abandoning workflow turns.

use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{Event, Timestamp, JOURNAL_FORMAT_VERSION};
use duraflow_store::{
    Committed, InstanceStatus, Journal, JournalCache, LeaseToken, Message, MessageId, MessageKind,
    NewTask, StoreError, TaskClaim, TaskId, TaskWork, TurnCommit, TurnWork,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::instances::{self, insert_message, next_token, not_found};
use crate::codec::{event_data, from_json, instance_row, json, INSTANCE_COLUMNS};
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

/// The number of events in an execution's journal (positions are dense from 0).
fn journal_len(conn: &Connection, id: &str, execution: u32) -> SqlResult<usize> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT coalesce(max(position) + 1, 0) FROM events
             WHERE instance_id = ?1 AND execution = ?2",
        )?
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
    cache: Option<&Arc<dyn JournalCache>>,
) -> SqlResult<Vec<TurnWork>> {
    let ids: Vec<String> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM instances WHERE due_at <= ?1 ORDER BY due_at, due_seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now.0, max as i64], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut work = Vec::with_capacity(ids.len());
    for id in ids {
        work.extend(lease_turn(conn, &id, now, lease, cache)?);
    }
    Ok(work)
}

/// Whether the instance's work is due at `now` (so that a fetch would lease it).
pub(crate) fn is_due(conn: &Connection, id: &str, now: Timestamp) -> SqlResult<bool> {
    let due: Option<Option<i64>> = conn
        .prepare_cached("SELECT due_at FROM instances WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(due.flatten().is_some_and(|at| at <= now.0))
}

/// Leases the turn of instance `id`, which is due, with its visible messages and its journal
/// (unless `cache` holds it as the last commit left it).
pub(crate) fn lease_turn(
    conn: &Connection,
    id: &str,
    now: Timestamp,
    lease: Duration,
    cache: Option<&Arc<dyn JournalCache>>,
) -> SqlResult<Option<TurnWork>> {
    let messages = visible_messages(conn, id, now)?;
    if messages.is_empty() {
        // Due by the index but nothing visible: the caller's clock went backwards.
        return Ok(None);
    }
    let token = next_token(conn)?;
    let until = now.plus(lease);
    let leased = conn
        .prepare_cached(&format!(
            "UPDATE instances SET lease_token = ?2, lease_until = ?3, due_at = ?3
             WHERE id = ?1 AND status IN ('pending', 'running')
             RETURNING {INSTANCE_COLUMNS}, commit_token"
        ))?
        .query_row(params![id, token, until.0], |row| {
            Ok((instance_row(row), row.get::<_, i64>(10)?))
        })
        .optional()?;
    let Some((instance, commit_token)) = leased else {
        return Ok(None);
    };
    let instance = instance?;
    let warm = cache.is_some_and(|c| c.holds(id, instance.execution, LeaseToken(commit_token)));
    let journal = if warm {
        Ok(Journal::Cached)
    } else {
        read_journal(conn, id, instance.execution)?.map(Journal::Events)
    };
    Ok(Some(TurnWork {
        instance,
        journal,
        messages,
        token: LeaseToken(token),
    }))
}

pub(crate) fn commit(conn: &Connection, c: &TurnCommit, wake: &mut Wake) -> SqlResult<Committed> {
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
    let mut committed = Committed::default();
    for (i, task) in c.tasks.iter().enumerate() {
        let claim = c.claim_tasks.filter(|claim| i < claim.max);
        match insert_task(conn, task, claim, c.now)? {
            Some(claimed) => committed.tasks.push(claimed),
            None => wake.tasks = true,
        }
    }
    for m in &c.messages {
        if insert_message(conn, &m.instance_id, &m.kind, m.visible_at)? {
            wake.turns = true;
        }
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
    if c.continue_as_new.is_some() {
        wake.instances = true;
    }
    if status.is_terminal() {
        conn.prepare_cached("DELETE FROM messages WHERE instance_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM tasks WHERE instance_id = ?1")?
            .execute([id])?;
        committed.tasks.clear();
        wake.instances = true;
    }
    // The lease ends: the work is due again when the earliest message left becomes visible.
    let due_at: Option<i64> = conn
        .prepare_cached(
            "UPDATE instances SET status = ?2, output = ?3, failure = ?4, updated_at = ?5,
                    execution = ?6, input = coalesce(?7, input), lease_until = NULL,
                    commit_token = ?8,
                    not_before = CASE WHEN ?9 THEN 0 ELSE not_before END,
                    due_at = (SELECT max(min(m.visible_at), instances.not_before)
                                FROM messages m WHERE m.instance_id = ?1),
                    due_seq = (SELECT min(m.id) FROM messages m WHERE m.instance_id = ?1)
             WHERE id = ?1
             RETURNING due_at",
        )?
        .query_row(
            params![
                id,
                status.as_str(),
                c.output.as_ref().map(|p| p.as_json().to_owned()),
                c.failure.as_ref().map(json).transpose()?,
                c.now.0,
                new_execution,
                input,
                c.token.0,
                status.is_terminal(),
            ],
            |r| r.get(0),
        )?;
    if due_at.is_some() {
        wake.turns = true;
    }
    Ok(committed)
}

/// Inserts a task: for any worker to fetch, or leased to the committer (its first attempt
/// counted) when `claim` is given.
fn insert_task(
    conn: &Connection,
    task: &NewTask,
    claim: Option<TaskClaim>,
    now: Timestamp,
) -> SqlResult<Option<TaskWork>> {
    let lease = match claim {
        Some(claim) => Some((next_token(conn)?, now.plus(claim.lease))),
        None => None,
    };
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO tasks (instance_id, execution, op, name, input, options, scheduled_at,
                                visible_at, attempt, lease_token, lease_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, coalesce(?8, ?7),
                     CASE WHEN ?8 IS NULL THEN 0 ELSE 1 END, coalesce(?9, 0), ?8)
             RETURNING id",
        )?
        .query_row(
            params![
                task.instance_id,
                task.execution,
                task.op.to_string(),
                task.name,
                task.input.as_json(),
                json(&task.options)?,
                task.scheduled_at.0,
                lease.map(|(_, until)| until.0),
                lease.map(|(token, _)| token),
            ],
            |r| r.get(0),
        )?;
    Ok(lease.map(|(token, until)| task.claimed(TaskId(id), LeaseToken(token), until)))
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
    conn.prepare_cached(
        "UPDATE instances SET lease_until = NULL, not_before = ?2,
                due_at = (SELECT max(min(m.visible_at), ?2) FROM messages m
                           WHERE m.instance_id = ?1)
         WHERE id = ?1",
    )?
    .execute(params![id, retry_at.0])?;
    wake.turns = true;
    Ok(())
}
