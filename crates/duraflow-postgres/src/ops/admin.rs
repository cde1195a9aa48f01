//! Reads and administration: journals, listings, purge, counts, and when work is next due.

use duraflow_core::{Event, Timestamp};
use duraflow_store::{InstanceStatus, ListFilter, NextDue, Page, StoreError, StoreStats};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::instances::{self, not_found};
use super::turns::read_journal;
use crate::codec::{instance_row, INSTANCE_COLUMNS};
use crate::error::OpResult;

pub(crate) async fn journal(
    conn: &mut PgConnection,
    id: &str,
    execution: Option<u32>,
) -> OpResult<Vec<Event>> {
    let Some(info) = instances::get(conn, id).await? else {
        return Err(not_found(id).into());
    };
    let execution = execution.unwrap_or(info.execution);
    if execution == 0 || execution > info.execution {
        return Err(StoreError::NotFound(format!(
            "execution {execution} of instance {id:?} (it has {})",
            info.execution
        ))
        .into());
    }
    Ok(read_journal(conn, id, execution).await??)
}

pub(crate) async fn list(conn: &mut PgConnection, filter: &ListFilter) -> OpResult<Page> {
    let limit = match filter.limit {
        0 => 100,
        n => n.min(1_000),
    };
    let statuses: Vec<String> = filter
        .statuses
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    // Only a constant column list is interpolated.
    let rows = sqlx::query(AssertSqlSafe(format!(
        r#"SELECT {INSTANCE_COLUMNS} FROM instances
          WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
            AND ($2::text IS NULL OR name = $2)
            AND ($3::text IS NULL OR id COLLATE "C" > $3)
            AND ($5::text IS NULL OR queue = $5)
          ORDER BY id COLLATE "C" LIMIT $4"#
    )))
    .bind(&statuses)
    .bind(filter.name.as_deref())
    .bind(filter.after.as_deref())
    .bind(limit as i64 + 1)
    .bind(filter.queue.as_deref())
    .fetch_all(&mut *conn)
    .await?;
    let mut instances = rows
        .iter()
        .map(instance_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if instances.len() > limit {
        instances.truncate(limit);
        instances.last().map(|i| i.id.clone())
    } else {
        None
    };
    Ok(Page { instances, next })
}

pub(crate) async fn purge(conn: &mut PgConnection, id: &str) -> OpResult<bool> {
    match instances::status_of(conn, id).await? {
        None => Ok(false),
        Some(s) if !s.is_terminal() => Err(StoreError::InstanceRunning(id.to_owned()).into()),
        Some(_) => {
            for sql in [
                "DELETE FROM events WHERE instance_id = $1",
                "DELETE FROM messages WHERE instance_id = $1",
                "DELETE FROM tasks WHERE instance_id = $1",
                "DELETE FROM callbacks WHERE instance_id = $1",
                "DELETE FROM queue_event_waiters WHERE instance_id = $1",
                "DELETE FROM instances WHERE id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *conn).await?;
            }
            Ok(true)
        }
    }
}

pub(crate) async fn stats(conn: &mut PgConnection) -> OpResult<StoreStats> {
    let rows = sqlx::query("SELECT status, count(*) FROM instances GROUP BY status")
        .fetch_all(&mut *conn)
        .await?;
    let mut by_status = Vec::new();
    for row in rows {
        let status: String = row.try_get(0)?;
        let n: i64 = row.try_get(1)?;
        by_status.push((status.parse::<InstanceStatus>()?, n as u64));
    }
    let instances = InstanceStatus::ALL
        .into_iter()
        .filter_map(|s| by_status.iter().find(|(st, _)| *st == s).copied())
        .collect();
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&mut *conn)
        .await?;
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&mut *conn)
        .await?;
    let callbacks: i64 = sqlx::query_scalar("SELECT count(*) FROM callbacks WHERE status = 'open'")
        .fetch_one(&mut *conn)
        .await?;
    Ok(StoreStats {
        instances,
        messages: messages as u64,
        tasks: tasks as u64,
        callbacks: callbacks as u64,
    })
}

pub(crate) async fn next_due(conn: &mut PgConnection, now: Timestamp) -> OpResult<NextDue> {
    // Leases are folded into both: a leased instance is due when its lease expires, and a
    // leased task visible then.
    let row = sqlx::query(
        "SELECT (SELECT min(due_at) FROM instances WHERE due_at > $1),
                (SELECT min(visible_at) FROM tasks WHERE visible_at > $1)",
    )
    .bind(now.0)
    .fetch_one(&mut *conn)
    .await?;
    Ok(NextDue {
        turn: row.try_get::<Option<i64>, _>(0)?.map(Timestamp),
        task: row.try_get::<Option<i64>, _>(1)?.map(Timestamp),
    })
}
