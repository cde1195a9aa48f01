//! Serialised values passed between workflows, activities and the store.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON-encoded value: a workflow's input or output, an activity's input or output, an event's
/// data.
///
/// Payloads are kept encoded end to end; they are decoded only where a typed value is needed, so a
/// value that does not fit the expected type is reported where it is used, with what was expected.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<RawValue>);

/// A value could not be encoded to or decoded from a [`Payload`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

impl Payload {
    /// Encodes a value as JSON.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        serde_json::value::to_raw_value(value)
            .map(Payload)
            .map_err(|e| PayloadError(e.to_string()))
    }

    /// Decodes the JSON into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        serde_json::from_str(self.0.get()).map_err(|e| {
            PayloadError(format!(
                "cannot decode {} into {}: {e}",
                preview(self.0.get()),
                std::any::type_name::<T>()
            ))
        })
    }

    /// Parses JSON text into a payload, checking that it is well-formed.
    pub fn from_json(json: &str) -> Result<Self, PayloadError> {
        RawValue::from_string(json.to_owned())
            .map(Payload)
            .map_err(|e| PayloadError(format!("not valid JSON ({e}): {}", preview(json))))
    }

    /// The JSON `null` payload (the encoding of `()`).
    pub fn null() -> Self {
        Self::from_json("null").unwrap_or_else(|_| unreachable!("null is valid JSON"))
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }
}

fn preview(json: &str) -> String {
    const MAX: usize = 80;
    if json.len() <= MAX {
        json.to_owned()
    } else {
        let mut end = MAX;
        while !json.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &json[..end])
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_type_mismatch() {
        let p = Payload::encode(&vec![1, 2, 3]).unwrap();
        assert_eq!(p.as_json(), "[1,2,3]");
        assert_eq!(p.decode::<Vec<u32>>().unwrap(), vec![1, 2, 3]);
        let err = p.decode::<String>().unwrap_err();
        assert!(err.0.contains("alloc::string::String"), "{err}");
        assert!(Payload::from_json("{not json").is_err());
        assert_eq!(Payload::null().as_json(), "null");
    }
}
