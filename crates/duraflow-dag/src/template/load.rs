//! Reading templates from YAML and JSON text and files.

use std::path::{Path, PathBuf};

use super::Template;

/// Why a template could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read template file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not a valid YAML template.
    #[error("{origin}: not a valid YAML template: {source}")]
    Yaml {
        /// The file, or `<string>`.
        origin: String,
        /// The parser's error (it names the line and column).
        source: serde_norway::Error,
    },
    /// The text is not a valid JSON template.
    #[error("{origin}: not a valid JSON template: {source}")]
    Json {
        /// The file, or `<string>`.
        origin: String,
        /// The parser's error (it names the line and column).
        source: serde_json::Error,
    },
    /// The file name ends in neither `.yaml`, `.yml` nor `.json`.
    #[error("{path}: unknown template format; name the file *.yaml, *.yml or *.json")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
}

/// Parses a template from YAML text.
pub fn from_yaml_str(text: &str) -> Result<Template, LoadError> {
    yaml(text, "<string>")
}

/// Parses a template from JSON text.
pub fn from_json_str(text: &str) -> Result<Template, LoadError> {
    json(text, "<string>")
}

/// Reads a template file, YAML (`.yaml`, `.yml`) or JSON (`.json`) by its extension.
pub fn from_path(path: impl AsRef<Path>) -> Result<Template, LoadError> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let is_yaml = match ext.as_deref() {
        Some("yaml" | "yml") => true,
        Some("json") => false,
        _ => return Err(LoadError::UnknownFormat { path: path.into() }),
    };
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.into(),
        source,
    })?;
    let origin = path.display().to_string();
    if is_yaml {
        yaml(&text, &origin)
    } else {
        json(&text, &origin)
    }
}

fn yaml(text: &str, origin: &str) -> Result<Template, LoadError> {
    serde_norway::from_str(text).map_err(|source| LoadError::Yaml {
        origin: origin.into(),
        source,
    })
}

fn json(text: &str, origin: &str) -> Result<Template, LoadError> {
    serde_json::from_str(text).map_err(|source| LoadError::Json {
        origin: origin.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{InputRef, StepKind};

    const YAML: &str = r#"
namespace: shop
name: order
version: "1.2.0"
steps:
  - name: decide
    handler: decide
    kind: { decision: { targets: [a] } }
  - name: a
    handler: h
    depends_on: [decide]
    inputs: { x: "$.steps.decide.result.x" }
  - name: fan
    handler: split
    kind: { batch: { worker: work, concurrency: 2 } }
  - name: join
    handler: join
    depends_on: [fan]
    kind: convergence
"#;

    #[test]
    fn yaml_and_json_read_the_same_template() {
        let t = from_yaml_str(YAML).unwrap();
        assert_eq!(
            t.steps[0].kind,
            StepKind::Decision {
                targets: vec!["a".into()]
            }
        );
        assert_eq!(t.steps[1].inputs["x"], InputRef::step_result("decide", "x"));
        assert_eq!(
            t.steps[2].kind,
            StepKind::Batch {
                worker: "work".into(),
                concurrency: 2
            }
        );
        assert_eq!(t.steps[3].kind, StepKind::Convergence);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(from_json_str(&json).unwrap(), t);
    }

    #[test]
    fn errors_name_the_origin_and_the_problem() {
        let e = from_yaml_str("namespace: a\nname: b\nversion: c\nsteps: [{name: x}]").unwrap_err();
        assert!(e.to_string().contains("handler"), "{e}");
        let e =
            from_yaml_str("namespace: a\nname: b\nversion: c\nsteps: []\nbogus: 1").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = from_json_str(r#"{"namespace":"a","name":"b","version":"c","steps":[{"name":"x","handler":"h","inputs":{"y":"order"}}]}"#).unwrap_err();
        assert!(e.to_string().contains("$.input"), "{e}");
        let e = from_path("template.toml").unwrap_err();
        assert!(matches!(e, LoadError::UnknownFormat { .. }), "{e}");
        let e = from_path("/nonexistent/t.yaml").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/t.yaml"), "{e}");
    }
}
