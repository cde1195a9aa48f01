//! Merging a journal's rows into runs.
//!
//! A commit appends its events to its execution's journal as one row, so a workflow of 10,000
//! steps, each committed on its own, leaves 10,001 rows; the workflows that ran beside it
//! interleave theirs, so a cold turn, which reads the whole journal, visited a heap page for
//! every two or three rows, and that read was most of the server's part of the turn. So every
//! [`RUN_EVENTS`] events, the commit that reaches past the next multiple of it also merges the
//! rows written since the journal's last long row (a run of at least [`RUN_EVENTS`] events,
//! merged or committed so) into one row: the same events at the same positions, one run of
//! their binary encodings, each behind its length (`Event::encode_binary_run`), which readers
//! already decode. It runs in the commit's transaction, after the commit's own row is written,
//! while the instance's row is locked.
//!
//! A merge changes nothing when the rows it would take are not all binary rows of one journal
//! format (a journal begun before the binary encoding), or do not exactly cover the range from
//! the last long row to the commit's end; the rows then stay as they are.

use duraflow_store::TurnCommit;
use sqlx::PgConnection;

use crate::error::OpResult;

/// Events between two merges of a journal's rows, and the fewest events a row must hold to
/// count as a run that later merges start after.
pub(crate) const RUN_EVENTS: i64 = 64;

/// How far back from a merge's end (in events) its start is looked for: a journal merged on
/// time has a long row within [`RUN_EVENTS`] events. Bounding it keeps a journal whose rows
/// never merge (its start written as JSON) from being read back to its start at each commit.
const LOOK_BACK: i64 = 4 * RUN_EVENTS;

/// The statement of [`Runs::merge`]: `$1` the instance ids, `$2` their executions, `$3` where
/// each journal ends (after the commit's own row), `$4` [`RUN_EVENTS`], `$5` [`LOOK_BACK`].
pub(crate) const MERGE: &str = "WITH wanted AS (
         SELECT w.id, w.execution, w.last,
                coalesce((SELECT e.position + e.span FROM events e
                           WHERE e.instance_id = w.id AND e.execution = w.execution
                             AND e.position < w.last AND e.position >= w.last - $5
                             AND e.span >= $4
                           ORDER BY e.position DESC LIMIT 1),
                         greatest(w.last - $5, 0)) AS first
           FROM unnest($1::text[], $2::int[], $3::int[]) AS w(id, execution, last)
     ), mergeable AS (
         SELECT w.* FROM wanted w
          WHERE (SELECT count(*) > 1 AND bool_and(e.encoded IS NOT NULL)
                        AND count(DISTINCT e.format) = 1
                        AND min(e.position) = w.first
                        AND sum(e.span) = w.last - w.first
                        AND max(e.position + e.span) = w.last
                   FROM events e
                  WHERE e.instance_id = w.id AND e.execution = w.execution
                    AND e.position >= w.first AND e.position < w.last)
     ), merged AS (
         DELETE FROM events e USING mergeable m
          WHERE e.instance_id = m.id AND e.execution = m.execution
            AND e.position >= m.first AND e.position < m.last
         RETURNING e.instance_id, e.execution, e.position, e.format, e.encoded, e.span
     )
     INSERT INTO events (instance_id, execution, position, format, encoded, span)
     SELECT instance_id, execution, min(position), min(format),
            string_agg(CASE WHEN span = 1 THEN event_length(length(encoded)) || encoded
                            ELSE encoded END,
                       ''::bytea ORDER BY position),
            sum(span)::integer
       FROM merged
      GROUP BY instance_id, execution";

/// Where `c`'s journal ends if its events reach past a multiple of [`RUN_EVENTS`] and its
/// execution goes on (a finished one is not read again by a turn): a merge is then due.
fn merge_end(c: &TurnCommit) -> Option<i32> {
    let n = c.new_events.len();
    if n == 0 || c.final_status().is_terminal() || c.continue_as_new.is_some() {
        return None;
    }
    let base = i64::try_from(c.journal_base).ok()?;
    let end = base.saturating_add(i64::try_from(n).ok()?);
    let end32 = i32::try_from(end).ok()?;
    (end / RUN_EVENTS > base / RUN_EVENTS).then_some(end32)
}

/// The journals of a commit batch due a merge.
#[derive(Default)]
pub(super) struct Runs {
    ids: Vec<String>,
    executions: Vec<i32>,
    ends: Vec<i32>,
}

impl Runs {
    /// Adds `c`'s journal if a merge is due ([`merge_end`]).
    pub(super) fn add(&mut self, c: &TurnCommit) {
        if let Some(end) = merge_end(c) {
            self.ids.push(c.instance_id.clone());
            self.executions.push(c.execution as i32);
            self.ends.push(end);
        }
    }

    /// Whether [`Runs::add`] would add `c`'s journal.
    pub(super) fn wants(c: &TurnCommit) -> bool {
        merge_end(c).is_some()
    }

    /// Merges the journals added, in the caller's transaction (after the batch's rows are
    /// written).
    pub(super) async fn merge(&self, conn: &mut PgConnection) -> OpResult<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(MERGE)
            .bind(&self.ids)
            .bind(&self.executions)
            .bind(&self.ends)
            .bind(RUN_EVENTS)
            .bind(LOOK_BACK)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use crate::testing::test_store;

    /// A length as the binary journal writes it: 7 bits a byte, low bits first.
    fn varint(mut n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// `event_length` (migration 0019), which frames a merged row's single events, writes a
    /// length as the binary journal does, at every width up to the largest `bytea`.
    #[tokio::test]
    async fn event_length_writes_lengths_as_the_binary_journal_does() {
        let store = test_store("dft_event_length").await.unwrap();
        let mut lengths: Vec<i32> = (0..300).collect();
        for bits in 7..31 {
            let edge = 1i32 << bits;
            lengths.extend([edge - 1, edge, edge + 1]);
        }
        lengths.push(i32::MAX);
        let written: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT event_length(n) FROM unnest($1::int[]) WITH ORDINALITY AS l(n, i) ORDER BY i",
        )
        .bind(&lengths)
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(written.len(), lengths.len());
        for (n, bytes) in lengths.iter().zip(&written) {
            assert_eq!(bytes, &varint(*n as u64), "the length {n}");
        }
    }
}
