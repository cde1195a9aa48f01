//! Merging a journal's rows into runs, by the rule of [`journal_runs`].
//!
//! The events table is keyed by instance, execution and position, so a journal's rows lie
//! together; still, a cold turn of a workflow of 10,000 steps stepped through 10,001 rows, and
//! that stepping and the reading of each row's columns was a third of reading the journal. The
//! merge runs on the writer, in the commit's transaction, after the commit's own row is
//! written: it reads the rows since the journal's last long row, and when they may merge
//! ([`journal_runs::merged_row`]) replaces them with one.

use duraflow_store::{journal_runs, TurnCommit};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::SqlResult;

/// Where the rows to merge begin: right after the last long row that begins within
/// [`journal_runs::LOOK_BACK`] events of the end (`?3`), or at that window's start (`?4`).
const MERGE_START: &str = "SELECT position + span FROM events
     WHERE instance_id = ?1 AND execution = ?2 AND position < ?3 AND position >= ?4
       AND typeof(span) = 'integer' AND span >= ?5
     ORDER BY position DESC LIMIT 1";

/// The rows from `?3` to the end `?4`, in order.
const MERGE_ROWS: &str = "SELECT position, span, format, data FROM events
     WHERE instance_id = ?1 AND execution = ?2 AND position >= ?3 AND position < ?4
     ORDER BY position";

/// Merges `c`'s journal rows since its last long row into one, if `c` reaches past a multiple
/// of [`journal_runs::RUN_EVENTS`] ([`journal_runs::merge_end`]) and the rows may merge.
/// Returns whether it merged.
pub(crate) fn merge(conn: &Connection, c: &TurnCommit, execution: u32) -> SqlResult<bool> {
    let Some(end) = journal_runs::merge_end(c) else {
        return Ok(false);
    };
    let id = c.instance_id.as_str();
    let window = journal_runs::look_back_from(end);
    let first: Option<i64> = conn
        .prepare_cached(MERGE_START)?
        .query_row(
            params![
                id,
                execution,
                end as i64,
                window as i64,
                journal_runs::RUN_EVENTS as i64
            ],
            |r| r.get(0),
        )
        .optional()?;
    let first = match first.map(usize::try_from) {
        None => window,
        Some(Ok(first)) if first < end => first,
        // The last long row ends at (or past) the end: nothing after it to merge.
        Some(_) => return Ok(false),
    };
    let merged = {
        let mut stmt = conn.prepare_cached(MERGE_ROWS)?;
        let mut rows = stmt.query(params![id, execution, first as i64, end as i64])?;
        let mut stored: Vec<(i64, i64, i64, Option<Vec<u8>>)> = Vec::new();
        while let Some(row) = rows.next()? {
            let int = |i: usize| match row.get_ref(i) {
                Ok(ValueRef::Integer(n)) => Some(n),
                _ => None,
            };
            // A row whose columns are not what a commit writes is left for the reader to
            // report; the journal then keeps its rows.
            let (Some(position), Some(span), Some(format)) = (int(0), int(1), int(2)) else {
                return Ok(false);
            };
            let binary = match row.get_ref(3)? {
                ValueRef::Blob(bytes) => Some(bytes.to_vec()),
                _ => None,
            };
            stored.push((position, span, format, binary));
        }
        let rows: Vec<journal_runs::MergeRow<'_>> = stored
            .iter()
            .map(|(position, span, format, binary)| journal_runs::MergeRow {
                position: *position,
                span: *span,
                format: *format,
                binary: binary.as_deref(),
            })
            .collect();
        journal_runs::merged_row(&rows, first, end)
    };
    let Some((data, format)) = merged else {
        return Ok(false);
    };
    conn.prepare_cached(
        "DELETE FROM events
          WHERE instance_id = ?1 AND execution = ?2 AND position >= ?3 AND position < ?4",
    )?
    .execute(params![id, execution, first as i64, end as i64])?;
    super::turns::insert_row(
        conn,
        (id, execution, first as i64),
        format,
        &data,
        (end - first) as i64,
    )?;
    Ok(true)
}
