//! Leasing, completing, renewing and releasing activity tasks.

use std::time::Duration;

use duraflow_core::{ActivityOptions, Failure, Timestamp};
use duraflow_store::{
    codec, LeaseToken, MessageKind, StoreError, TaskCompletion, TaskId, TaskRelease, TaskWork,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::instances::insert_message;
use super::Wake;
use crate::error::OpResult;

fn not_found(id: TaskId) -> StoreError {
    StoreError::NotFound(format!("task {}", id.0))
}

fn lease_lost(id: TaskId) -> StoreError {
    StoreError::LeaseLost {
        what: format!("task {}", id.0),
    }
}

fn task_row(row: &PgRow) -> OpResult<TaskWork> {
    let id: i64 = row.try_get("id")?;
    let what = |col: &str| format!("column {col} of task {id}");
    let execution: i32 = row.try_get("execution")?;
    let attempt: i32 = row.try_get("attempt")?;
    Ok(TaskWork {
        id: TaskId(id),
        instance_id: row.try_get("instance_id")?,
        execution: u32::try_from(execution).unwrap_or(0),
        op: codec::op_id(&row.try_get::<String, _>("op")?)?,
        name: row.try_get("name")?,
        input: codec::payload(row.try_get("input")?, &what("input"))?,
        options: codec::from_json::<ActivityOptions>(
            &row.try_get::<String, _>("options")?,
            &what("options"),
        )?,
        attempt: u32::try_from(attempt).unwrap_or(0),
        scheduled_at: Timestamp(row.try_get("scheduled_at")?),
        token: LeaseToken(row.try_get("lease_token")?),
        lease_until: Timestamp(row.try_get::<Option<i64>, _>("lease_until")?.unwrap_or(0)),
        last_failure: codec::opt_from_json::<Failure>(
            row.try_get("last_failure")?,
            &what("last_failure"),
        )?,
    })
}

/// Leases visible tasks, skipping rows another transaction is leasing.
pub(crate) async fn fetch(
    conn: &mut PgConnection,
    now: Timestamp,
    max: usize,
    lease: Duration,
) -> OpResult<Vec<TaskWork>> {
    let rows = sqlx::query(
        "WITH ready AS (
             SELECT id, visible_at FROM tasks
              WHERE visible_at <= $1
              ORDER BY visible_at, id
              LIMIT $2
                FOR UPDATE SKIP LOCKED
         )
         UPDATE tasks AS t
            SET attempt = t.attempt + 1, lease_token = nextval('lease_tokens'), lease_until = $3,
                visible_at = $3
           FROM ready
          WHERE t.id = ready.id
         RETURNING t.id, t.instance_id, t.execution, t.op, t.name, t.input, t.options, t.attempt,
                   t.scheduled_at, t.lease_token, t.lease_until, ready.visible_at,
                   t.last_failure",
    )
    .bind(now.0)
    .bind(max as i64)
    .bind(now.plus(lease).0)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: Vec<(i64, TaskWork)> = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push((row.try_get("visible_at")?, task_row(row)?));
    }
    out.sort_by_key(|(visible_at, t)| (*visible_at, t.id));
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

/// The task's lease state: `(instance_id, execution, op, token, lease_until)`.
type LeaseRow = (String, i32, String, i64, Option<i64>);

async fn lease_row(conn: &mut PgConnection, id: TaskId) -> OpResult<LeaseRow> {
    sqlx::query_as(
        "SELECT instance_id, execution, op, lease_token, lease_until FROM tasks
          WHERE id = $1 FOR UPDATE",
    )
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| not_found(id).into())
}

fn holds(row: &LeaseRow, token: LeaseToken, now: Option<Timestamp>) -> bool {
    row.3 == token.0
        && row
            .4
            .is_some_and(|until| now.is_none_or(|now| until > now.0))
}

/// Completes one task; returns its instance.
pub(crate) async fn complete(
    conn: &mut PgConnection,
    now: Timestamp,
    c: &TaskCompletion,
    wake: &mut Wake,
) -> OpResult<String> {
    let row = lease_row(conn, c.id).await?;
    if !holds(&row, c.token, Some(now)) {
        return Err(lease_lost(c.id).into());
    }
    sqlx::query("DELETE FROM tasks WHERE id = $1")
        .bind(c.id.0)
        .execute(&mut *conn)
        .await?;
    let (instance_id, execution, op, _, _) = row;
    let kind = MessageKind::ActivityResult {
        execution: u32::try_from(execution).unwrap_or(0),
        op: codec::op_id(&op)?,
        result: c.result.clone(),
    };
    if insert_message(conn, &instance_id, &kind, now).await? {
        wake.turns = true;
    }
    Ok(instance_id)
}

pub(crate) async fn renew(
    conn: &mut PgConnection,
    id: TaskId,
    token: LeaseToken,
    now: Timestamp,
    lease: Duration,
) -> OpResult<Timestamp> {
    let row = lease_row(conn, id).await?;
    if !holds(&row, token, Some(now)) {
        return Err(lease_lost(id).into());
    }
    let until = now.plus(lease);
    sqlx::query("UPDATE tasks SET lease_until = $2, visible_at = $2 WHERE id = $1")
        .bind(id.0)
        .bind(until.0)
        .execute(&mut *conn)
        .await?;
    Ok(until)
}

pub(crate) async fn release(
    conn: &mut PgConnection,
    id: TaskId,
    token: LeaseToken,
    release: &TaskRelease,
    wake: &mut Wake,
) -> OpResult<()> {
    let row = lease_row(conn, id).await?;
    if !holds(&row, token, None) {
        return Err(lease_lost(id).into());
    }
    match release {
        TaskRelease::Retry {
            visible_at,
            failure,
        } => {
            sqlx::query(
                "UPDATE tasks SET lease_until = NULL, visible_at = $2, last_failure = $3
                  WHERE id = $1",
            )
            .bind(id.0)
            .bind(visible_at.0)
            .bind(codec::to_json(failure)?)
            .execute(&mut *conn)
            .await?;
        }
        TaskRelease::HandBack => {
            sqlx::query(
                "UPDATE tasks SET lease_until = NULL, visible_at = scheduled_at,
                                  attempt = greatest(attempt - 1, 0)
                  WHERE id = $1",
            )
            .bind(id.0)
            .execute(&mut *conn)
            .await?;
        }
    }
    wake.tasks = true;
    Ok(())
}
