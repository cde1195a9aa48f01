//! Shared by the steps worker and the steps crash test: a workflow of inline steps, half of
//! them at most once and half at least once, whose bodies record every call in a side-effect
//! log.
//!
//! Workflow `df-<i>` runs [`STEPS`] steps in sequence. Step `k` is at most once
//! ([`StepSemantics::AtMostOncePerRetry`]) when `k` is even, at least once
//! ([`StepSemantics::AtLeastOncePerRetry`]) when odd. Every call of a step's body appends one
//! line `<generation> <instance> <op> <attempt> <semantics>` to the log and syncs it before
//! doing anything else that could be lost, so the log records every call, including those
//! whose result a SIGKILL lost. Some first attempts fail (retryably) after logging, so that
//! retries happen without kills too. Every step retries under [`step_retry`], so an at-most-once
//! attempt that a kill interrupted is retried.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duraflow::prelude::*;
use duraflow::{workflow_fn, WorkflowFn};

/// Steps per workflow.
pub const STEPS: u64 = 6;

/// The name the steps workflow is registered under.
pub const WORKFLOW: &str = "steps";

/// The environment variable setting how many workflow turns a steps worker runs at once
/// (default [`DEFAULT_WORKFLOW_CONCURRENCY`]): at most this many steps are in flight when it is
/// killed.
pub const WORKFLOW_CONCURRENCY_VAR: &str = "DURAFLOW_WORKFLOW_CONCURRENCY";

/// Workflow turns a steps worker runs at once unless [`WORKFLOW_CONCURRENCY_VAR`] says
/// otherwise.
pub const DEFAULT_WORKFLOW_CONCURRENCY: usize = 8;

/// The id of steps workflow `i`.
pub fn workflow_id(i: usize) -> String {
    format!("df-{i}")
}

/// What workflow `df-<i>` returns: the sum of `i * 100 + k` over its steps.
pub fn expected_output(i: usize) -> u64 {
    (0..STEPS).map(|k| i as u64 * 100 + k).sum()
}

/// The semantics of step `k`: at most once when `k` is even, at least once when odd.
pub fn semantics_of(k: u64) -> StepSemantics {
    if k.is_multiple_of(2) {
        StepSemantics::AtMostOncePerRetry
    } else {
        StepSemantics::AtLeastOncePerRetry
    }
}

/// The retry policy of every step: a fixed 100 ms, and attempts enough for many kills.
pub fn step_retry() -> RetryPolicy {
    RetryPolicy::fixed(Duration::from_millis(100)).max_attempts(50)
}

/// Whether the first attempt of step `k` of workflow `i` fails (after logging).
pub fn first_attempt_fails(i: u64, k: u64) -> bool {
    (i + k).is_multiple_of(4)
}

/// A step's semantics as written in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Semantics {
    /// [`StepSemantics::AtMostOncePerRetry`], written `amo`.
    AtMostOnce,
    /// [`StepSemantics::AtLeastOncePerRetry`], written `alo`.
    AtLeastOnce,
}

impl Semantics {
    /// The log's name for `semantics` (`None` for semantics the workflow does not use).
    pub fn of(semantics: StepSemantics) -> Option<Semantics> {
        match semantics {
            StepSemantics::AtMostOncePerRetry => Some(Semantics::AtMostOnce),
            StepSemantics::AtLeastOncePerRetry => Some(Semantics::AtLeastOnce),
            _ => None,
        }
    }
}

impl fmt::Display for Semantics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Semantics::AtMostOnce => "amo",
            Semantics::AtLeastOnce => "alo",
        })
    }
}

/// One line of the steps log: one call of a step's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepLine {
    /// The worker process's generation (0 for the first start).
    pub generation: u32,
    /// The instance.
    pub instance: String,
    /// The step's operation id.
    pub op: String,
    /// The attempt the body was called for.
    pub attempt: u32,
    /// The step's semantics.
    pub semantics: Semantics,
}

impl StepLine {
    /// The line as written.
    pub fn render(&self) -> String {
        format!(
            "{} {} {} {} {}\n",
            self.generation, self.instance, self.op, self.attempt, self.semantics
        )
    }

    /// Parses a written line; `None` for a torn or malformed one.
    pub fn parse(line: &str) -> Option<StepLine> {
        let mut parts = line.split_whitespace();
        let line = StepLine {
            generation: parts.next()?.parse().ok()?,
            instance: parts.next()?.to_owned(),
            op: parts.next()?.to_owned(),
            attempt: parts.next()?.parse().ok()?,
            semantics: match parts.next()? {
                "amo" => Semantics::AtMostOnce,
                "alo" => Semantics::AtLeastOnce,
                _ => return None,
            },
        };
        parts.next().is_none().then_some(line)
    }
}

/// Reads a steps log (a missing file is empty); malformed lines are skipped.
pub fn read_step_log(path: &Path) -> Vec<StepLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(StepLine::parse)
        .collect()
}

/// Where step bodies record their calls: a log file and the worker's generation, or nowhere
/// (for replay checks, which never call step bodies).
#[derive(Clone, Debug, Default)]
pub struct Effects {
    log: Option<Arc<Mutex<std::fs::File>>>,
    generation: u32,
}

impl Effects {
    /// Records into `log` (opened with [`crate::open_log`]) as worker `generation`.
    pub fn new(log: Arc<Mutex<std::fs::File>>, generation: u32) -> Effects {
        Effects {
            log: Some(log),
            generation,
        }
    }

    /// Records nothing.
    pub fn none() -> Effects {
        Effects::default()
    }

    /// Appends one line for a call of a step body and syncs it to disk.
    fn record(&self, step: &StepContext, semantics: Semantics) -> Result<(), ActivityError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let line = StepLine {
            generation: self.generation,
            instance: step.instance_id().to_owned(),
            op: step.op_id().to_string(),
            attempt: step.attempt(),
            semantics,
        };
        let mut file = log
            .lock()
            .map_err(|_| ActivityError::retryable("log poisoned"))?;
        // One write of a short line to a file opened with O_APPEND, then a sync: the line
        // survives a SIGKILL (and a power cut) that comes after the body returns.
        file.write_all(line.render().as_bytes())?;
        file.sync_data()?;
        Ok(())
    }
}

/// The steps workflow: [`STEPS`] steps in sequence, returning the sum of their outputs.
pub async fn steps(ctx: WorkflowContext, i: u64, effects: Effects) -> Result<u64, WorkflowError> {
    let mut total = 0;
    for k in 0..STEPS {
        let semantics = semantics_of(k);
        let logged = Semantics::of(semantics).unwrap_or(Semantics::AtLeastOnce);
        let effects = effects.clone();
        let name = format!("{logged}-{k}");
        let out: u64 = ctx
            .step(&name, move |step: StepContext| {
                let effects = effects.clone();
                async move {
                    // A little real work before and after the side effect, so that kills land
                    // both before it and between it and the checkpoint of the result.
                    tokio::time::sleep(Duration::from_millis(1 + (i + k) % 3)).await;
                    effects.record(&step, logged)?;
                    tokio::time::sleep(Duration::from_millis(1 + (i * 7 + k) % 4)).await;
                    if step.attempt() == 1 && first_attempt_fails(i, k) {
                        return Err(ActivityError::retryable("the first attempt fails"));
                    }
                    Ok(i * 100 + k)
                }
            })
            .semantics(semantics)
            .retry(step_retry())
            .await?;
        total += out;
    }
    Ok(total)
}

/// The steps workflow with `effects`, as the registry and the replay checker take it.
pub fn steps_workflow(effects: Effects) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, i: u64| steps(ctx, i, effects.clone()))
}
