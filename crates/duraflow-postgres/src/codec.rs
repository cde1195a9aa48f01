//! Reading rows into the store's types.

use duraflow_core::{Failure, InstanceOptions, ParentLink, Timestamp};
use duraflow_store::{codec, InstanceInfo, StoreError};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::OpResult;

/// The columns [`instance_row`] reads.
pub(crate) const INSTANCE_COLUMNS: &str =
    "id, name, status, execution, input, output, failure, parent, created_at, updated_at, queue, \
     options, attempt, version";

/// Reads an instance from a row selected with [`INSTANCE_COLUMNS`].
pub(crate) fn instance_row(row: &PgRow) -> OpResult<InstanceInfo> {
    let id: String = row.try_get("id")?;
    let what = |col| codec::Column::new(col, "instance", &id);
    let status: String = row.try_get("status")?;
    let execution: i32 = row.try_get("execution")?;
    Ok(InstanceInfo {
        name: row.try_get("name")?,
        status: status
            .parse()
            .map_err(|e| codec::corrupt_in(what("status"), e))?,
        execution: counter(execution, what("execution"))?,
        input: codec::payload(row.try_get("input")?, what("input"))?,
        output: row
            .try_get::<Option<String>, _>("output")?
            .map(|t| codec::payload(t, what("output")))
            .transpose()?,
        failure: codec::opt_from_json::<Failure>(row.try_get("failure")?, what("failure"))?,
        parent: codec::opt_from_json::<ParentLink>(row.try_get("parent")?, what("parent"))?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        queue: row.try_get("queue")?,
        options: codec::opt_from_json::<InstanceOptions>(row.try_get("options")?, what("options"))?
            .unwrap_or_default(),
        attempt: counter(row.try_get("attempt")?, what("attempt"))?,
        version: row.try_get("version")?,
        journal_len: None,
        last_event_at: None,
        id,
    })
}

/// A counter column (an execution, an attempt), which is never negative.
pub(crate) fn counter(value: i32, what: impl std::fmt::Display) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{what} cannot be read: {value} is negative")))
}
