//! DAG workflows for duraflow: templates, their validation and registry, the readiness graph
//! and state machines (all pure), and the interpreter that runs a template on the engine.
//!
//! A DAG workflow is a **template** of named steps joined by `depends_on` edges. A run starts
//! every step whose dependencies are all complete or skipped, runs independent steps in
//! parallel, retries failed attempts with backoff, and completes when every step is complete
//! or skipped (it fails when a step fails for good).
//!
//! Everything about that model that needs no engine:
//!
//! - [`template`]: the data model ([`Template`], [`Step`], [`StepKind`], [`RetrySpec`],
//!   [`InputRef`]), read from YAML or JSON ([`template::load`]) or built in Rust
//!   ([`Template::builder`]);
//! - [`validate()`]: every rule a template must satisfy, each broken rule a
//!   [`ValidationError`] naming the template and the step;
//! - [`Registry`]: templates by namespace, name and version, the latest-version rule, and the
//!   JSON-Schema check of a run's input;
//! - [`graph`]: the indexed [`Dag`] and the [`Readiness`] tracker that finds ready steps
//!   incrementally (O(out-degree) per resolved step), propagates decision skips and expands
//!   batch steps;
//! - [`state`]: the step and run state machines with explicit transition tables and the audit
//!   trail of every transition, and [`StepAttempts`], a step's attempts
//!   and retry backoff.
//!
//! With the feature `engine` (on by default), [`run`] runs templates on the duraflow engine:
//! a built-in workflow, `duraflow.dag`, interprets the template and each step's handler is an
//! activity, so durability, leases, crash recovery, queues and the client apply unchanged.
//! Its output, and [`run::dag_status`] while it runs, report every step's state, result and
//! transitions. The interpreter schedules each step's retries itself (every attempt and
//! `waiting_for_retry` visible, with jitter and a handler's retry-after), and operators act on
//! running runs through [`run::operator`] (retry or resolve a step, cancel the run), audited.
//! Every step and run transition is published as a [`run::LifecycleEvent`] on the
//! engine's feed, for durable subscribers.
//!
//! # Step kinds
//!
//! - `normal`: runs its handler.
//! - `decision`: its handler returns which of its `targets` run; the other targets, and every
//!   step that only they lead to, are skipped. Each target depends on the decision step.
//! - `batch`: its handler returns N items; the run adds N worker steps (handler `worker`),
//!   each depending on the batch step, between it and its `convergence` step.
//! - `convergence`: depends on one batch step and receives every worker's result.
//!
//! # The template format
//!
//! ```
//! let yaml = r#"
//! namespace: shop
//! name: refund
//! version: "1.0.0"
//! description: Pays an order back after a check.
//! input_schema:
//!   type: object
//!   required: [order]
//! steps:
//!   - name: check
//!     handler: check_refund
//!     inputs: { order: "$.input.order" }
//!     kind: { decision: { targets: [pay_back, reject] } }
//!   - name: pay_back
//!     handler: pay_back
//!     depends_on: [check]
//!     retry: { max_attempts: 5, backoff: exponential, interval_ms: 1000, max_interval_ms: 30000 }
//!     timeout_ms: 10000
//!     queue: payments
//!     inputs: { amount: "$.steps.check.result.amount" }
//!   - name: reject
//!     handler: reject_refund
//!     depends_on: [check]
//!     skippable: true
//! "#;
//! let template = duraflow_dag::template::load::from_yaml_str(yaml)?;
//! let dag = duraflow_dag::validate(&template, ["check_refund", "pay_back", "reject_refund"])?;
//! assert_eq!(dag.len(), 3);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! Step fields: `name`, `handler` (required); `depends_on` (default none); `retry`
//! ([`RetrySpec`], default 3 attempts, exponential from 1 s, capped at 60 s, jitter 0.1);
//! `timeout_ms`;
//! `skippable` (a step that fails for good is skipped instead and its dependents proceed);
//! `queue`; `inputs` (field → [`InputRef`]: `$.input[.path]` or
//! `$.steps.<step>.result[.path]`); `kind` (default `normal`). Template fields: `namespace`,
//! `name`, `version`, `steps` (required); `description`, `input_schema`, `on_failure`
//! ([`OnFailure`]: `fail`, the default, or `hold` for an operator). Unknown fields are errors.

pub mod graph;
mod registry;
#[cfg(feature = "engine")]
pub mod run;
pub mod state;
pub mod template;
pub mod validate;

pub use graph::{Dag, NodeId, NodeKind, Progress, Readiness, ReadinessError};
pub use registry::{Registered, Registry, RegistryError};
pub use state::{
    Actor, Failed, History, RunState, StepAttempts, StepState, Transition, TransitionError,
};
pub use template::{
    Backoff, InputRef, InputRefError, OnFailure, RetrySpec, Step, StepKind, Template,
    TemplateBuilder, TemplateId,
};
pub use validate::{validate, Invalid, ValidationError};
