//! Reads and administration: journals, listings, purge, counts, and when work is next due.

use duraflow_core::{Event, Timestamp};
use duraflow_store::management::DepthTally;
use duraflow_store::{
    journal_execution, InstanceStatus, ListFilter, ListOrder, NextDue, Page, QueueDepth,
    StoreError, StoreStats,
};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::instances;
use super::turns::read_journal;
use crate::codec::{in_row, instance_row, status, INSTANCE_COLUMNS};
use crate::error::SqlResult;

pub(crate) fn journal(
    conn: &Connection,
    id: &str,
    execution: Option<u32>,
) -> SqlResult<Vec<Event>> {
    let Some(info) = instances::get(conn, id)? else {
        return Err(StoreError::instance_not_found(id).into());
    };
    let execution = journal_execution(id, execution, info.execution)?;
    Ok(read_journal(conn, id, execution)??)
}

/// The partial index of finished instances (migration 0014) holds the rows that meet this
/// condition; a query names it word for word, so that SQLite sees it may use the index.
const FINISHED: &str = "status <> 'pending' AND status <> 'running'";

/// One page of instances in `filter`'s order ([`ListFilter::order`]), each order read from its
/// index: by id from the primary key or the `(status | name | queue, id)` index of a filter,
/// by creation time from `(created_at, id)`, finished instances by their last change from
/// `(updated_at, id)` over finished rows.
pub(crate) fn list(conn: &Connection, filter: &ListFilter) -> SqlResult<Page> {
    let (sql, args) = list_query(filter)?;
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut instances = Vec::new();
    while let Some(row) = rows.next()? {
        instances.push(instance_row(row)?);
    }
    Ok(Page::listed(instances, filter))
}

/// The statement of [`list`] for `filter`, with its arguments.
fn list_query(filter: &ListFilter) -> SqlResult<(String, Vec<Value>)> {
    let size = filter.page_size();
    let order = filter.order();
    let cursor = filter.cursor()?;
    let mut sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances");
    let (time_column, order_by) = match order {
        ListOrder::Id => (None, " ORDER BY id"),
        ListOrder::Created => {
            sql.push_str(" INDEXED BY instances_by_created");
            (Some("created_at"), " ORDER BY created_at, id")
        }
        ListOrder::Finished => {
            sql.push_str(" INDEXED BY instances_finished");
            (Some("updated_at"), " ORDER BY updated_at, id")
        }
    };
    sql.push_str(" WHERE 1 = 1");
    if order == ListOrder::Finished {
        sql.push_str(" AND ");
        sql.push_str(FINISHED);
    }
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
    for (value, condition) in [
        (&filter.name, " AND name = ?"),
        (&filter.queue, " AND queue = ?"),
    ] {
        if let Some(value) = value {
            sql.push_str(condition);
            args.push(Value::Text(value.clone()));
        }
    }
    match (cursor, time_column) {
        (Some(cursor), Some(column)) => {
            // After (time, id): the index range starts at the time.
            let time = cursor.time.map_or(i64::MIN, |t| t.0);
            sql.push_str(&format!(" AND {column} >= ? AND ({column} > ? OR id > ?)"));
            args.extend([
                Value::Integer(time),
                Value::Integer(time),
                Value::Text(cursor.id),
            ]);
        }
        (Some(cursor), None) => {
            sql.push_str(" AND id > ?");
            args.push(Value::Text(cursor.id));
        }
        (None, _) => {}
    }
    for (time, condition) in [
        (filter.created_from, " AND created_at >= ?"),
        (filter.created_before, " AND created_at < ?"),
        (filter.updated_from, " AND updated_at >= ?"),
        (filter.updated_before, " AND updated_at < ?"),
    ] {
        if let Some(time) = time {
            sql.push_str(condition);
            args.push(Value::Integer(time.0));
        }
    }
    sql.push_str(order_by);
    sql.push_str(" LIMIT ?");
    args.push(Value::Integer(size as i64 + 1));
    Ok((sql, args))
}

/// Purges the finished instances `filter` (checked by `purge_filter`) selects, in this one
/// transaction; returns their ids.
pub(crate) fn purge_finished(conn: &Connection, filter: &ListFilter) -> SqlResult<Vec<String>> {
    let page = list(conn, filter)?;
    let mut purged = Vec::with_capacity(page.instances.len());
    for instance in page.instances {
        if purge(conn, &instance.id)? {
            purged.push(instance.id);
        }
    }
    Ok(purged)
}

/// The depth of every queue with unfinished instances or tasks at `now`: one read of the
/// unfinished instances (from the status index) and one of the tasks (only live work is kept).
pub(crate) fn queue_depths(conn: &Connection, now: Timestamp) -> SqlResult<Vec<QueueDepth>> {
    let mut depths = DepthTally::default();
    let mut stmt = conn.prepare_cached(
        "SELECT queue, count(*) FILTER (WHERE started_at IS NULL),
                count(*) FILTER (WHERE started_at IS NOT NULL)
           FROM instances WHERE status IN ('pending', 'running') GROUP BY queue",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (queue, pending, running): (String, i64, i64) = in_row(
            || "a queue's instance counts".to_owned(),
            || Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        depths.instances(&queue, pending, running);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT queue,
                count(*) FILTER (WHERE (lease_until IS NULL OR lease_until <= ?1)
                                   AND visible_at <= ?1),
                count(*) FILTER (WHERE lease_until > ?1),
                count(*) FILTER (WHERE (lease_until IS NULL OR lease_until <= ?1)
                                   AND visible_at > ?1)
           FROM tasks GROUP BY queue",
    )?;
    let mut rows = stmt.query([now.0])?;
    while let Some(row) = rows.next()? {
        let (queue, ready, leased, delayed): (String, i64, i64, i64) = in_row(
            || "a queue's task counts".to_owned(),
            || Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )?;
        depths.tasks(&queue, ready, leased, delayed);
    }
    Ok(depths.into_depths())
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
        // A pending start is a message (see `turns::IMPLICIT_START`); only a pending instance
        // has one, so the status index finds them.
        messages: count(
            "SELECT (SELECT count(*) FROM messages)
                    + (SELECT count(*) FROM instances
                        WHERE status = 'pending' AND start_at IS NOT NULL)",
        )?,
        tasks: count("SELECT count(*) FROM tasks")?,
        callbacks: count("SELECT count(*) FROM callbacks WHERE status = 'open'")?,
    })
}

pub(crate) fn next_due(conn: &Connection, now: Timestamp) -> SqlResult<NextDue> {
    // Leases are folded into both: a leased instance is due when its lease expires, and a
    // leased task visible then.
    Ok(NextDue {
        turn: next_turn_due(conn, now)?,
        task: next_task_due(conn, now)?,
    })
}

/// The earliest visible time of a task after `now`: the least of every queue's, each queue
/// found and read with one seek of `tasks_queue_due`.
fn next_task_due(conn: &Connection, now: Timestamp) -> SqlResult<Option<Timestamp>> {
    let mut earliest: Option<i64> = None;
    let mut next = conn.prepare_cached(
        "SELECT queue FROM tasks INDEXED BY tasks_queue_due WHERE queue > ?1
          ORDER BY queue LIMIT 1",
    )?;
    let mut min = conn.prepare_cached(
        "SELECT min(visible_at) FROM tasks INDEXED BY tasks_queue_due
          WHERE queue = ?1 AND visible_at > ?2",
    )?;
    let mut queue: Option<String> = conn
        .prepare_cached(
            "SELECT queue FROM tasks INDEXED BY tasks_queue_due ORDER BY queue LIMIT 1",
        )?
        .query_row([], |r| r.get(0))
        .optional()?;
    while let Some(q) = queue {
        let due: Option<i64> = min.query_row(params![q, now.0], |r| r.get(0))?;
        earliest = earliest.into_iter().chain(due).min();
        queue = next.query_row([&q], |r| r.get(0)).optional()?;
    }
    Ok(earliest.map(Timestamp))
}

/// The statements that walk one due index (admitted or pending instances) group by group.
struct DueWalk {
    /// The first (queue, priority) group of the index.
    first: &'static str,
    /// The group after (`?1`, `?2`).
    next: &'static str,
    /// The earliest due time after `?3` in group (`?1`, `?2`).
    min: &'static str,
}

macro_rules! due_walk {
    ($index:literal, $part:literal) => {
        DueWalk {
            first: concat!(
                "SELECT queue, priority FROM instances INDEXED BY ",
                $index,
                " WHERE due_at IS NOT NULL AND ",
                $part,
                " ORDER BY queue, priority LIMIT 1"
            ),
            next: concat!(
                "SELECT queue, priority FROM instances INDEXED BY ",
                $index,
                " WHERE due_at IS NOT NULL AND ",
                $part,
                " AND (queue, priority) > (?1, ?2)",
                " ORDER BY queue, priority LIMIT 1"
            ),
            min: concat!(
                "SELECT min(due_at) FROM instances INDEXED BY ",
                $index,
                " WHERE queue = ?1 AND priority = ?2 AND due_at IS NOT NULL AND ",
                $part,
                " AND due_at > ?3"
            ),
        }
    };
}

const DUE_WALKS: [DueWalk; 2] = [
    due_walk!("instances_admitted_due", "started_at IS NOT NULL"),
    due_walk!("instances_pending_due", "started_at IS NULL"),
];

/// The earliest due time of a turn after `now`: the least of every (queue, priority) group's
/// first due time after `now` in both due indexes, each group found and read with one index
/// seek (there is no index over all due times: every lease and commit would have to move the
/// instance in it too).
fn next_turn_due(conn: &Connection, now: Timestamp) -> SqlResult<Option<Timestamp>> {
    let mut earliest: Option<i64> = None;
    for walk in &DUE_WALKS {
        let mut next = conn.prepare_cached(walk.next)?;
        let mut min = conn.prepare_cached(walk.min)?;
        let mut group: Option<(String, i64)> = conn
            .prepare_cached(walk.first)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        while let Some((queue, priority)) = group {
            let due: Option<i64> = min.query_row(params![queue, priority, now.0], |r| r.get(0))?;
            earliest = earliest.into_iter().chain(due).min();
            group = next
                .query_row(params![queue, priority], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
        }
    }
    Ok(earliest.map(Timestamp))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code fails loudly")]

    use rusqlite::{params_from_iter, Connection};

    use super::list_query;

    /// Every listing is read from an index in its order: each combination of filters, by id, by
    /// creation time, and finished instances by their last change, plans no full scan of the
    /// table and no sort.
    #[test]
    fn every_listing_is_read_in_order_from_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        // The store's schema, from its migrations.
        let mut conn = Connection::open(&path).unwrap();
        crate::open::migrate(&mut conn, &path).unwrap();
        for (label, filter) in duraflow_store::conformance::management::listing_filters() {
            let (sql, args) = list_query(&filter).unwrap();
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            let full_scan = plan
                .lines()
                .any(|l| l.starts_with("SCAN instances") && !l.contains("INDEX"));
            assert!(
                !full_scan && !plan.contains("TEMP B-TREE"),
                "{label}: {sql}\n{plan}"
            );
        }
    }
}
