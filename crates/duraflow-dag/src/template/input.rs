//! Where a step's input fields come from: the run's input or an upstream step's result.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A reference to a value a step receives as one of its input fields.
///
/// Written as a string in templates:
///
/// | string | meaning |
/// |---|---|
/// | `$.input` | the run's whole input |
/// | `$.input.order.id` | the field `order.id` of the run's input |
/// | `$.steps.charge.result` | the whole result of the step `charge` |
/// | `$.steps.charge.result.receipt` | the field `receipt` of that result |
///
/// A path segment made of digits indexes an array (`$.input.items.0`). A step may only read
/// the result of a step it depends on, directly or transitively (checked by validation).
///
/// ```
/// use duraflow_dag::InputRef;
///
/// let r: InputRef = "$.steps.charge.result.receipt".parse().unwrap();
/// assert_eq!(r.step(), Some("charge"));
/// let result = serde_json::json!({"receipt": "r-1"});
/// assert_eq!(r.select(&result), Some(&serde_json::json!("r-1")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum InputRef {
    /// A value from the run's input, at `path` (empty for the whole input).
    Input {
        /// The field path inside the input.
        path: Vec<String>,
    },
    /// A value from the result of the upstream step `step`, at `path` (empty for all of it).
    StepResult {
        /// The upstream step's name.
        step: String,
        /// The field path inside its result.
        path: Vec<String>,
    },
}

/// A string that is not a valid [`InputRef`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not an input reference: write `$.input[.field...]` or \
     `$.steps.<step>.result[.field...]`"
)]
pub struct InputRefError {
    /// The string that was given.
    pub text: String,
}

impl InputRef {
    /// The run's input at `path` (a dotted path; empty for the whole input).
    pub fn input(path: &str) -> Self {
        InputRef::Input {
            path: split_path(path),
        }
    }

    /// The result of `step` at `path` (a dotted path; empty for the whole result).
    pub fn step_result(step: impl Into<String>, path: &str) -> Self {
        InputRef::StepResult {
            step: step.into(),
            path: split_path(path),
        }
    }

    /// The upstream step this reads from, if it reads a step's result.
    pub fn step(&self) -> Option<&str> {
        match self {
            InputRef::Input { .. } => None,
            InputRef::StepResult { step, .. } => Some(step),
        }
    }

    /// The field path inside the source value.
    pub fn path(&self) -> &[String] {
        match self {
            InputRef::Input { path } | InputRef::StepResult { path, .. } => path,
        }
    }

    /// Follows [`path`](Self::path) inside `source` (the run's input or the step's result).
    pub fn select<'v>(&self, source: &'v Value) -> Option<&'v Value> {
        self.path().iter().try_fold(source, |v, seg| match v {
            Value::Object(map) => map.get(seg),
            Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }
}

fn split_path(path: &str) -> Vec<String> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl std::str::FromStr for InputRef {
    type Err = InputRefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || InputRefError { text: text.into() };
        let segs: Vec<&str> = text.split('.').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(err());
        }
        let owned = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect();
        match segs.as_slice() {
            ["$", "input", rest @ ..] => Ok(InputRef::Input { path: owned(rest) }),
            ["$", "steps", step, "result", rest @ ..] => Ok(InputRef::StepResult {
                step: (*step).to_owned(),
                path: owned(rest),
            }),
            _ => Err(err()),
        }
    }
}

impl TryFrom<String> for InputRef {
    type Error = InputRefError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<InputRef> for String {
    fn from(r: InputRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputRef::Input { .. } => f.write_str("$.input")?,
            InputRef::StepResult { step, .. } => write!(f, "$.steps.{step}.result")?,
        }
        self.path().iter().try_for_each(|seg| write!(f, ".{seg}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for text in [
            "$.input",
            "$.input.order.id",
            "$.steps.charge.result",
            "$.steps.charge.result.items.0",
        ] {
            let r: InputRef = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
        }
        for bad in [
            "",
            "$",
            "input.x",
            "$.steps.charge",
            "$.steps.a.output",
            "$.input..x",
        ] {
            let e = bad.parse::<InputRef>().unwrap_err();
            assert!(e.to_string().contains("$.input"), "{e}");
        }
    }

    #[test]
    fn selects_through_objects_and_arrays() {
        let v = serde_json::json!({"items": [{"sku": "a"}]});
        assert_eq!(
            InputRef::input("items.0.sku").select(&v),
            Some(&serde_json::json!("a"))
        );
        assert_eq!(InputRef::input("items.x").select(&v), None);
        assert_eq!(InputRef::input("").select(&v), Some(&v));
    }
}
