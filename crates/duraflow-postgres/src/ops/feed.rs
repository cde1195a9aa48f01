//! The feed: appending a commit batch's records, reading them, and subscriber cursors.
//!
//! **Order.** A batch that appends records takes its positions from the single row of
//! `feed_head` (`UPDATE .. RETURNING`), in its own transaction, after it has locked its
//! instance rows. The row stays locked until the batch commits, so the next batch that appends
//! waits for that commit and numbers after it: positions become visible in increasing order,
//! and a reader that has seen position `n` never finds a record below `n` later (a sequence
//! could not promise that: its values are taken in one order and committed in another).
//! Batches without records do not touch the row, and every batch locks its instance rows
//! before it, so waiting for it never closes a cycle.

use duraflow_core::Timestamp;
use duraflow_store::feed::read_limit;
use duraflow_store::{codec, FeedEntry, TurnCommit};
use sqlx::{PgConnection, Row};

use super::Wake;
use crate::error::OpResult;

/// Positions are stored as `bigint`; a cursor beyond that reads nothing.
fn stored(position: u64) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
}

/// The statement of [`append`]: the records' instances, executions, sequence numbers, topics,
/// payloads and times, `$1`..`$6`.
pub(crate) const APPEND: &str = "WITH r AS MATERIALIZED (
         SELECT f.instance_id, f.execution, f.seq, f.topic, f.payload, f.at,
                row_number() OVER (ORDER BY f.ord) AS n
           FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[],
                       $6::bigint[]) WITH ORDINALITY
                AS f(instance_id, execution, seq, topic, payload, at, ord)
           JOIN instances i ON i.id = f.instance_id
          WHERE (f.execution, f.seq) > (i.feed_execution, i.feed_seq)
     ), head AS (
         UPDATE feed_head SET position = position + (SELECT count(*) FROM r)
          WHERE id = 1 AND EXISTS (SELECT 1 FROM r)
         RETURNING position - (SELECT count(*) FROM r) AS base
     ), added AS (
         INSERT INTO feed (position, instance_id, topic, payload, at)
         SELECT head.base + r.n, r.instance_id, r.topic, r.payload, r.at
           FROM r CROSS JOIN head
     ), marked AS (
         UPDATE instances i SET feed_execution = m.execution, feed_seq = m.seq
           FROM (SELECT DISTINCT ON (instance_id) instance_id, execution, seq FROM r
                  ORDER BY instance_id, execution DESC, seq DESC) m
          WHERE i.id = m.instance_id
     )
     SELECT count(*) AS appended FROM r";

/// Appends the records of the accepted commits of a batch that their instances do not have
/// yet (their `(execution, seq)` after the instance's mark), in one statement, inside the
/// batch's transaction.
pub(crate) async fn append(
    conn: &mut PgConnection,
    accepted: &[&TurnCommit],
    wake: &mut Wake,
) -> OpResult<()> {
    let mut ids = Vec::new();
    let mut executions = Vec::new();
    let mut seqs = Vec::new();
    let mut topics = Vec::new();
    let mut payloads = Vec::new();
    let mut ats = Vec::new();
    for c in accepted {
        for r in &c.feed {
            ids.push(c.instance_id.as_str());
            executions.push(i32::try_from(c.execution).unwrap_or(i32::MAX));
            seqs.push(stored(r.seq));
            topics.push(r.topic.as_str());
            payloads.push(r.payload.as_json());
            ats.push(c.now.0);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let row = sqlx::query(APPEND)
        .bind(&ids)
        .bind(&executions)
        .bind(&seqs)
        .bind(&topics)
        .bind(&payloads)
        .bind(&ats)
        .fetch_one(&mut *conn)
        .await?;
    let appended: i64 = row.try_get("appended")?;
    wake.feed |= appended > 0;
    Ok(())
}

/// The statement of [`read`]: `$1` the position to read after, `$2` the topic prefix (NULL:
/// all), `$3` the most records.
pub(crate) const READ: &str = "SELECT position, instance_id, topic, payload, at FROM feed
      WHERE position > $1 AND ($2::text IS NULL OR starts_with(topic, $2::text))
      ORDER BY position LIMIT $3";

/// Up to `limit` records after `after`, under `prefix` when given.
pub(crate) async fn read(
    conn: &mut PgConnection,
    after: u64,
    limit: usize,
    prefix: Option<&str>,
) -> OpResult<Vec<FeedEntry>> {
    let limit = i64::try_from(read_limit(limit)).unwrap_or(i64::MAX);
    let rows = sqlx::query(READ)
        .bind(stored(after))
        .bind(prefix)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let position: i64 = row.try_get("position")?;
        out.push(FeedEntry {
            position: u64::try_from(position).unwrap_or(0),
            instance_id: row.try_get("instance_id")?,
            topic: row.try_get("topic")?,
            payload: codec::payload(
                row.try_get("payload")?,
                format_args!("feed record {position}"),
            )?,
            at: Timestamp(row.try_get("at")?),
        });
    }
    Ok(out)
}

/// The statement of [`cursor`]: `$1` the subscriber.
pub(crate) const CURSOR: &str = "SELECT position FROM feed_cursors WHERE subscriber = $1";

/// A subscriber's saved cursor.
pub(crate) async fn cursor(conn: &mut PgConnection, subscriber: &str) -> OpResult<Option<u64>> {
    let position: Option<i64> = sqlx::query_scalar(CURSOR)
        .bind(subscriber)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(position.map(|p| u64::try_from(p).unwrap_or(0)))
}

/// The statement of [`save_cursor`]: `$1` the subscriber, `$2` the position.
pub(crate) const SAVE_CURSOR: &str =
    "INSERT INTO feed_cursors (subscriber, position) VALUES ($1, $2)
     ON CONFLICT (subscriber) DO UPDATE
        SET position = greatest(feed_cursors.position, excluded.position)";

/// Saves a subscriber's cursor, never moving it backwards.
pub(crate) async fn save_cursor(
    conn: &mut PgConnection,
    subscriber: &str,
    position: u64,
) -> OpResult<()> {
    sqlx::query(SAVE_CURSOR)
        .bind(subscriber)
        .bind(stored(position))
        .execute(&mut *conn)
        .await?;
    Ok(())
}
