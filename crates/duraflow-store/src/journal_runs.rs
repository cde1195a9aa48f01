//! A journal's rows merged into runs: the rule the SQL stores share.
//!
//! A commit appends its events to its execution's journal as one row, so a workflow of 10,000
//! steps, each committed on its own, leaves 10,001 rows, and a cold turn, which reads the whole
//! journal, steps through every one of them. So every [`RUN_EVENTS`] events, the commit whose
//! events reach past the next multiple of it also merges the rows written since the journal's
//! last long row (a run of at least [`RUN_EVENTS`] events, merged or committed so) into one
//! row: the same events at the same positions, one run of their binary encodings, each behind
//! its length ([`duraflow_core::Event::encode_binary_run`]), which every reader already
//! decodes. A store runs the merge in the commit's transaction, after the commit's own row is
//! written, while the instance is locked; it changes nothing unless the rows it would take are
//! all binary rows of one journal format that exactly cover the range from the last long row
//! to the commit's end (a journal begun before the binary encoding keeps its rows).

use duraflow_core::Event;

use crate::TurnCommit;

/// Events between two merges of a journal's rows, and the fewest events a row must hold to
/// count as a run that later merges start after.
pub const RUN_EVENTS: usize = 64;

/// How far back from a merge's end (in events) its start is looked for: a journal merged on
/// time has a long row within [`RUN_EVENTS`] events. Bounding it keeps a journal whose rows
/// never merge (its start written as JSON) from being read back to its start at each commit.
pub const LOOK_BACK: usize = 4 * RUN_EVENTS;

/// Where `c`'s journal ends if its events reach past a multiple of [`RUN_EVENTS`] and its
/// execution goes on (a finished one is not read again by a turn): a merge is then due.
pub fn merge_end(c: &TurnCommit) -> Option<usize> {
    let n = c.new_events.len();
    if n == 0 || c.final_status().is_terminal() || c.continue_as_new.is_some() {
        return None;
    }
    let end = c.journal_base.checked_add(n)?;
    (end / RUN_EVENTS > c.journal_base / RUN_EVENTS).then_some(end)
}

/// Where a merge ending at `end` looks for its start: from `end` back [`LOOK_BACK`] events
/// (not before the journal's start). The merge starts right after the last long row that
/// begins in that window, or at the window's start when there is none.
pub fn look_back_from(end: usize) -> usize {
    end.saturating_sub(LOOK_BACK)
}

/// One stored row a merge would take: where it begins, how many events it holds, its journal
/// format, and its data (`None` when the row is not stored in the binary encoding).
#[derive(Clone, Copy, Debug)]
pub struct MergeRow<'a> {
    /// The position of its first event.
    pub position: i64,
    /// How many events it holds.
    pub span: i64,
    /// The journal format it was written in.
    pub format: i64,
    /// Its binary data, or `None` for a row stored as JSON text.
    pub binary: Option<&'a [u8]>,
}

/// The data of one row holding `rows` (ordered by position), which must exactly cover the
/// positions `first..end`, be at least two, all binary and all of one format: the run their
/// events make, and that format. `None` when they are not so, and the rows must then stay.
pub fn merged_row(rows: &[MergeRow<'_>], first: usize, end: usize) -> Option<(Vec<u8>, i64)> {
    let format = rows.first()?.format;
    if rows.len() < 2 {
        return None;
    }
    let mut next = i64::try_from(first).ok()?;
    let mut run = Vec::with_capacity(
        rows.iter()
            .filter_map(|r| r.binary)
            .map(<[u8]>::len)
            .sum::<usize>()
            + rows.len() * 2,
    );
    for row in rows {
        let data = row.binary?;
        if row.position != next || row.format != format || row.span < 1 {
            return None;
        }
        if row.span == 1 {
            Event::push_to_binary_run(&mut run, data);
        } else {
            run.extend_from_slice(data);
        }
        next = next.checked_add(row.span)?;
    }
    (next == i64::try_from(end).ok()?).then_some((run, format))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use duraflow_core::{EventKind, OpId, Payload, Timestamp, JOURNAL_FORMAT_VERSION};

    use super::*;

    fn step(i: u32) -> Event {
        Event {
            at: Timestamp(i64::from(i)),
            kind: EventKind::StepCompleted {
                op: OpId::new(None, i),
                output: Payload::encode(&i).unwrap(),
            },
        }
    }

    /// Rows of one event and rows of several merge into the run of all their events, which
    /// decodes back to them in order.
    #[test]
    fn rows_that_tile_the_range_merge_into_one_run() {
        let events: Vec<Event> = (0..5).map(step).collect();
        let one = events[0].encode_binary();
        let three = Event::encode_binary_run(&events[1..4]);
        let last = events[4].encode_binary();
        let format = i64::from(JOURNAL_FORMAT_VERSION);
        let rows = [
            MergeRow {
                position: 10,
                span: 1,
                format,
                binary: Some(&one),
            },
            MergeRow {
                position: 11,
                span: 3,
                format,
                binary: Some(&three),
            },
            MergeRow {
                position: 14,
                span: 1,
                format,
                binary: Some(&last),
            },
        ];
        let (run, f) = merged_row(&rows, 10, 15).unwrap();
        assert_eq!(f, format);
        assert_eq!(run, Event::encode_binary_run(&events));
        let mut out = Vec::new();
        Event::decode_binary_run(&run, 5, JOURNAL_FORMAT_VERSION, &mut out).unwrap();
        assert_eq!(out, events);
    }

    /// Nothing merges unless the rows are binary, of one format, at least two, and cover the
    /// range exactly.
    #[test]
    fn rows_that_do_not_tile_the_range_stay() {
        let a = step(0).encode_binary();
        let b = step(1).encode_binary();
        let format = i64::from(JOURNAL_FORMAT_VERSION);
        let row = |position, binary| MergeRow {
            position,
            span: 1,
            format,
            binary,
        };
        assert!(merged_row(&[row(0, Some(&a)), row(1, Some(&b))], 0, 2).is_some());
        assert!(merged_row(&[row(0, Some(&a))], 0, 1).is_none(), "one row");
        assert!(merged_row(&[], 0, 0).is_none());
        assert!(
            merged_row(&[row(0, Some(&a)), row(1, None)], 0, 2).is_none(),
            "JSON"
        );
        assert!(
            merged_row(&[row(0, Some(&a)), row(2, Some(&b))], 0, 3).is_none(),
            "a gap"
        );
        assert!(
            merged_row(&[row(1, Some(&a)), row(2, Some(&b))], 0, 3).is_none(),
            "a late start"
        );
        assert!(
            merged_row(&[row(0, Some(&a)), row(1, Some(&b))], 0, 3).is_none(),
            "a short end"
        );
        let other = MergeRow {
            format: format - 1,
            ..row(1, Some(&b))
        };
        assert!(
            merged_row(&[row(0, Some(&a)), other], 0, 2).is_none(),
            "two formats"
        );
    }
}
