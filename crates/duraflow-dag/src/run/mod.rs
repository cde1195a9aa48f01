//! Running templates on the duraflow engine (feature `engine`, on by default).
//!
//! A DAG run is an instance of one built-in workflow, [`WORKFLOW_NAME`], that interprets the
//! template; each step's handler is an activity. Durability, leases, crash recovery, queues
//! and the client therefore apply unchanged.
//!
//! - The run's input is a [`DagStart`]: the template (by [`TemplateRef`] from the
//!   [`Registry`](crate::Registry) given to [`register`], or inline) and the run's input.
//! - The template is resolved once, in a checkpointed step named [`TEMPLATE_STEP`], so the run
//!   keeps the exact template it started with and replay reads it back. The template is then
//!   validated and the input checked against its input schema; a bad input fails the run
//!   (code `dag_invalid_start`).
//! - Every ready step starts at once as an activity (its queue, its timeout as the attempt
//!   timeout), with an input object built from its `inputs` mappings. As each finishes, what
//!   became ready starts; there are no waves. Which in-flight step the interpreter hears of
//!   next follows the journal's order of completions, so replay reproduces it.
//! - Each attempt is one activity call of one attempt; the interpreter schedules the retries
//!   itself, so each is visible: a failed attempt moves the step `in_progress` → `error` →
//!   `waiting_for_retry`, a durable timer waits the backoff of its
//!   [`RetrySpec`](crate::RetrySpec) (spread by its jitter, drawn from a hash of the instance
//!   id, the step and the attempt, so replay repeats it), and the step goes `enqueued` →
//!   `in_progress` for the next attempt. A handler's
//!   `ActivityError::retryable(..).retry_after(d)` (a 429's `Retry-After`) replaces the
//!   computed wait; a terminal error fails the step at once.
//! - A decision step's handler returns the names of the targets to run (a JSON array of
//!   strings, or one string); a batch step's handler returns a JSON array of items, each run by
//!   the batch's `worker` with the item as its input (at most `concurrency` at a time), and the
//!   convergence step receives its mapped inputs plus `results`, the workers' results in item
//!   order. A worker's step name is `batch[i]`.
//! - A step that fails for good (its attempts spent, or a non-retryable error; or a
//!   decision or batch result the template does not allow) is skipped if it is `skippable`,
//!   and otherwise fails the run (code `dag_step_failed`), cancelling the steps in flight;
//!   or, with the template's `on_failure: hold`, moves the run to `error` and waits for an
//!   operator ([`operator`]: retry or resolve the step, or cancel the run, which fails the
//!   instance with code `dag_cancelled`).
//! - A completed run's output is a [`DagReport`]: every step's result, state and transitions.
//!   [`dag_status`] rebuilds the same report from a running (or failed) run's journal.
//! - Every transition of the run and of its steps is published to the store's feed as a
//!   [`LifecycleEvent`] (topics under [`TOPIC_PREFIX`]) with the commit of the turn that made
//!   it; [`dag_events`] subscribes to them, at least once across restarts.
//!
//! ```no_run
//! use std::sync::Arc;
//! use duraflow_dag::run::{dag_status, register, DagReport, DagStart, WORKFLOW_NAME};
//! use duraflow_dag::{Registry, Template, Step};
//! use duraflow_runtime::{Engine, EngineBuilder};
//!
//! # async fn demo(builder: EngineBuilder) -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = Registry::new(["greet"]);
//! registry.register(
//!     Template::builder("demo", "hello", "1").step(Step::new("greet", "greet")).build(),
//! )?;
//! let engine = register(builder, Arc::new(registry))
//!     .activity("greet", |_ctx, _input: serde_json::Value| async { Ok::<_, duraflow_core::ActivityError>("hello") })
//!     .start()
//!     .await?;
//! let client = engine.client();
//! let run = client
//!     .start(WORKFLOW_NAME, &DagStart::named("demo", "hello", serde_json::json!({})))
//!     .await?;
//! let report: DagReport = client.wait(&run).await?;
//! assert_eq!(report.results["greet"], "hello");
//! let same = dag_status(&client, &run.id).await?;
//! assert_eq!(same, report);
//! # Ok(()) }
//! ```

mod events;
mod in_flight;
mod lifecycle;
mod machine;
pub mod operator;
mod report;
mod retry;
mod status;
mod step_io;
mod workflow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::template::Template;

pub use events::{dag_events, dag_events_with, DagEvents};
pub use lifecycle::{LifecycleEvent, RunEvent, StepEvent, TOPIC_PREFIX};
pub use operator::{
    cancel_run, resolve_step, retry_step, Action, OperatorAction, OperatorError, RejectedAction,
    OPERATOR_EVENT,
};
pub use report::{DagReport, StepReport};
pub use status::{dag_status, rebuild, StatusError};
pub use workflow::{interpreter, register};

/// The name the interpreter workflow is registered under.
pub const WORKFLOW_NAME: &str = "duraflow.dag";

/// The name of the checkpointed step that resolves a run's template.
pub const TEMPLATE_STEP: &str = "duraflow.dag.template";

/// The input of a DAG run: which template, and the run's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DagStart {
    /// The template to run.
    pub template: TemplateSource,
    /// The run's input, checked against the template's input schema.
    #[serde(default)]
    pub input: Value,
}

/// Where a run's template comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSource {
    /// A template registered in the interpreter's registry.
    Named(TemplateRef),
    /// The template itself.
    Inline(Template),
}

/// A registered template, by namespace and name, and a version (the latest when `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// The version; `None` for the latest registered when the run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl DagStart {
    /// A run of the latest registered version of `namespace/name`.
    pub fn named(namespace: impl Into<String>, name: impl Into<String>, input: Value) -> Self {
        DagStart {
            template: TemplateSource::Named(TemplateRef {
                namespace: namespace.into(),
                name: name.into(),
                version: None,
            }),
            input,
        }
    }

    /// A run of `template` itself, registered nowhere.
    pub fn inline(template: Template, input: Value) -> Self {
        DagStart {
            template: TemplateSource::Inline(template),
            input,
        }
    }

    /// Pins the version of a named template (no effect on an inline one).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        if let TemplateSource::Named(r) = &mut self.template {
            r.version = Some(version.into());
        }
        self
    }
}

#[cfg(test)]
mod retry_tests;
#[cfg(test)]
mod tests;
