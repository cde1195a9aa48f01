//! Column encodings shared by the SQL stores: JSON text for structured values, with decoding
//! errors that name what could not be read.

use std::fmt::{self, Display};

use duraflow_core::{Event, EventData, EventDecodeError, OpId, Payload, Timestamp};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StoreError;
use crate::registry::RegisteredKind;

/// A column of a row, named in an error only if it cannot be read (`column input of
/// instance "a"`): rows are decoded on the hot path, where formatting every column's name
/// up front would cost more than reading it.
#[derive(Clone, Copy, Debug)]
pub struct Column<'a> {
    column: &'a str,
    row: &'a str,
    id: &'a dyn fmt::Debug,
}

impl<'a> Column<'a> {
    /// Column `column` of the `row` (a kind of row: `instance`, `task`) with id `id`.
    pub fn new(column: &'a str, row: &'a str, id: &'a dyn fmt::Debug) -> Self {
        Column { column, row, id }
    }
}

impl Display for Column<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {} of {} {:?}", self.column, self.row, self.id)
    }
}

/// Encodes a value as JSON text.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("cannot encode a value: {e}")))
}

/// Decodes JSON text; `what` names the value in the error (`column failure of instance "a"`).
pub fn from_json<T: DeserializeOwned>(text: &str, what: impl Display) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{what} cannot be read: {e}")))
}

/// Decodes an optional JSON column.
pub fn opt_from_json<T: DeserializeOwned>(
    text: Option<String>,
    what: impl Display,
) -> Result<Option<T>, StoreError> {
    text.map(|t| from_json(&t, what)).transpose()
}

/// Decodes a payload column.
pub fn payload(text: String, what: impl Display) -> Result<Payload, StoreError> {
    Payload::from_json(&text)
        .map_err(|e| StoreError::Corrupt(format!("{what} cannot be read: {e}")))
}

/// Reports an error met reading `what` as corrupt data in it (an unknown status is not an
/// invalid request when it was read from the database).
pub fn corrupt_in(what: impl Display, error: StoreError) -> StoreError {
    let detail = match error {
        StoreError::Invalid(detail) | StoreError::Corrupt(detail) => detail,
        other => other.to_string(),
    };
    StoreError::Corrupt(format!("{what} cannot be read: {detail}"))
}

/// Decodes an operation id column; `what` names the value in the error.
pub fn op_id(text: &str, what: impl Display) -> Result<OpId, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} cannot be read: {e}")))
}

/// Decodes the journal row read at index `index` of an execution's rows in position order: its
/// stored `position` (positions are dense from 0, so it must equal `index`), its `format`
/// version and its `data` (JSON text, or the binary encoding from journal format 4 on).
pub fn journal_event(
    index: usize,
    position: i64,
    format: i64,
    data: EventData<'_>,
) -> Result<Event, EventDecodeError> {
    let format = journal_row(index, position, format)?;
    Event::decode_stored(data, format)
}

/// The stored event data of a journal row holding `events` (a commit's events of one
/// execution, at least one; the row's span is their count): a single event in the binary
/// encoding, or several as one run of them ([`Event::encode_binary_run`]).
/// [`journal_row_events`] reads it back.
pub fn journal_row_data(events: &[Event]) -> Vec<u8> {
    match events {
        [one] => one.encode_binary(),
        several => Event::encode_binary_run(several),
    }
}

/// Decodes a journal row holding `span` events (a commit's events stored together, or one)
/// whose first is expected at position `index`, appending them to `out`: its `position` and
/// `format` are checked as [`journal_event`] checks them, and several events must be one run
/// in the binary encoding ([`Event::decode_binary_run`]). On failure, the position of the
/// first event that cannot be read (those before it in the row are appended), and why.
pub fn journal_row_events(
    index: usize,
    position: i64,
    format: i64,
    span: i64,
    data: EventData<'_>,
    out: &mut Vec<Event>,
) -> Result<(), (usize, EventDecodeError)> {
    let corrupt = |e: String| (index, EventDecodeError::Corrupt(e));
    let span = match usize::try_from(span) {
        Ok(1) => {
            return journal_event(index, position, format, data)
                .map(|e| out.push(e))
                .map_err(|e| (index, e))
        }
        Ok(n) if n > 1 && span <= i64::from(u32::MAX) => n,
        _ => {
            return Err(corrupt(format!(
                "the row's span {span} is not a count of events"
            )))
        }
    };
    let format = journal_row(index, position, format).map_err(|e| (index, e))?;
    let EventData::Binary(bytes) = data else {
        return Err(corrupt(format!(
            "a row of {span} events is stored as JSON text, not as encoded events"
        )));
    };
    Event::decode_binary_run(bytes, span, format, out).map_err(|(i, e)| (index + i, e))
}

/// Checks the `position` and `format` of the journal row read at index `index` (see
/// [`journal_event`]); returns the format version.
pub fn journal_row(index: usize, position: i64, format: i64) -> Result<u32, EventDecodeError> {
    let corrupt = EventDecodeError::Corrupt;
    match usize::try_from(position) {
        Ok(p) if p == index => {}
        Ok(p) if p > index => {
            return Err(corrupt(format!(
                "no event is stored at this position (the next one is at position {p})"
            )))
        }
        _ => {
            return Err(corrupt(format!(
                "an event is stored at position {position}, which is not a journal position"
            )))
        }
    }
    u32::try_from(format)
        .map_err(|_| corrupt(format!("format version {format} is not a version number")))
}

/// The length a journal whose rows are at `positions` with `spans` events each has for
/// appending: one past the last event of the row at the highest position (a corrupt journal
/// is failed by appending after everything it holds). A span that is not a count of events
/// counts as one, as the SQL stores' own computations of a journal's length count it.
pub fn journal_len(rows: impl IntoIterator<Item = (i64, i64)>) -> usize {
    rows.into_iter()
        .max_by_key(|(position, _)| *position)
        .and_then(|(position, span)| {
            let span = if (1..=i64::from(i32::MAX)).contains(&span) {
                span
            } else {
                1
            };
            usize::try_from(position.saturating_add(span)).ok()
        })
        .unwrap_or(0)
}

/// The kind of a stored registration, read from its column.
pub fn registered_kind(text: &str) -> Result<RegisteredKind, StoreError> {
    RegisteredKind::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("registration of unknown kind {text:?}")))
}

/// The journal length and last event time [`crate::InstanceInfo`] describes, from the last
/// journal row of execution `execution` of instance `id` (its position and time; `None` for an
/// empty journal). A last event without a time is corrupt.
pub fn journal_end(
    id: &str,
    execution: u32,
    last: Option<(i64, Option<i64>)>,
) -> Result<(u64, Option<Timestamp>), StoreError> {
    let Some((position, at)) = last else {
        return Ok((0, None));
    };
    let at = at.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "event {position} of execution {execution} of instance {id:?} has no time"
        ))
    })?;
    let len = u64::try_from(position).map_or(0, |p| p.saturating_add(1));
    Ok((len, Some(Timestamp(at))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use duraflow_core::JOURNAL_FORMAT_VERSION;

    #[test]
    fn journal_rows_are_checked_for_position_and_format() {
        let ev = Event {
            at: duraflow_core::Timestamp(1),
            kind: duraflow_core::EventKind::TimerFired {
                op: OpId::new(None, 0),
            },
        };
        let text = ev.encode();
        let data = EventData::Json(&text);
        assert_eq!(journal_event(2, 2, 1, data), Ok(ev.clone()));
        let bytes = ev.encode_binary();
        let binary = EventData::Binary(&bytes);
        assert_eq!(
            journal_event(2, 2, JOURNAL_FORMAT_VERSION as i64, binary),
            Ok(ev.clone())
        );
        assert!(journal_event(0, 0, 3, binary)
            .unwrap_err()
            .to_string()
            .contains("from before the binary encoding"));
        let err = |r: Result<Event, EventDecodeError>| r.unwrap_err().to_string();
        assert!(err(journal_event(1, 3, 1, data)).contains("the next one is at position 3"));
        assert!(err(journal_event(0, -1, 1, data)).contains("position -1, which is not"));
        assert!(err(journal_event(0, 0, -1, data)).contains("format version -1 is not"));
        assert!(
            err(journal_event(0, 0, JOURNAL_FORMAT_VERSION as i64 + 1, data))
                .contains("upgrade duraflow")
        );
        assert!(
            err(journal_event(0, 0, 1, EventData::Json("{"))).starts_with("corrupt journal event")
        );
        // A row of one event and a row of several read back from where they start.
        let three = vec![ev.clone(), ev.clone(), ev.clone()];
        let version = JOURNAL_FORMAT_VERSION as i64;
        let mut out = Vec::new();
        let one = journal_row_data(&three[..1]);
        journal_row_events(0, 0, version, 1, EventData::Binary(&one), &mut out).unwrap();
        let several = journal_row_data(&three);
        journal_row_events(1, 1, version, 3, EventData::Binary(&several), &mut out).unwrap();
        assert_eq!(out.len(), 4);
        // A span that does not match the row names the first missing event.
        let (at, _) = journal_row_events(
            4,
            4,
            version,
            4,
            EventData::Binary(&several),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(at, 7);
        let (at, err) = journal_row_events(
            4,
            4,
            version,
            0,
            EventData::Binary(&several),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(at == 4 && err.to_string().contains("span 0"), "{err}");
        assert_eq!(journal_len([(0, 1), (1, 1), (5, 1)]), 6);
        assert_eq!(journal_len([(0, 1), (5, 3), (2, 2)]), 8);
        assert_eq!(journal_len([(0, 1), (5, -3)]), 6);
        assert_eq!(journal_len([(-4, 1)]), 0);
        assert_eq!(journal_len([]), 0);
    }

    #[test]
    fn the_journal_end_needs_the_last_event_time() {
        assert_eq!(journal_end("a", 1, None), Ok((0, None)));
        assert_eq!(
            journal_end("a", 1, Some((4, Some(9)))),
            Ok((5, Some(duraflow_core::Timestamp(9))))
        );
        let err = journal_end("a", 2, Some((4, None)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("event 4 of execution 2 of instance \"a\" has no time"));
    }
}
