//! Fetching turns: one statement leases, in priority order, the due instances that need no
//! admission; the admissions follow in a transaction of their own ([`super::flow::admit`]).

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use duraflow_core::Timestamp;
use duraflow_store::{FetchFilter, JournalCache, TurnWork};
use sqlx::{PgConnection, Row};

use super::flow::{self, ADMISSIONS_WAITING, ADMISSION_FREE};
use super::messages_of;
use super::turns::{
    leased_columns, leased_row, turn_extras, with_journals, Leased, TURN_EXTRA_COLUMNS,
};
use crate::error::OpResult;

/// The statement of [`fetch`]: `$1` now, `$2` the most turns, `$3` the lease's expiry, `$4`
/// the served queues, `$5` the workflow names served (NULL: all), `$6` the lease owner.
pub(crate) static FETCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH quiet AS MATERIALIZED ({LEASES_ONLY}), candidates AS MATERIALIZED (
             SELECT c.* FROM unnest($4::text[]) AS q(name)
             CROSS JOIN LATERAL (
                 (SELECT a.id, a.priority, a.due_at, a.due_seq FROM instances a
                   WHERE a.queue = q.name AND a.due_at <= $1 AND a.started_at IS NOT NULL
                     AND ($5::text[] IS NULL OR a.name = ANY($5::text[]))
                   ORDER BY a.priority DESC, a.due_at, a.due_seq
                   LIMIT $2)
                 UNION ALL
                 (SELECT p.id, p.priority, p.due_at, p.due_seq FROM instances p
                   WHERE p.queue = q.name AND p.due_at <= $1 AND p.started_at IS NULL
                     AND p.concurrency_key IS NULL
                     AND NOT EXISTS (SELECT 1 FROM queue_configs qc
                                      WHERE qc.name = q.name AND qc.limits_queue)
                     AND ($5::text[] IS NULL OR p.name = ANY($5::text[]))
                   ORDER BY p.priority DESC, p.due_at, p.due_seq
                   LIMIT $2)
             ) c
         ), ready AS (
             SELECT i.id, i.priority, i.due_at, i.due_seq
               FROM instances i
              WHERE i.id = ANY(ARRAY(SELECT c.id FROM candidates c))
                AND (i.due_at <= $1) IS TRUE AND {ADMISSION_FREE}
              ORDER BY i.priority DESC, i.due_at, i.due_seq
              LIMIT $2
                FOR UPDATE OF i SKIP LOCKED
         ), leased AS (
             UPDATE instances AS t
                SET lease_token = nextval('lease_tokens'), lease_until = $3, due_at = $3,
                    lease_owner = $6, started_at = coalesce(t.started_at, $1)
               FROM ready
              WHERE t.id = ready.id
             RETURNING {leased}, ready.priority AS was_priority, ready.due_at AS was_due,
                       ready.due_seq AS was_seq
         )
         SELECT l.*, {TURN_EXTRA_COLUMNS},
                (SELECT s.commit_token FROM instances s WHERE s.id = l.id) AS seen_commit_token,
                flag.waiting, flag.unleased, flag.quiet
           FROM (SELECT {ADMISSIONS_WAITING} AS waiting, (SELECT quiet FROM quiet) AS quiet,
                        CASE WHEN (SELECT count(*) FROM leased) >= $2 THEN false
                             ELSE EXISTS (SELECT 1 FROM candidates c
                                           WHERE c.id NOT IN (SELECT id FROM leased))
                        END AS unleased) flag
           LEFT JOIN (leased l {extras}) ON true
          ORDER BY l.was_priority DESC, l.was_due, l.was_seq",
        leased = leased_columns("t"),
        extras = turn_extras(
            "SELECT m.id, m.visible_at, m.kind FROM messages m
              WHERE m.instance_id = l.id AND m.visible_at <= $1"
        ),
        LEASES_ONLY = super::LEASES_ONLY,
    )
});

/// What [`fetch`] leased.
pub(crate) struct Fetched {
    /// The turns leased.
    pub(crate) turns: Vec<TurnWork>,
    /// Whether the statement passed over a due instance it could have leased: it leased fewer
    /// turns than asked for while a candidate went unleased, because another transaction held
    /// its row (`SKIP LOCKED`) or changed it after the snapshot (see [`crate::skipped`]).
    pub(crate) skipped: bool,
}

/// Leases ready instances, those whose work is due, in due order, with their visible messages:
/// one statement, which commits by itself without waiting for its log flush (it writes only
/// leases, see [`super::LEASES_ONLY`]). The candidates are read queue by queue (a `LATERAL`
/// scan of each served queue's admitted and pending due indexes, at most `max` rows each), so a
/// fetch reads no other queue's work however much of it is due: with one statement for any
/// set of queues, under the generic plans the store's sessions use, a filter on
/// `queue = ANY(..)` walked the due order of every queue (the `queue-fetch` benchmark). `FOR UPDATE SKIP LOCKED` locks the instance rows
/// themselves, so concurrent fetches skip them instead of leasing them twice. The messages are
/// read from the statement's snapshot: one sent while the statement ran waits for the next turn
/// (the turn's commit recomputes the due time from the inbox). An instance that a commit
/// changed after the snapshot (its `commit_token` in the snapshot is not the leased row's) has
/// its inbox read again, see [`reread_moved`]. The statement also says whether a candidate
/// went unleased, so that the caller learns whether it skipped any ([`Fetched::skipped`]). The
/// candidates are read once (materialized) and locked by their ids, `id = ANY(ARRAY(..))`:
/// joined to `instances` as a set whose size the planner does not know, they were joined to a
/// scan of every due instance once the table had statistics.
pub(crate) async fn fetch(
    conn: &mut PgConnection,
    filter: &FetchFilter,
    now: Timestamp,
    max: usize,
    lease: Duration,
    owner: Option<i32>,
    cache: Option<&Arc<dyn JournalCache>>,
) -> OpResult<Fetched> {
    if filter.is_empty() {
        return Ok(Fetched {
            turns: Vec::new(),
            skipped: false,
        });
    }
    let until = now.plus(lease);
    let rows = sqlx::query(FETCH.as_str())
        .bind(now.0)
        .bind(max as i64)
        .bind(until.0)
        .bind(&filter.queues)
        .bind(&filter.names)
        .bind(owner)
        .fetch_all(&mut *conn)
        .await?;
    let mut leased = Vec::with_capacity(rows.len());
    let mut moved = Vec::new();
    let mut waiting = false;
    let mut unleased = false;
    for row in &rows {
        waiting |= row.try_get::<bool, _>("waiting")?;
        unleased |= row.try_get::<bool, _>("unleased")?;
        if row.try_get::<Option<String>, _>("id")?.is_none() {
            continue;
        }
        let l = leased_row(row)?;
        let seen: Option<i64> = row.try_get("seen_commit_token")?;
        if seen != Some(l.commit_token) {
            moved.push(leased.len());
        }
        leased.push(l);
    }
    let skipped = leased.len() < max && unleased;
    reread_moved(conn, now, &mut leased, &moved).await?;
    if waiting && leased.len() < max {
        let admitted = flow::admit(conn, filter, now, max - leased.len(), lease, owner).await?;
        leased.extend(admitted);
    }
    let turns = with_journals(conn, leased, cache).await?;
    Ok(Fetched { turns, skipped })
}

/// The statement of [`reread_moved`]: `$1` the instance ids, `$2` their executions, `$3` now.
pub(crate) static REREAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT l.id, {TURN_EXTRA_COLUMNS}
           FROM unnest($1::text[], $2::int[]) AS l(id, execution) {extras}",
        extras = turn_extras(
            "SELECT m.id, m.visible_at, m.kind FROM messages m
              WHERE m.instance_id = l.id AND m.visible_at <= $3"
        ),
    )
});

/// Reads the inbox (and whether the journal has events) again for the leased turns at
/// `moved`: those whose instance another engine committed to after the lease statement's
/// snapshot was taken.
///
/// The statement reads the inbox from its snapshot, but `FOR UPDATE SKIP LOCKED` locks, and
/// leases, the newest version of a row that a commit changed after that snapshot (it re-checks
/// the row rather than skipping it). The journal is read later, so without this the turn would
/// get the commit's journal with the inbox from before it, and deliver again the messages that
/// commit consumed (an event journaled twice; found by the fault search). The lease is held
/// now, so no other commit can land on these instances before this read.
async fn reread_moved(
    conn: &mut PgConnection,
    now: Timestamp,
    leased: &mut [Leased],
    moved: &[usize],
) -> OpResult<()> {
    if moved.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = moved
        .iter()
        .map(|&i| leased[i].instance.id.as_str())
        .collect();
    let executions: Vec<i32> = moved
        .iter()
        .map(|&i| leased[i].instance.execution as i32)
        .collect();
    let rows = sqlx::query(REREAD.as_str())
        .bind(&ids)
        .bind(&executions)
        .bind(now.0)
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        let id: String = row.try_get("id")?;
        if let Some(&i) = moved.iter().find(|&&i| leased[i].instance.id == id) {
            leased[i].messages = messages_of(row, &id)?;
            leased[i].has_events = row.try_get("has_events")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::time::Duration;

    use duraflow_core::{Payload, Timestamp};
    use duraflow_store::{NewInstance, Store};
    use serde_json::Value;
    use sqlx::AssertSqlSafe;

    use super::FETCH;
    use crate::testing::test_store;

    /// A fetch of a few turns reads a few rows of `instances`, however many instances wait in
    /// the queue for one: with 2,000 due and waiting, no scan of `instances` reads more than
    /// the fetch's own limit of each kind. The plan is made as a store's session makes it on a
    /// new schema: once, generically, while the tables are empty, and kept. (Planned so, the
    /// check whether admissions wait read every pending due instance of the served queues,
    /// grouped by queue, before it looked for a queue with limits; and the admitted candidates
    /// were read from an index of every due instance of the queue, migration 0016. With the
    /// candidates materialized, to be counted as well, and joined to `instances`, a plan made
    /// with statistics scanned every due instance to join them.)
    #[tokio::test]
    async fn a_fetch_reads_few_rows_however_many_wait() {
        let store = test_store("dft_fetch_rows").await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        let execute = "EXECUTE fetch_rows (5000, 4, 65000, ARRAY['default'], NULL, NULL)";
        sqlx::raw_sql(AssertSqlSafe(format!(
            "PREPARE fetch_rows (bigint, bigint, bigint, text[], text[], integer) AS {};
             BEGIN; {execute}; ROLLBACK;",
            FETCH.as_str()
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
        let waiting: Vec<NewInstance> = (0..2_000)
            .map(|i| NewInstance {
                id: format!("w{i:05}"),
                name: "wf".into(),
                input: Payload::encode(&i).unwrap(),
                parent: None,
                queue: "default".into(),
                created_at: Timestamp(1_000),
                start_at: None,
                options: Default::default(),
            })
            .collect();
        let claim = vec![false; waiting.len()];
        store
            .create_instances_claiming(waiting, claim, Duration::from_secs(30))
            .await
            .unwrap();
        // Half of them admitted and leased, as running instances are.
        sqlx::raw_sql(
            "UPDATE instances SET started_at = 1000, lease_until = 60000, due_at = 60000
              WHERE id < 'w01000'",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        // Planned as it was while the tables were empty, and again with the statistics
        // autovacuum takes of such a table (which makes the sessions plan the statement
        // again), so that the check does not depend on when autovacuum runs.
        for analyzed in [false, true] {
            if analyzed {
                sqlx::raw_sql("ANALYZE instances")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
            sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
            let plan: Value = sqlx::query_scalar(AssertSqlSafe(format!(
                "EXPLAIN (ANALYZE, FORMAT JSON) {execute}"
            )))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.unwrap();
            let found = crate::plans::rows_read(&plan, "instances");
            assert!(!found.is_empty(), "{plan}");
            for (rows, how) in &found {
                assert!(
                    *rows <= 16.0,
                    "analyzed: {analyzed}: {how} read {rows} rows of instances:\n{plan:#}"
                );
            }
        }
        sqlx::raw_sql("DEALLOCATE fetch_rows")
            .execute(&mut *conn)
            .await
            .unwrap();
    }

    /// The statements that write only leases let their own transaction commit without waiting
    /// for the log's flush: inside a transaction of the test's (which they would otherwise
    /// commit by themselves), `synchronous_commit` reads `off` after each of them, and `on`
    /// again after the transaction.
    #[tokio::test]
    async fn lease_statements_commit_without_waiting_for_the_flush() {
        let store = test_store("dft_quiet").await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        let setting = "SELECT current_setting('synchronous_commit')";
        for (name, sql) in [
            ("fetch::FETCH", FETCH.as_str()),
            ("tasks::FETCH", super::super::tasks::FETCH.as_str()),
        ] {
            let before: String = sqlx::query_scalar(setting)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(
                before, "on",
                "{name}: the store's sessions sync their commits"
            );
            let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
            sqlx::query(sql)
                .bind(1_i64)
                .bind(10_i64)
                .bind(2_i64)
                .bind(vec!["default"])
                .bind(None::<Vec<String>>)
                .bind(None::<i32>)
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            let during: String = sqlx::query_scalar(setting)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            assert_eq!(during, "off", "{name} turns the flush wait off");
            tx.rollback().await.unwrap();
            let after: String = sqlx::query_scalar(setting)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(after, "on", "{name}: only for its own transaction");
        }
    }
}
