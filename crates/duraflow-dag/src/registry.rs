//! Registered templates, by namespace, name and version, and the input check at start.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::graph::Dag;
use crate::template::{Template, TemplateId};
use crate::validate::{validate, Invalid};

/// Why registering or starting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The template breaks validation rules.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The template's input schema is not a valid JSON Schema.
    #[error("template {template}: the input schema is not a valid JSON Schema: {message}")]
    InvalidInputSchema {
        /// The template.
        template: TemplateId,
        /// What the schema compiler said.
        message: String,
    },
    /// A different template is registered under the same namespace, name and version.
    #[error("template {template} is already registered with different content: give the new content a new version")]
    Conflict {
        /// The template.
        template: TemplateId,
    },
    /// No template of that namespace and name (and version, if given).
    #[error("no template {namespace}/{name}{} is registered", version.as_deref().map(|v| format!("@{v}")).unwrap_or_default())]
    NotFound {
        /// The namespace asked for.
        namespace: String,
        /// The name asked for.
        name: String,
        /// The version asked for, if one was.
        version: Option<String>,
    },
    /// The run's input does not satisfy the template's input schema.
    #[error("template {template}: the input does not match the input schema: {}", errors.join("; "))]
    InputRejected {
        /// The template.
        template: TemplateId,
        /// Each violation, with the path in the input where it is.
        errors: Vec<String>,
    },
}

/// A registered template: the template as registered, its graph and its compiled input schema.
/// A run holds the `Arc` it started with, so it keeps that exact template.
#[derive(Debug)]
pub struct Registered {
    template: Template,
    dag: Dag,
    schema: Option<jsonschema::Validator>,
    seq: u64,
}

impl Registered {
    /// The template.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The template's graph (a run clones it to expand batches).
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// Checks `input` against the template's input schema (anything passes without one).
    pub fn check_input(&self, input: &Value) -> Result<(), RegistryError> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let errors: Vec<String> = schema
            .iter_errors(input)
            .map(|e| format!("at `{}`: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::InputRejected {
                template: self.template.id(),
                errors,
            })
        }
    }
}

/// Templates by (namespace, name, version), validated against the known handlers.
///
/// The latest version of a name is the highest semver when every registered version of it
/// parses as semver (`1.10.0` after `1.9.0`), and otherwise the most recently registered.
/// Registering the same (namespace, name, version) again is a no-op when the content is the
/// same and a [`RegistryError::Conflict`] when it differs.
#[derive(Debug, Default)]
pub struct Registry {
    handlers: BTreeSet<String>,
    templates: HashMap<(String, String), Vec<Arc<Registered>>>,
    next_seq: u64,
}

impl Registry {
    /// A registry whose templates may use `handlers`.
    pub fn new<I, S>(handlers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Registry {
            handlers: handlers.into_iter().map(Into::into).collect(),
            ..Registry::default()
        }
    }

    /// Makes `handler` known to templates registered from now on.
    pub fn add_handler(&mut self, handler: impl Into<String>) {
        self.handlers.insert(handler.into());
    }

    /// Validates and registers `template` (see the type's docs for duplicates).
    pub fn register(&mut self, template: Template) -> Result<Arc<Registered>, RegistryError> {
        let key = (template.namespace.clone(), template.name.clone());
        if let Some(old) = self.find(&key, &template.version) {
            return if old.template == template {
                Ok(old)
            } else {
                Err(RegistryError::Conflict {
                    template: template.id(),
                })
            };
        }
        let dag = validate(&template, &self.handlers)?;
        let schema = match &template.input_schema {
            None => None,
            Some(s) => Some(jsonschema::validator_for(s).map_err(|e| {
                RegistryError::InvalidInputSchema {
                    template: template.id(),
                    message: e.to_string(),
                }
            })?),
        };
        let registered = Arc::new(Registered {
            template,
            dag,
            schema,
            seq: self.next_seq,
        });
        self.next_seq += 1;
        self.templates
            .entry(key)
            .or_default()
            .push(Arc::clone(&registered));
        Ok(registered)
    }

    /// The template `namespace/name` at `version`, or its latest version when `version` is
    /// `None`.
    pub fn get(
        &self,
        namespace: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<Registered>, RegistryError> {
        let key = (namespace.to_owned(), name.to_owned());
        let found = match version {
            Some(v) => self.find(&key, v),
            None => self.templates.get(&key).and_then(|all| latest(all)),
        };
        found.ok_or_else(|| RegistryError::NotFound {
            namespace: namespace.into(),
            name: name.into(),
            version: version.map(str::to_owned),
        })
    }

    /// What starting a run does first: picks the template ([`get`](Self::get)) and checks
    /// `input` against its input schema. The run keeps the returned template.
    pub fn start(
        &self,
        namespace: &str,
        name: &str,
        version: Option<&str>,
        input: &Value,
    ) -> Result<Arc<Registered>, RegistryError> {
        let registered = self.get(namespace, name, version)?;
        registered.check_input(input)?;
        Ok(registered)
    }

    /// The registered versions of `namespace/name`, in registration order.
    pub fn versions(&self, namespace: &str, name: &str) -> Vec<&str> {
        let key = (namespace.to_owned(), name.to_owned());
        self.templates
            .get(&key)
            .map(|all| all.iter().map(|r| r.template.version.as_str()).collect())
            .unwrap_or_default()
    }

    fn find(&self, key: &(String, String), version: &str) -> Option<Arc<Registered>> {
        self.templates
            .get(key)?
            .iter()
            .find(|r| r.template.version == version)
            .cloned()
    }
}

fn latest(all: &[Arc<Registered>]) -> Option<Arc<Registered>> {
    let semver: Option<Vec<semver::Version>> = all
        .iter()
        .map(|r| semver::Version::parse(&r.template.version).ok())
        .collect();
    let best = match semver {
        Some(versions) => versions
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i),
        None => all
            .iter()
            .enumerate()
            .max_by_key(|(_, r)| r.seq)
            .map(|(i, _)| i),
    };
    best.map(|i| Arc::clone(&all[i]))
}
