//! Deterministic operation ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of a durable operation within one execution: the id of the scope it was created in plus
/// its sequence number within that scope, written `3` for the fourth operation of the root scope
/// and `3.1` for the second operation inside scope `3`.
///
/// Ids depend only on where in the code an operation is created, never on the order in which
/// concurrent work finishes, so concurrent branches get the same ids on every replay.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(Vec<u32>);

impl OpId {
    /// The id of operation `seq` inside `scope` (`None` for the root scope).
    pub fn new(scope: Option<&OpId>, seq: u32) -> Self {
        let mut path = scope.map(|s| s.0.clone()).unwrap_or_default();
        path.push(seq);
        OpId(path)
    }

    /// The id with this path of sequence numbers (`[3, 1]` is `3.1`).
    pub fn from_path(path: &[u32]) -> Self {
        OpId(path.to_vec())
    }

    /// The path of sequence numbers from the root scope.
    pub fn path(&self) -> &[u32] {
        &self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seq) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{seq}")?;
        }
        Ok(())
    }
}

/// An operation id string was not of the form `1.2.3`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid operation id {0:?}: expected dot-separated numbers such as \"3\" or \"3.1\"")]
pub struct OpIdParseError(String);

impl FromStr for OpId {
    type Err = OpIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(OpIdParseError(s.to_owned()));
        }
        s.split('.')
            .map(|p| p.parse::<u32>().map_err(|_| OpIdParseError(s.to_owned())))
            .collect::<Result<Vec<_>, _>>()
            .map(OpId)
    }
}

impl Serialize for OpId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OpId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let root = OpId::new(None, 3);
        let child = OpId::new(Some(&root), 1);
        assert_eq!(root.to_string(), "3");
        assert_eq!(child.to_string(), "3.1");
        assert_eq!("3.1".parse::<OpId>().unwrap(), child);
        assert!("3..1".parse::<OpId>().is_err());
        assert!("".parse::<OpId>().is_err());
        let json = serde_json::to_string(&child).unwrap();
        assert_eq!(json, "\"3.1\"");
        assert_eq!(serde_json::from_str::<OpId>(&json).unwrap(), child);
    }
}
