//! Encoding of values into columns: JSON for structured values, integers for times.

use std::fmt::Display;

use duraflow_core::{Failure, InstanceOptions, OpId, ParentLink, Payload, Timestamp};
use duraflow_store::{codec, FetchFilter, InstanceInfo, InstanceStatus, StoreError};
use rusqlite::Row;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{OpError, SqlResult};

/// Encodes a value as JSON text.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> SqlResult<String> {
    Ok(codec::to_json(value)?)
}

/// Decodes JSON text, naming what it was on failure.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str, what: impl Display) -> SqlResult<T> {
    Ok(codec::from_json(text, what)?)
}

/// Decodes an optional JSON column.
pub(crate) fn opt_json<T: DeserializeOwned>(
    text: Option<String>,
    what: impl Display,
) -> SqlResult<Option<T>> {
    Ok(codec::opt_from_json(text, what)?)
}

/// A payload column.
pub(crate) fn payload(text: String, what: impl Display) -> SqlResult<Payload> {
    Ok(codec::payload(text, what)?)
}

/// An operation id column.
pub(crate) fn op_id(text: &str, what: impl Display) -> SqlResult<OpId> {
    Ok(codec::op_id(text, what)?)
}

/// A status column; `what` names the row.
pub(crate) fn status(text: &str, what: impl Display) -> SqlResult<InstanceStatus> {
    text.parse::<InstanceStatus>()
        .map_err(|e| OpError::Store(codec::corrupt_in(what, e)))
}

/// Reports a column value of the wrong type or out of range, met while reading the row that
/// `what` names, as corrupt data in that row: SQLite keeps whatever was written, so a row changed
/// outside duraflow can hold a text where a number belongs.
pub(crate) fn in_row<T>(
    what: impl FnOnce() -> String,
    read: impl FnOnce() -> SqlResult<T>,
) -> SqlResult<T> {
    read().map_err(|e| match e {
        OpError::Sql(
            e @ (rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(..)),
        ) => OpError::Store(StoreError::Corrupt(format!(
            "{} cannot be read: {e}",
            what()
        ))),
        other => other,
    })
}

/// The columns [`instance_row`] reads, in order.
pub(crate) const INSTANCE_COLUMNS: &str =
    "id, name, status, execution, input, output, failure, parent, created_at, updated_at, queue, \
     options, attempt, version";

/// Reads an instance from a row selected with [`INSTANCE_COLUMNS`].
pub(crate) fn instance_row(row: &Row<'_>) -> SqlResult<InstanceInfo> {
    let id: String = in_row(
        || "the id of an instance row".to_owned(),
        || Ok(row.get(0)?),
    )?;
    in_row(
        || format!("instance {id:?}"),
        || instance_columns(row, id.clone()),
    )
}

fn instance_columns(row: &Row<'_>, id: String) -> SqlResult<InstanceInfo> {
    // Named only when a column cannot be read: a row is read at every lease.
    let what = |col| codec::Column::new(col, "instance", &id);
    Ok(InstanceInfo {
        name: row.get(1)?,
        status: status(&row.get::<_, String>(2)?, what("status"))?,
        execution: row.get(3)?,
        input: payload(row.get(4)?, what("input"))?,
        output: row
            .get::<_, Option<String>>(5)?
            .map(|t| payload(t, what("output")))
            .transpose()?,
        failure: opt_json::<Failure>(row.get(6)?, what("failure"))?,
        parent: opt_json::<ParentLink>(row.get(7)?, what("parent"))?,
        created_at: Timestamp(row.get(8)?),
        updated_at: Timestamp(row.get(9)?),
        queue: row.get(10)?,
        options: opt_json::<InstanceOptions>(row.get(11)?, what("options"))?.unwrap_or_default(),
        attempt: row.get(12)?,
        version: row.get(13)?,
        journal_len: None,
        last_event_at: None,
        id,
    })
}

/// A fetch filter as query parameters: its queues, each once (a fetch reads each queue's due
/// work in order from the `(queue, due)` index, and merges), and its names as a JSON array read
/// with `json_each` (NULL for every name).
pub(crate) fn filter_params(filter: &FetchFilter) -> SqlResult<(Vec<&str>, Option<String>)> {
    let mut queues: Vec<&str> = filter.queues.iter().map(String::as_str).collect();
    queues.sort_unstable();
    queues.dedup();
    Ok((queues, filter.names.as_ref().map(json).transpose()?))
}
