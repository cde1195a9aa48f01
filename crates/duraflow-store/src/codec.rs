//! Column encodings shared by the SQL stores: JSON text for structured values, with decoding
//! errors that name what could not be read.

use duraflow_core::{OpId, Payload};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StoreError;

/// Encodes a value as JSON text.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("cannot encode a value: {e}")))
}

/// Decodes JSON text; `what` names the value in the error (`column failure of instance "a"`).
pub fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{what} cannot be read: {e}")))
}

/// Decodes an optional JSON column.
pub fn opt_from_json<T: DeserializeOwned>(
    text: Option<String>,
    what: &str,
) -> Result<Option<T>, StoreError> {
    text.map(|t| from_json(&t, what)).transpose()
}

/// Decodes a payload column.
pub fn payload(text: String, what: &str) -> Result<Payload, StoreError> {
    Payload::from_json(&text)
        .map_err(|e| StoreError::Corrupt(format!("{what} cannot be read: {e}")))
}

/// Decodes an operation id column; `what` names the value in the error.
pub fn op_id(text: &str, what: &str) -> Result<OpId, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} cannot be read: {e}")))
}
