//! Reads and administration: journals, listings, purge, counts, and when work is next due.

use duraflow_core::{Event, Timestamp};
use duraflow_store::{InstanceStatus, ListFilter, NextDue, Page, StoreError, StoreStats};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};

use super::instances::{self, not_found};
use super::turns::read_journal;
use crate::codec::{in_row, instance_row, status, INSTANCE_COLUMNS};
use crate::error::SqlResult;

pub(crate) fn journal(
    conn: &Connection,
    id: &str,
    execution: Option<u32>,
) -> SqlResult<Vec<Event>> {
    let Some(info) = instances::get(conn, id)? else {
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
    Ok(read_journal(conn, id, execution)??)
}

pub(crate) fn list(conn: &Connection, filter: &ListFilter) -> SqlResult<Page> {
    let limit = match filter.limit {
        0 => 100,
        n => n.min(1_000),
    };
    let mut sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if !filter.statuses.is_empty() {
        let marks = vec!["?"; filter.statuses.len()].join(", ");
        sql.push_str(&format!(" AND status IN ({marks})"));
        args.extend(
            filter
                .statuses
                .iter()
                .map(|s| Value::Text(s.as_str().to_owned())),
        );
    }
    if let Some(name) = &filter.name {
        sql.push_str(" AND name = ?");
        args.push(Value::Text(name.clone()));
    }
    if let Some(queue) = &filter.queue {
        sql.push_str(" AND queue = ?");
        args.push(Value::Text(queue.clone()));
    }
    if let Some(after) = &filter.after {
        sql.push_str(" AND id > ?");
        args.push(Value::Text(after.clone()));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(Value::Integer(limit as i64 + 1));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut instances = Vec::new();
    while let Some(row) = rows.next()? {
        instances.push(instance_row(row)?);
    }
    let next = if instances.len() > limit {
        instances.truncate(limit);
        instances.last().map(|i| i.id.clone())
    } else {
        None
    };
    Ok(Page { instances, next })
}

pub(crate) fn purge(conn: &Connection, id: &str) -> SqlResult<bool> {
    match instances::status_of(conn, id)? {
        None => Ok(false),
        Some(s) if !s.is_terminal() => Err(StoreError::InstanceRunning(id.to_owned()).into()),
        Some(_) => {
            for sql in [
                "DELETE FROM events WHERE instance_id = ?1",
                "DELETE FROM messages WHERE instance_id = ?1",
                "DELETE FROM tasks WHERE instance_id = ?1",
                "DELETE FROM callbacks WHERE instance_id = ?1",
                "DELETE FROM queue_event_waiters WHERE instance_id = ?1",
                "DELETE FROM instances WHERE id = ?1",
            ] {
                conn.prepare_cached(sql)?.execute([id])?;
            }
            Ok(true)
        }
    }
}

pub(crate) fn stats(conn: &Connection) -> SqlResult<StoreStats> {
    let mut by_status = Vec::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT status, count(*) FROM instances GROUP BY status")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (s, n): (String, i64) = in_row(
                || "an instance's status".to_owned(),
                || Ok((row.get(0)?, row.get(1)?)),
            )?;
            by_status.push((status(&s, "an instance's status")?, n as u64));
        }
    }
    let instances = InstanceStatus::ALL
        .into_iter()
        .filter_map(|s| by_status.iter().find(|(st, _)| *st == s).copied())
        .collect();
    let count = |sql: &str| -> SqlResult<u64> {
        let n: i64 = conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?;
        Ok(n as u64)
    };
    Ok(StoreStats {
        instances,
        messages: count("SELECT count(*) FROM messages")?,
        tasks: count("SELECT count(*) FROM tasks")?,
        callbacks: count("SELECT count(*) FROM callbacks WHERE status = 'open'")?,
    })
}

pub(crate) fn next_due(conn: &Connection, now: Timestamp) -> SqlResult<NextDue> {
    let min = |sql: &str| -> SqlResult<Option<Timestamp>> {
        let v: Option<i64> = conn
            .prepare_cached(sql)?
            .query_row(params![now.0], |r| r.get(0))?;
        Ok(v.map(Timestamp))
    };
    // Leases are folded into both: a leased instance is due when its lease expires, and a
    // leased task visible then.
    Ok(NextDue {
        turn: min("SELECT min(due_at) FROM instances WHERE due_at > ?1")?,
        task: min("SELECT min(visible_at) FROM tasks WHERE visible_at > ?1")?,
    })
}
