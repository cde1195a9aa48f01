//! The feed: appending a commit's records, reading them, and subscriber cursors.

use duraflow_core::Timestamp;
use duraflow_store::feed::{read_limit, unseen};
use duraflow_store::{FeedEntry, TurnCommit};
use rusqlite::{params, Connection};

use crate::codec::payload;
use crate::db::Tx;
use crate::error::SqlResult;

/// Positions are stored as SQLite integers (i64); a cursor beyond that reads nothing.
fn stored(position: u64) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
}

/// Appends the records of `c` its instance does not have yet (see
/// [`duraflow_store::feed::unseen`]), inside the commit's transaction.
pub(crate) fn append(conn: &Connection, c: &TurnCommit, tx: &mut Tx<'_>) -> SqlResult<()> {
    if c.feed.is_empty() {
        return Ok(());
    }
    let (execution, seq): (u32, i64) = conn
        .prepare_cached("SELECT feed_execution, feed_seq FROM instances WHERE id = ?1")?
        .query_row([&c.instance_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mark = (execution, u64::try_from(seq).unwrap_or(0));
    let (fresh, mark) = unseen(mark, c.execution, &c.feed);
    if fresh.is_empty() {
        return Ok(());
    }
    {
        let mut insert = conn.prepare_cached(
            "INSERT INTO feed (instance_id, topic, payload, at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for r in fresh {
            insert.execute(params![
                c.instance_id,
                r.topic,
                r.payload.as_json(),
                c.now.0
            ])?;
        }
    }
    conn.prepare_cached("UPDATE instances SET feed_execution = ?2, feed_seq = ?3 WHERE id = ?1")?
        .execute(params![c.instance_id, mark.0, stored(mark.1)])?;
    tx.wake.feed = true;
    Ok(())
}

/// Up to `limit` records after `after`, under `prefix` when given.
pub(crate) fn read(
    conn: &Connection,
    after: u64,
    limit: usize,
    prefix: Option<&str>,
) -> SqlResult<Vec<FeedEntry>> {
    let limit = i64::try_from(read_limit(limit)).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT position, instance_id, topic, payload, at FROM feed
          WHERE position > ?1 AND (?2 IS NULL OR substr(topic, 1, length(?2)) = ?2)
          ORDER BY position LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![stored(after), prefix, limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let position: i64 = row.get(0)?;
        out.push(FeedEntry {
            position: u64::try_from(position).unwrap_or(0),
            instance_id: row.get(1)?,
            topic: row.get(2)?,
            payload: payload(row.get(3)?, format_args!("feed record {position}"))?,
            at: Timestamp(row.get(4)?),
        });
    }
    Ok(out)
}

/// A subscriber's saved cursor.
pub(crate) fn cursor(conn: &Connection, subscriber: &str) -> SqlResult<Option<u64>> {
    let mut stmt =
        conn.prepare_cached("SELECT position FROM feed_cursors WHERE subscriber = ?1")?;
    let mut rows = stmt.query([subscriber])?;
    Ok(match rows.next()? {
        Some(row) => Some(u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0)),
        None => None,
    })
}

/// Saves a subscriber's cursor, never moving it backwards.
pub(crate) fn save_cursor(conn: &Connection, subscriber: &str, position: u64) -> SqlResult<()> {
    conn.prepare_cached(
        "INSERT INTO feed_cursors (subscriber, position) VALUES (?1, ?2)
         ON CONFLICT (subscriber) DO UPDATE SET position = max(position, excluded.position)",
    )?
    .execute(params![subscriber, stored(position)])?;
    Ok(())
}
