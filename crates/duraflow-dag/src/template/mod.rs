//! The template data model: a named, versioned set of steps and the edges between them.
//!
//! A [`Template`] is plain data: it is what a YAML or JSON file holds ([`load`]) and what the
//! [builder](Template::builder) produces. Nothing here checks it; the rules live in
//! [`validate`](mod@crate::validate).

mod builder;
mod input;
pub mod load;
mod retry;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use builder::TemplateBuilder;
pub use input::{InputRef, InputRefError};
pub use retry::{Backoff, RetrySpec};

/// A DAG workflow template: identity, an optional input schema and the steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The namespace the template belongs to (for example a team or a product).
    pub namespace: String,
    /// The template's name, unique within its namespace.
    pub name: String,
    /// The version, a free string; versions that parse as semver are ordered as semver.
    pub version: String,
    /// What the workflow does, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A JSON Schema the run's input must satisfy; checked when a run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    /// What a run does when a step fails for good: fail (the default) or hold for an operator.
    #[serde(default, skip_serializing_if = "OnFailure::is_fail")]
    pub on_failure: OnFailure,
    /// The steps, in any order; edges are given by each step's `depends_on`.
    pub steps: Vec<Step>,
}

impl Template {
    /// Starts a [`TemplateBuilder`] for `namespace/name@version`.
    pub fn builder(
        namespace: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> TemplateBuilder {
        TemplateBuilder::new(namespace, name, version)
    }

    /// The template's identity, `namespace/name@version`.
    pub fn id(&self) -> TemplateId {
        TemplateId {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }

    /// The step named `name`, if there is one.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// What a run does when a step that is not skippable fails for good.
///
/// In YAML: `on_failure: fail` (the default, may be left out) or `on_failure: hold`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The run fails at once (code `dag_step_failed`), cancelling the steps in flight.
    #[default]
    Fail,
    /// The run moves to `error` and waits for an operator to retry or resolve the failed step
    /// or to cancel the run (see `run::operator`); the instance keeps running, and steps that
    /// do not depend on the failed one carry on.
    Hold,
}

impl OnFailure {
    /// Whether this is [`OnFailure::Fail`].
    pub fn is_fail(&self) -> bool {
        matches!(self, OnFailure::Fail)
    }
}

/// A template's identity: namespace, name and version. Displayed as `namespace/name@version`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TemplateId {
    /// The namespace.
    pub namespace: String,
    /// The name within the namespace.
    pub name: String,
    /// The version string.
    pub version: String,
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.version)
    }
}

/// One step of a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The step's name, unique within the template.
    pub name: String,
    /// The handler that runs the step (an activity name once the engine runs DAGs).
    pub handler: String,
    /// The steps that must be complete (or skipped) before this one may start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// How a failed attempt is retried.
    #[serde(default)]
    pub retry: RetrySpec,
    /// How long one attempt may run, in milliseconds; `None` for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Whether the step may be skipped: when it fails for good, or by an operator, it is marked
    /// skipped and its dependents proceed as if it had completed (with no result).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skippable: bool,
    /// The queue the step's handler runs on; `None` for the run's own queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The step's input, as named fields mapped from the run's input or upstream results.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, InputRef>,
    /// What kind of step this is. Read and written as a single-key map (`{ decision: .. }`)
    /// or a plain string (`normal`, `convergence`), in YAML as in JSON.
    #[serde(
        default,
        skip_serializing_if = "StepKind::is_normal",
        with = "serde_norway::with::singleton_map"
    )]
    pub kind: StepKind,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Step {
    /// A normal step named `name` run by `handler`, with no dependencies and default retries.
    pub fn new(name: impl Into<String>, handler: impl Into<String>) -> Self {
        Step {
            name: name.into(),
            handler: handler.into(),
            depends_on: Vec::new(),
            retry: RetrySpec::default(),
            timeout_ms: None,
            skippable: false,
            queue: None,
            inputs: BTreeMap::new(),
            kind: StepKind::Normal,
        }
    }

    /// Adds dependencies: the step starts once each of them is complete or skipped.
    pub fn depends_on<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on.extend(steps.into_iter().map(Into::into));
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetrySpec) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the timeout of one attempt, in milliseconds.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Marks the step skippable (see [`Step::skippable`](field@Step::skippable)).
    pub fn skippable(mut self) -> Self {
        self.skippable = true;
        self
    }

    /// Sets the queue the handler runs on.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Maps the input field `field` from `source`.
    pub fn input(mut self, field: impl Into<String>, source: InputRef) -> Self {
        self.inputs.insert(field.into(), source);
        self
    }

    /// Makes this a decision step whose handler chooses which of `targets` run.
    pub fn decision<I, S>(mut self, targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kind = StepKind::Decision {
            targets: targets.into_iter().map(Into::into).collect(),
        };
        self
    }

    /// Makes this a batch step: its handler returns items, each run by `worker`, at most
    /// `concurrency` at a time (0 for no limit).
    pub fn batch(mut self, worker: impl Into<String>, concurrency: u32) -> Self {
        self.kind = StepKind::Batch {
            worker: worker.into(),
            concurrency,
        };
        self
    }

    /// Makes this a convergence step: it receives the results of every worker of the batch
    /// step it depends on.
    pub fn convergence(mut self) -> Self {
        self.kind = StepKind::Convergence;
        self
    }
}

/// What kind of step a step is.
///
/// In YAML: `kind: normal` (the default, may be left out), `kind: convergence`,
/// `kind: { decision: { targets: [a, b] } }`, `kind: { batch: { worker: h, concurrency: 4 } }`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepKind {
    /// Runs its handler once (with retries) and records the result.
    #[default]
    Normal,
    /// Its handler returns the names of the targets that run; every other target, and every
    /// step that only those lead to, is skipped. Each target must depend on this step.
    Decision {
        /// The steps this decision chooses among.
        targets: Vec<String>,
    },
    /// Its handler returns a list of items; the engine adds one worker step per item, run by
    /// `worker`, between this step and its convergence steps.
    Batch {
        /// The handler each item is run by.
        worker: String,
        /// How many workers may run at once; 0 for no limit.
        #[serde(default)]
        concurrency: u32,
    },
    /// Depends on a batch step and receives the results of all of its workers.
    Convergence,
}

impl StepKind {
    /// Whether this is [`StepKind::Normal`].
    pub fn is_normal(&self) -> bool {
        matches!(self, StepKind::Normal)
    }
}
