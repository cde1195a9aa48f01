//! Leasing, committing and abandoning workflow turns.

use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{Event, Timestamp, JOURNAL_FORMAT_VERSION};
use duraflow_store::{
    codec, Committed, InstanceInfo, InstanceStatus, Journal, JournalCache, LeaseToken, Message,
    MessageId, MessageKind, StoreError, TaskId, TurnCommit, TurnWork,
};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::instances::{self, insert_message, not_found};
use super::Wake;
use crate::codec::instance_row;
use crate::error::OpResult;

/// The instance columns a lease returns: [`crate::codec::INSTANCE_COLUMNS`] of the updated row,
/// its last commit's token and the new lease token.
const LEASED_COLUMNS: &str = "t.id, t.name, t.status, t.execution, t.input, t.output, t.failure, \
                              t.parent, t.created_at, t.updated_at, t.commit_token, t.lease_token";

fn lease_lost(id: &str) -> StoreError {
    StoreError::LeaseLost {
        what: format!("instance {id:?}"),
    }
}

/// The number of events in an execution's journal (positions are dense from 0).
async fn journal_len(conn: &mut PgConnection, id: &str, execution: u32) -> OpResult<usize> {
    let n: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(position) + 1, 0)::bigint FROM events
          WHERE instance_id = $1 AND execution = $2",
    )
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

/// Leases ready instances: those whose work is due, in due order. `FOR UPDATE SKIP LOCKED`
/// locks the instance rows themselves, so concurrent fetches in other transactions skip them
/// instead of leasing them twice.
pub(crate) async fn fetch(
    conn: &mut PgConnection,
    now: Timestamp,
    max: usize,
    lease: Duration,
    cache: Option<&Arc<dyn JournalCache>>,
) -> OpResult<Vec<TurnWork>> {
    let until = now.plus(lease);
    let rows = sqlx::query(AssertSqlSafe(format!(
        "WITH ready AS (
             SELECT id, due_at, due_seq FROM instances
              WHERE due_at <= $1
              ORDER BY due_at, due_seq
              LIMIT $2
                FOR UPDATE SKIP LOCKED
         )
         UPDATE instances AS t
            SET lease_token = nextval('lease_tokens'), lease_until = $3, due_at = $3
           FROM ready
          WHERE t.id = ready.id
         RETURNING {LEASED_COLUMNS}, ready.due_at AS was_due, ready.due_seq AS was_seq"
    )))
    .bind(now.0)
    .bind(max as i64)
    .bind(until.0)
    .fetch_all(&mut *conn)
    .await?;
    let mut leased = Vec::with_capacity(rows.len());
    for row in &rows {
        let order: (i64, Option<i64>) = (row.try_get("was_due")?, row.try_get("was_seq")?);
        leased.push((order, leased_row(row)?));
    }
    // Oldest work first, as the claim ordered it.
    leased.sort_by_key(|(order, _)| *order);
    let mut work = Vec::with_capacity(leased.len());
    for (_, (instance, commit_token, token)) in leased {
        work.push(load_turn(conn, instance, commit_token, token, now, cache).await?);
    }
    Ok(work)
}

/// An instance row as a lease returned it: the instance, its last commit's token, the lease's.
fn leased_row(row: &PgRow) -> OpResult<(InstanceInfo, i64, LeaseToken)> {
    Ok((
        instance_row(row)?,
        row.try_get("commit_token")?,
        LeaseToken(row.try_get("lease_token")?),
    ))
}

/// Leases the turn of instance `id` if its work is due at `now` (a claim by a completion).
pub(crate) async fn claim(
    conn: &mut PgConnection,
    id: &str,
    now: Timestamp,
    lease: Duration,
    cache: Option<&Arc<dyn JournalCache>>,
) -> OpResult<Option<TurnWork>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "UPDATE instances AS t
            SET lease_token = nextval('lease_tokens'), lease_until = $3, due_at = $3
          WHERE t.id = $1 AND t.due_at <= $2
         RETURNING {LEASED_COLUMNS}"
    )))
    .bind(id)
    .bind(now.0)
    .bind(now.plus(lease).0)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (instance, commit_token, token) = leased_row(&row)?;
    Ok(Some(
        load_turn(conn, instance, commit_token, token, now, cache).await?,
    ))
}

/// Reads what a leased turn comes with: its visible messages, and its journal unless the
/// caller's cache holds it as the last commit left it.
async fn load_turn(
    conn: &mut PgConnection,
    instance: InstanceInfo,
    commit_token: i64,
    token: LeaseToken,
    now: Timestamp,
    cache: Option<&Arc<dyn JournalCache>>,
) -> OpResult<TurnWork> {
    let id = instance.id.clone();
    let warm = cache.is_some_and(|c| c.holds(&id, instance.execution, LeaseToken(commit_token)));
    let journal = if warm {
        Ok(Journal::Cached)
    } else {
        read_journal(conn, &id, instance.execution)
            .await?
            .map(Journal::Events)
    };
    let messages = visible_messages(conn, &id, now).await?;
    Ok(TurnWork {
        instance,
        journal,
        messages,
        token,
    })
}

pub(crate) async fn commit(
    conn: &mut PgConnection,
    c: &TurnCommit,
    wake: &mut Wake,
) -> OpResult<Committed> {
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
    let mut committed = Committed::default();
    for (i, task) in c.tasks.iter().enumerate() {
        let claim = c.claim_tasks.filter(|claim| i < claim.max);
        let until = claim.map(|claim| c.now.plus(claim.lease).0);
        let (task_id, token): (i64, i64) = sqlx::query_as(
            "INSERT INTO tasks (instance_id, execution, op, name, input, options, scheduled_at,
                                visible_at, attempt, lease_token, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, $7),
                     CASE WHEN $8 IS NULL THEN 0 ELSE 1 END,
                     CASE WHEN $8 IS NULL THEN 0 ELSE nextval('lease_tokens') END, $8)
             RETURNING id, lease_token",
        )
        .bind(&task.instance_id)
        .bind(task.execution as i32)
        .bind(task.op.to_string())
        .bind(&task.name)
        .bind(task.input.as_json())
        .bind(codec::to_json(&task.options)?)
        .bind(task.scheduled_at.0)
        .bind(until)
        .fetch_one(&mut *conn)
        .await?;
        match until {
            Some(until) => committed.tasks.push(task.claimed(
                TaskId(task_id),
                LeaseToken(token),
                Timestamp(until),
            )),
            None => wake.tasks = true,
        }
    }
    for m in &c.messages {
        if insert_message(conn, &m.instance_id, &m.kind, m.visible_at).await? {
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
        for sql in [
            "DELETE FROM messages WHERE instance_id = $1",
            "DELETE FROM tasks WHERE instance_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *conn).await?;
        }
        committed.tasks.clear();
        wake.instances = true;
    }
    // The lease ends: the work is due again when the earliest message left becomes visible.
    let due_at: Option<i64> = sqlx::query_scalar(
        "UPDATE instances SET status = $2, output = $3, failure = $4, updated_at = $5,
                execution = $6, input = coalesce($7, input), lease_until = NULL,
                commit_token = $8,
                not_before = CASE WHEN $9 THEN 0 ELSE not_before END,
                due_at = (SELECT CASE WHEN min(m.visible_at) IS NULL THEN NULL
                                      ELSE greatest(min(m.visible_at), instances.not_before) END
                            FROM messages m WHERE m.instance_id = $1),
                due_seq = (SELECT min(m.id) FROM messages m WHERE m.instance_id = $1)
          WHERE id = $1
         RETURNING due_at",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(c.output.as_ref().map(|p| p.as_json().to_owned()))
    .bind(c.failure.as_ref().map(codec::to_json).transpose()?)
    .bind(c.now.0)
    .bind(new_execution as i32)
    .bind(input)
    .bind(c.token.0)
    .bind(status.is_terminal())
    .fetch_one(&mut *conn)
    .await?;
    if due_at.is_some() {
        wake.turns = true;
    }
    Ok(committed)
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
    sqlx::query(
        "UPDATE instances SET lease_until = NULL, not_before = $2,
                due_at = (SELECT CASE WHEN min(m.visible_at) IS NULL THEN NULL
                                      ELSE greatest(min(m.visible_at), $2) END
                            FROM messages m WHERE m.instance_id = $1)
          WHERE id = $1",
    )
    .bind(id)
    .bind(retry_at.0)
    .execute(&mut *conn)
    .await?;
    wake.turns = true;
    Ok(())
}
