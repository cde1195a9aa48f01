//! Leasing, committing and abandoning workflow turns.

use std::time::Duration;

use duraflow_core::{Event, Timestamp, JOURNAL_FORMAT_VERSION};
use duraflow_store::{
    codec, InstanceStatus, LeaseToken, Message, MessageId, MessageKind, StoreError, TurnCommit,
    TurnWork,
};
use sqlx::{PgConnection, Row};

use super::instances::{self, insert_message, not_found};
use super::Wake;
use crate::error::OpResult;

fn lease_lost(id: &str) -> StoreError {
    StoreError::LeaseLost {
        what: format!("instance {id:?}"),
    }
}

async fn journal_len(conn: &mut PgConnection, id: &str, execution: u32) -> OpResult<usize> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE instance_id = $1 AND execution = $2")
            .bind(id)
            .bind(execution as i32)
            .fetch_one(&mut *conn)
            .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Reads an execution's journal; a row that cannot be decoded is reported with its position.
pub(crate) async fn read_journal(
    conn: &mut PgConnection,
    id: &str,
    execution: u32,
) -> OpResult<Result<Vec<Event>, StoreError>> {
    let rows = sqlx::query(
        "SELECT position, format, data FROM events
         WHERE instance_id = $1 AND execution = $2 ORDER BY position",
    )
    .bind(id)
    .bind(execution as i32)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let position: i32 = row.try_get(0)?;
        let format: i32 = row.try_get(1)?;
        let data: String = row.try_get(2)?;
        match Event::decode(&data, u32::try_from(format).unwrap_or(u32::MAX)) {
            Ok(ev) => events.push(ev),
            Err(error) => {
                return Ok(Err(StoreError::CorruptJournal {
                    instance_id: id.to_owned(),
                    execution,
                    position: usize::try_from(position).unwrap_or(usize::MAX),
                    journal_len: rows.len(),
                    error,
                }))
            }
        }
    }
    Ok(Ok(events))
}

async fn visible_messages(
    conn: &mut PgConnection,
    id: &str,
    now: Timestamp,
) -> OpResult<Vec<Message>> {
    let rows = sqlx::query(
        "SELECT id, visible_at, kind FROM messages
         WHERE instance_id = $1 AND visible_at <= $2 ORDER BY id",
    )
    .bind(id)
    .bind(now.0)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let msg_id: i64 = row.try_get(0)?;
        let kind: String = row.try_get(2)?;
        out.push(Message {
            id: MessageId(msg_id),
            instance_id: id.to_owned(),
            kind: codec::from_json::<MessageKind>(&kind, &format!("message {msg_id}"))?,
            visible_at: Timestamp(row.try_get(1)?),
        });
    }
    Ok(out)
}

/// Leases ready instances. `FOR UPDATE SKIP LOCKED` locks the instance rows themselves, so
/// concurrent fetches in other transactions skip them instead of leasing them twice.
pub(crate) async fn fetch(
    conn: &mut PgConnection,
    now: Timestamp,
    max: usize,
    lease: Duration,
) -> OpResult<Vec<TurnWork>> {
    let until = now.plus(lease);
    let leased: Vec<(String, i64)> = sqlx::query_as(
        "WITH ready AS (
             SELECT i.id,
                    (SELECT min(m.id) FROM messages m
                      WHERE m.instance_id = i.id AND m.visible_at <= $1) AS first
               FROM instances i
              WHERE i.status IN ('pending', 'running')
                AND (i.lease_until IS NULL OR i.lease_until <= $1)
                AND i.not_before <= $1
                AND EXISTS (SELECT 1 FROM messages m
                             WHERE m.instance_id = i.id AND m.visible_at <= $1)
              ORDER BY first
              LIMIT $2
                FOR UPDATE OF i SKIP LOCKED
         )
         UPDATE instances AS t
            SET lease_token = nextval('lease_tokens'), lease_until = $3
           FROM ready
          WHERE t.id = ready.id
         RETURNING t.id, t.lease_token",
    )
    .bind(now.0)
    .bind(max as i64)
    .bind(until.0)
    .fetch_all(&mut *conn)
    .await?;
    let mut work = Vec::with_capacity(leased.len());
    for (id, token) in leased {
        let Some(instance) = instances::get(conn, &id).await? else {
            continue;
        };
        let journal = read_journal(conn, &id, instance.execution).await?;
        let messages = visible_messages(conn, &id, now).await?;
        work.push(TurnWork {
            instance,
            journal,
            messages,
            token: LeaseToken(token),
        });
    }
    // Oldest work first, as the claim ordered it.
    work.sort_by_key(|w| w.messages.first().map(|m| m.id));
    Ok(work)
}

pub(crate) async fn commit(
    conn: &mut PgConnection,
    c: &TurnCommit,
    wake: &mut Wake,
) -> OpResult<()> {
    let id = &c.instance_id;
    let row: Option<(i64, Option<i64>, i32)> = sqlx::query_as(
        "SELECT lease_token, lease_until, execution FROM instances WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((token, lease_until, execution)) = row else {
        return Err(not_found(id).into());
    };
    let execution = u32::try_from(execution).unwrap_or(0);
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
    if journal_len(conn, id, execution).await? != c.journal_base {
        return Err(lease_lost(id).into());
    }

    for (i, event) in c.new_events.iter().enumerate() {
        sqlx::query(
            "INSERT INTO events (instance_id, execution, position, format, data)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(execution as i32)
        .bind((c.journal_base + i) as i32)
        .bind(JOURNAL_FORMAT_VERSION as i32)
        .bind(event.encode())
        .execute(&mut *conn)
        .await?;
    }
    if !c.consumed.is_empty() {
        let ids: Vec<i64> = c.consumed.iter().map(|m| m.0).collect();
        sqlx::query("DELETE FROM messages WHERE instance_id = $1 AND id = ANY($2)")
            .bind(id)
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
    }
    for child in &c.new_instances {
        instances::insert(conn, child, wake).await?;
    }
    for task in &c.tasks {
        sqlx::query(
            "INSERT INTO tasks (instance_id, execution, op, name, input, options, scheduled_at,
                                visible_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&task.instance_id)
        .bind(task.execution as i32)
        .bind(task.op.to_string())
        .bind(&task.name)
        .bind(task.input.as_json())
        .bind(codec::to_json(&task.options)?)
        .bind(task.scheduled_at.0)
        .execute(&mut *conn)
        .await?;
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
    sqlx::query(
        "UPDATE instances SET status = $2, output = $3, failure = $4, updated_at = $5,
                execution = $6, input = coalesce($7, input), lease_until = NULL
          WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(c.output.as_ref().map(|p| p.as_json().to_owned()))
    .bind(c.failure.as_ref().map(codec::to_json).transpose()?)
    .bind(c.now.0)
    .bind(new_execution as i32)
    .bind(input)
    .execute(&mut *conn)
    .await?;
    if c.continue_as_new.is_some() {
        wake.instances = true;
    }
    if status.is_terminal() {
        for sql in [
            "DELETE FROM messages WHERE instance_id = $1",
            "DELETE FROM tasks WHERE instance_id = $1",
            "UPDATE instances SET not_before = 0 WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *conn).await?;
        }
        wake.instances = true;
    }
    for m in &c.messages {
        let open = instances::status_of(conn, &m.instance_id)
            .await?
            .is_some_and(|s| !s.is_terminal());
        if open {
            insert_message(conn, &m.instance_id, &m.kind, m.visible_at).await?;
            wake.turns = true;
        }
    }
    if !status.is_terminal() {
        let waiting: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM messages WHERE instance_id = $1)")
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
        if waiting {
            wake.turns = true;
        }
    }
    Ok(())
}

pub(crate) async fn abandon(
    conn: &mut PgConnection,
    id: &str,
    token: LeaseToken,
    retry_at: Timestamp,
    wake: &mut Wake,
) -> OpResult<()> {
    let row: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT lease_token, lease_until FROM instances WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((current, lease_until)) = row else {
        return Err(not_found(id).into());
    };
    if current != token.0 || lease_until.is_none() {
        return Err(lease_lost(id).into());
    }
    sqlx::query("UPDATE instances SET lease_until = NULL, not_before = $2 WHERE id = $1")
        .bind(id)
        .bind(retry_at.0)
        .execute(&mut *conn)
        .await?;
    wake.turns = true;
    Ok(())
}
