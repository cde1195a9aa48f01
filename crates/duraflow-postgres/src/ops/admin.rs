//! Reads and administration: journals, listings, purge, counts, and when work is next due.

use duraflow_core::{Event, Timestamp};
use duraflow_store::management::DepthTally;
use duraflow_store::{
    journal_execution, InstanceStatus, ListFilter, ListOrder, NextDue, Page, QueueDepth,
    StoreError, StoreStats,
};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::instances;
use super::turns::read_journal;
use crate::codec::{instance_row, INSTANCE_COLUMNS};
use crate::error::OpResult;

pub(crate) async fn journal(
    conn: &mut PgConnection,
    id: &str,
    execution: Option<u32>,
) -> OpResult<Vec<Event>> {
    let Some(info) = instances::get(conn, id).await? else {
        return Err(StoreError::instance_not_found(id).into());
    };
    let execution = journal_execution(id, execution, info.execution)?;
    Ok(read_journal(conn, id, execution).await??)
}

/// The listing statement for `filter`'s combination of filters and its order
/// ([`ListFilter::order`]): `$1` statuses, `$2` name, `$3` the id to list after, `$4` the
/// limit, `$5` queue, `$6`..`$9` the created and updated time bounds, `$10` the cursor's time.
///
/// Each filter given adds its condition, so that every combination is a statement of its own
/// whose plan can use the index for it (`(status, id)`, `(name, id)`, `(queue, id)` or the
/// primary key in id order; `(created_at, id)` in creation order; `(finished_at, id)` over
/// finished instances in order of their last change). `finished_at` is computed by
/// PostgreSQL: a finished instance's `updated_at`, NULL for any other (migration 0015: no index
/// names `updated_at`, so the commits of running instances are heap-only updates). A listing in
/// that order has an update bound, and compares `finished_at` in it and in the cursor: a
/// comparison is false on NULL, which is what lets the planner use the partial index of the
/// rows where it is not NULL (a condition `finished_at IS NOT NULL` written out, on a table
/// where no instance has finished, would have the planner sort instead). One statement with
/// `($n IS NULL OR ..)` for every filter would get one generic plan for all of them. Only
/// constant text is interpolated.
pub(crate) fn list_sql(filter: &ListFilter) -> String {
    let order = filter.order();
    let mut sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE true");
    let after = match order {
        ListOrder::Id => " AND id > $3",
        ListOrder::Created => " AND created_at >= $10 AND (created_at > $10 OR id > $3)",
        ListOrder::Finished => " AND finished_at >= $10 AND (finished_at > $10 OR id > $3)",
    };
    let (updated_from, updated_before) = match order {
        ListOrder::Finished => (" AND finished_at >= $8", " AND finished_at < $9"),
        ListOrder::Id | ListOrder::Created => (" AND updated_at >= $8", " AND updated_at < $9"),
    };
    for (given, condition) in [
        (!filter.statuses.is_empty(), " AND status = ANY($1)"),
        (filter.name.is_some(), " AND name = $2"),
        (filter.after.is_some(), after),
        (filter.queue.is_some(), " AND queue = $5"),
        (filter.created_from.is_some(), " AND created_at >= $6"),
        (filter.created_before.is_some(), " AND created_at < $7"),
        (filter.updated_from.is_some(), updated_from),
        (filter.updated_before.is_some(), updated_before),
    ] {
        if given {
            sql.push_str(condition);
        }
    }
    sql.push_str(match order {
        ListOrder::Id => " ORDER BY id LIMIT $4",
        ListOrder::Created => " ORDER BY created_at, id LIMIT $4",
        ListOrder::Finished => " ORDER BY finished_at, id LIMIT $4",
    });
    sql
}

pub(crate) async fn list(conn: &mut PgConnection, filter: &ListFilter) -> OpResult<Page> {
    let size = filter.page_size();
    let cursor = filter.cursor()?;
    let statuses: Vec<String> = filter
        .statuses
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let sql = list_sql(filter);
    // Every parameter is bound, used or not, so that the numbering stays the same.
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(&statuses)
        .bind(filter.name.as_deref())
        .bind(cursor.as_ref().map(|c| c.id.as_str()))
        .bind(size as i64 + 1)
        .bind(filter.queue.as_deref())
        .bind(filter.created_from.map(|t| t.0))
        .bind(filter.created_before.map(|t| t.0))
        .bind(filter.updated_from.map(|t| t.0))
        .bind(filter.updated_before.map(|t| t.0))
        .bind(cursor.as_ref().and_then(|c| c.time).map(|t| t.0))
        .fetch_all(&mut *conn)
        .await?;
    let instances = rows
        .iter()
        .map(instance_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::listed(instances, filter))
}

/// Purges the finished instances `filter` (checked by `purge_filter`) selects, in the caller's
/// transaction; returns their ids.
pub(crate) async fn purge_finished(
    conn: &mut PgConnection,
    filter: &ListFilter,
) -> OpResult<Vec<String>> {
    let page = list(conn, filter).await?;
    let mut purged = Vec::with_capacity(page.instances.len());
    for instance in page.instances {
        if purge(conn, &instance.id).await? {
            purged.push(instance.id);
        }
    }
    Ok(purged)
}

/// The instances statement of [`queue_depths`].
pub(crate) const DEPTHS_INSTANCES: &str =
    "SELECT queue, count(*) FILTER (WHERE started_at IS NULL),
            count(*) FILTER (WHERE started_at IS NOT NULL)
       FROM instances WHERE status IN ('pending', 'running') GROUP BY queue";

/// The tasks statement of [`queue_depths`]: `$1` now.
pub(crate) const DEPTHS_TASKS: &str = "SELECT queue,
            count(*) FILTER (WHERE (lease_until IS NULL OR lease_until <= $1)
                               AND visible_at <= $1),
            count(*) FILTER (WHERE lease_until > $1),
            count(*) FILTER (WHERE (lease_until IS NULL OR lease_until <= $1)
                               AND visible_at > $1)
       FROM tasks GROUP BY queue";

/// Lets the planner scan tables sequentially for the rest of the caller's transaction, which
/// the management reads that read whole tables (or large parts of them) begin with:
/// [`stats`] and [`queue_depths`]. The store's sessions price sequential scans out (see
/// `crate::connect::connect_options`), so these counts read whole indexes instead (and, for
/// the open callbacks, a sequential scan priced near 10^10); at 100,000 instances `stats` took
/// 62 ms at the median that way and 23 ms with this (BENCHMARKS.md, "PostgreSQL planner
/// settings"). Their
/// statements run nowhere else, so the generic plans their sessions keep for them are always
/// made under this setting (a cached plan is not made again when a setting changes).
pub(crate) const WHOLE_TABLES: &str = "SET LOCAL enable_seqscan = on";

/// The depth of every queue with unfinished instances or tasks at `now`: one read of the
/// unfinished instances and one of the tasks (only live work is kept), in the caller's
/// transaction (see [`WHOLE_TABLES`]).
pub(crate) async fn queue_depths(
    conn: &mut PgConnection,
    now: Timestamp,
) -> OpResult<Vec<QueueDepth>> {
    sqlx::query(WHOLE_TABLES).execute(&mut *conn).await?;
    let mut depths = DepthTally::default();
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(DEPTHS_INSTANCES)
        .fetch_all(&mut *conn)
        .await?;
    for (queue, pending, running) in rows {
        depths.instances(&queue, pending, running);
    }
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(DEPTHS_TASKS)
        .bind(now.0)
        .fetch_all(&mut *conn)
        .await?;
    for (queue, ready, leased, delayed) in rows {
        depths.tasks(&queue, ready, leased, delayed);
    }
    Ok(depths.into_depths())
}

/// The statements of [`purge`], in order: `$1` the instance id.
pub(crate) const PURGE: [&str; 6] = [
    "DELETE FROM events WHERE instance_id = $1",
    "DELETE FROM messages WHERE instance_id = $1",
    "DELETE FROM tasks WHERE instance_id = $1",
    "DELETE FROM callbacks WHERE instance_id = $1",
    "DELETE FROM queue_event_waiters WHERE instance_id = $1",
    "DELETE FROM instances WHERE id = $1",
];

pub(crate) async fn purge(conn: &mut PgConnection, id: &str) -> OpResult<bool> {
    match instances::status_of(conn, id).await? {
        None => Ok(false),
        Some(s) if !s.is_terminal() => Err(StoreError::InstanceRunning(id.to_owned()).into()),
        Some(_) => {
            for sql in PURGE {
                sqlx::query(sql).bind(id).execute(&mut *conn).await?;
            }
            Ok(true)
        }
    }
}

/// The instance counts of [`stats`].
pub(crate) const STATS_INSTANCES: &str = "SELECT status, count(*) FROM instances GROUP BY status";

/// The message count of [`stats`].
pub(crate) const STATS_MESSAGES: &str = "SELECT count(*) FROM messages";

/// The task count of [`stats`].
pub(crate) const STATS_TASKS: &str = "SELECT count(*) FROM tasks";

/// The open callback count of [`stats`].
pub(crate) const STATS_CALLBACKS: &str = "SELECT count(*) FROM callbacks WHERE status = 'open'";

/// Counts instances by status, messages, tasks and open callbacks, in the caller's transaction
/// (see [`WHOLE_TABLES`]).
pub(crate) async fn stats(conn: &mut PgConnection) -> OpResult<StoreStats> {
    sqlx::query(WHOLE_TABLES).execute(&mut *conn).await?;
    let rows = sqlx::query(STATS_INSTANCES).fetch_all(&mut *conn).await?;
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
    let messages: i64 = sqlx::query_scalar(STATS_MESSAGES)
        .fetch_one(&mut *conn)
        .await?;
    let tasks: i64 = sqlx::query_scalar(STATS_TASKS)
        .fetch_one(&mut *conn)
        .await?;
    let callbacks: i64 = sqlx::query_scalar(STATS_CALLBACKS)
        .fetch_one(&mut *conn)
        .await?;
    Ok(StoreStats {
        instances,
        messages: messages as u64,
        tasks: tasks as u64,
        callbacks: callbacks as u64,
    })
}

/// The statement of [`next_due`]: `$1` now.
pub(crate) const NEXT_DUE: &str = "SELECT (SELECT min(due_at) FROM instances WHERE due_at > $1),
            (SELECT min(visible_at) FROM tasks WHERE visible_at > $1)";

pub(crate) async fn next_due(conn: &mut PgConnection, now: Timestamp) -> OpResult<NextDue> {
    // Leases are folded into both: a leased instance is due when its lease expires, and a
    // leased task visible then.
    let row = sqlx::query(NEXT_DUE)
        .bind(now.0)
        .fetch_one(&mut *conn)
        .await?;
    Ok(NextDue {
        turn: row.try_get::<Option<i64>, _>(0)?.map(Timestamp),
        task: row.try_get::<Option<i64>, _>(1)?.map(Timestamp),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use duraflow_core::{Payload, Timestamp};
    use duraflow_store::{NewInstance, Store};

    use super::list_sql;

    /// Every combination of listing filters is planned as an index scan in id order: no
    /// sequential scan, no sort of the filtered rows (what made a page cost 70-100 ms at
    /// 100,000 instances whatever its size).
    #[tokio::test]
    async fn every_listing_is_read_in_id_order_from_an_index() {
        let store = crate::testing::test_store("list_plans").await.unwrap();
        for i in 0..200 {
            store
                .create_instance(NewInstance {
                    id: format!("i-{i:04}"),
                    name: format!("wf-{}", i % 4),
                    input: Payload::encode(&i).unwrap(),
                    parent: None,
                    queue: format!("q-{}", i % 3),
                    created_at: Timestamp(1_000),
                    start_at: None,
                    options: Default::default(),
                })
                .await
                .unwrap();
        }
        let mut conn = store.pool().acquire().await.unwrap();
        sqlx::query("ANALYZE instances")
            .execute(&mut *conn)
            .await
            .unwrap();
        // Every combination of filters, in each order: by id, by creation time (a creation
        // range), and finished instances by their last change (an update range over finished
        // statuses).
        for (n, (label, filter)) in duraflow_store::conformance::management::listing_filters()
            .into_iter()
            .enumerate()
        {
            let sql = list_sql(&filter);
            // The pool's sessions plan generically (`plan_cache_mode`), as for the store's own
            // prepared statements.
            let prepare = format!(
                "PREPARE list_{n} (text[], text, text, bigint, text, bigint, bigint, \
                 bigint, bigint, bigint) AS {sql}"
            );
            sqlx::query(sqlx::AssertSqlSafe(prepare))
                .execute(&mut *conn)
                .await
                .unwrap();
            let explain = format!(
                "EXPLAIN EXECUTE list_{n} ('{{pending}}', 'wf-1', 'i-0100', 11, \
                 'q-2', 0, NULL, NULL, 10000, 1000)"
            );
            let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                !plan.contains("Seq Scan") && !plan.contains("Sort"),
                "{label}: {sql}\n{plan}"
            );
        }
    }

    /// Every column that holds an instance id compares in the collation of `instances.id`
    /// ("C"), so that joins on it use the other table's index: a join compared in another
    /// collation than an index's cannot seek it (a fetch read the messages index whole).
    #[tokio::test]
    async fn instance_ids_join_through_indexes() {
        let store = crate::testing::test_store("id_collation").await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        let columns: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text, collation_name::text
               FROM information_schema.columns
              WHERE table_schema = current_schema()
                AND (column_name = 'instance_id' OR (table_name = 'instances' AND column_name = 'id'))
              ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert!(columns.len() >= 7, "{columns:?}");
        for (table, column, collation) in &columns {
            assert_eq!(collation.as_deref(), Some("C"), "{table}.{column}");
        }
        sqlx::query("ANALYZE").execute(&mut *conn).await.unwrap();
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN SELECT m.id FROM instances i JOIN messages m ON m.instance_id = i.id
              WHERE i.id = 'x'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan") && plan.contains("Index Cond: (instance_id = "),
            "{plan}"
        );
    }
}
