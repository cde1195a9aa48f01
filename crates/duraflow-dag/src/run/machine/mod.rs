//! The run machine: the interpreter's decisions without any I/O.
//!
//! It is fed what the engine reports (an attempt succeeded with this output or failed with
//! this error, a retry's backoff elapsed, an operator acted) and answers with orders: the
//! attempts to launch and the backoff timers to start. The interpreter workflow drives it
//! with activity results, timer firings and operator events; [`dag_status`](super::dag_status)
//! drives a fresh one with the same deliveries recorded in the journal, so both arrive at the
//! same state.
//!
//! Every order has a number in the run (`seq`), in the order the machine issued them; the
//! interpreter issues the n-th order's activity or timer n-th in the journal.

mod operator;
mod rerun;

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;

use super::operator::RejectedAction;
use super::report::{DagReport, StepReport};
use super::retry::{jitter_sample, AttemptFailure};
use super::step_io;
use crate::graph::{Dag, NodeId, NodeKind, Progress};
use crate::state::{Actor, Failed, History, RunState, StepAttempts, StepState};
use crate::template::{OnFailure, StepKind, Template};
use crate::{Readiness, Registered};

/// A step attempt to start now: its handler runs as an activity with `input`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Launch {
    /// The order's number in the run.
    pub(crate) seq: usize,
    /// The index of the template step whose options (timeout, queue) apply.
    pub(crate) step: usize,
    /// The activity to run.
    pub(crate) handler: String,
    /// Its input.
    pub(crate) input: Value,
}

/// What the interpreter must do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Order {
    /// Run an attempt.
    Launch(Launch),
    /// Start a durable timer that fires at `until` (ms): a step's retry backoff.
    Sleep {
        /// The order's number in the run.
        seq: usize,
        /// When it fires.
        until: i64,
    },
}

/// The run ended without completing: a step failed for good, or an operator cancelled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunFailed {
    /// Why, naming the step or the operator.
    pub(crate) message: String,
    /// The instance's failure code: `dag_step_failed` or `dag_cancelled`.
    pub(crate) code: &'static str,
}

/// What an order was for.
#[derive(Clone, Copy, Debug)]
enum Issued {
    Attempt(NodeId),
    Backoff(NodeId),
}

/// How a node was resolved in the tracker, kept so that the tracker can be rebuilt without
/// the nodes an operator runs again.
#[derive(Clone, Debug)]
enum Resolution {
    Complete,
    Skip,
    Decide(Vec<NodeId>),
    Batch(usize),
}

/// Why a step's output cannot settle it.
enum Unsettled {
    /// The template does not allow it (a decision's or a batch step's result).
    BadOutput(String),
    /// The tracker refused: a bug, or a journal the interpreter did not write.
    Internal(String),
}

/// One run's progress through its template.
pub(crate) struct RunMachine {
    template: Template,
    input: Value,
    /// The run's jitter seed (from its instance id).
    seed: u64,
    tracker: Readiness,
    /// The graph before any batch expanded, and every resolution the tracker took since, in
    /// order: replaying them rebuilds the tracker.
    base: Dag,
    resolutions: Vec<(NodeId, Resolution)>,
    steps: Vec<StepAttempts>,
    results: Vec<Option<Value>>,
    run: History<RunState>,
    /// What each order was for, by order number.
    issued: Vec<Issued>,
    /// Workers held back by their batch's concurrency limit, and how many run, by batch.
    held: HashMap<NodeId, VecDeque<NodeId>>,
    running: HashMap<NodeId, usize>,
    /// The attempts a failed activity reported making (journals from before the interpreter
    /// scheduled retries itself, when an activity's own policy retried).
    reported_attempts: HashMap<NodeId, u32>,
    /// Results operators gave steps not ready yet: they settle when they become ready.
    preset: HashMap<NodeId, Value>,
    /// Operator actions the run could not take.
    rejected: Vec<RejectedAction>,
}

impl RunMachine {
    /// A run of `registered` with `input` (already checked) and the jitter `seed`, and the
    /// first orders.
    pub(crate) fn new(
        registered: &Registered,
        input: Value,
        seed: u64,
        at: i64,
    ) -> (Self, Vec<Order>) {
        let (tracker, roots) = Readiness::new(registered.dag().clone());
        let n = tracker.dag().len();
        let mut machine = RunMachine {
            template: registered.template().clone(),
            input,
            seed,
            tracker,
            base: registered.dag().clone(),
            resolutions: Vec::new(),
            steps: vec![StepAttempts::new(); n],
            results: vec![None; n],
            run: History::new(RunState::Pending),
            issued: Vec::new(),
            held: HashMap::new(),
            running: HashMap::new(),
            reported_attempts: HashMap::new(),
            preset: HashMap::new(),
            rejected: Vec::new(),
        };
        let _ = machine.run.apply(
            RunState::InProgress,
            "the first steps are enqueued",
            Actor::Engine,
            0,
            at,
        );
        let mut out = Vec::new();
        let progress = Progress {
            ready: roots,
            skipped: Vec::new(),
        };
        if let Err(e) = machine.advance(progress, at, &mut out) {
            let _ = machine.internal(e, at);
        }
        (machine, out)
    }

    /// The template's id, for lifecycle events.
    pub(crate) fn template_id(&self) -> crate::template::TemplateId {
        self.template.id()
    }

    /// The run's audit trail.
    pub(crate) fn run_history(&self) -> &History<RunState> {
        &self.run
    }

    /// Every step's name and audit trail, in node order (batch workers after the template's
    /// steps, as they are added).
    pub(crate) fn step_histories(&self) -> impl Iterator<Item = (&str, &History<StepState>)> {
        let dag = self.tracker.dag();
        dag.ids().filter_map(move |id| {
            let step = self.steps.get(id.0)?;
            Some((dag.node(id).name.as_str(), step.history()))
        })
    }

    /// Whether every step is complete, skipped or resolved: the run completed.
    pub(crate) fn is_finished(&self) -> bool {
        self.tracker.is_finished()
    }

    /// Whether the run waits for an operator (a step failed for good and the template holds).
    pub(crate) fn is_held(&self) -> bool {
        self.run.state() == RunState::Error
    }

    /// Whether the run still takes deliveries: it has neither finished nor ended.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.run.state(), RunState::InProgress | RunState::Error) && !self.is_finished()
    }

    /// Order `seq`'s attempt succeeded with `output`: the next orders, or the run's failure (a
    /// decision or batch result the template does not allow fails its step).
    pub(crate) fn succeeded(
        &mut self,
        seq: usize,
        output: Value,
        at: i64,
    ) -> Result<Vec<Order>, RunFailed> {
        let node = self.attempt_of(seq, at)?;
        if self.steps[node.0].state() != StepState::InProgress {
            return Ok(Vec::new());
        }
        match self.interpret(node, &output) {
            Ok(progress) => {
                let _ = self.steps[node.0].complete(at);
                self.settled(node, output, progress, true, at)
            }
            Err(Unsettled::BadOutput(why)) => {
                self.fail_attempt(node, &AttemptFailure::terminal(why), at)
            }
            Err(Unsettled::Internal(e)) => Err(self.internal(e, at)),
        }
    }

    /// Order `seq`'s attempt failed: the step waits for a retry (a timer order), is skipped
    /// (a skippable step), holds the run (`on_failure: hold`) or fails it.
    pub(crate) fn failed(
        &mut self,
        seq: usize,
        failure: &AttemptFailure,
        at: i64,
    ) -> Result<Vec<Order>, RunFailed> {
        let node = self.attempt_of(seq, at)?;
        if self.steps[node.0].state() != StepState::InProgress {
            return Ok(Vec::new());
        }
        if let Some(n) = failure.attempts {
            self.reported_attempts.insert(node, n);
        }
        self.fail_attempt(node, failure, at)
    }

    /// Order `seq`'s timer fired: the step's backoff elapsed and its next attempt starts (a
    /// timer for a step an operator has resolved or cancelled since is stale: nothing).
    pub(crate) fn timer_fired(&mut self, seq: usize, at: i64) -> Result<Vec<Order>, RunFailed> {
        let node = match self.issued.get(seq) {
            Some(&Issued::Backoff(node)) => node,
            _ => return Err(self.internal(format!("a timer for order {seq}, which is none"), at)),
        };
        let step = &mut self.steps[node.0];
        if step.state() != StepState::WaitingForRetry {
            return Ok(Vec::new());
        }
        let at = at.max(step.retry_at().unwrap_or(at));
        if let Err(e) = step.enqueue("the backoff elapsed", at) {
            return Err(self.internal(e, at));
        }
        let mut out = Vec::new();
        self.start_attempt(node, at, &mut out);
        Ok(out)
    }

    /// The report of the run so far.
    pub(crate) fn report(&self) -> DagReport {
        let dag = self.tracker.dag();
        let mut steps = BTreeMap::new();
        let mut results = BTreeMap::new();
        for id in dag.ids() {
            let name = &dag.node(id).name;
            let step = &self.steps[id.0];
            steps.insert(
                name.clone(),
                StepReport {
                    state: step.state(),
                    attempts: step
                        .attempt()
                        .max(self.reported_attempts.get(&id).copied().unwrap_or(0)),
                    transitions: step.history().trail().to_vec(),
                },
            );
            if let Some(v) = &self.results[id.0] {
                results.insert(name.clone(), v.clone());
            }
        }
        DagReport {
            template: self.template.id(),
            state: self.run.state(),
            run_transitions: self.run.trail().to_vec(),
            results,
            steps,
            rejected_actions: self.rejected.clone(),
        }
    }

    fn attempt_of(&mut self, seq: usize, at: i64) -> Result<NodeId, RunFailed> {
        match self.issued.get(seq) {
            Some(&Issued::Attempt(node)) => Ok(node),
            _ => Err(self.internal(format!("a result for order {seq}, which ran nothing"), at)),
        }
    }

    /// Reads `output` as the result of the ready step `node` and resolves it in the tracker.
    fn interpret(&mut self, node: NodeId, output: &Value) -> Result<Progress, Unsettled> {
        let name = self.tracker.dag().node(node).name.clone();
        let (resolution, resolved) = match self.tracker.dag().node(node).kind {
            NodeKind::Decision => {
                let ids = step_io::chosen(self.tracker.dag(), &self.template, node, output)
                    .map_err(Unsettled::BadOutput)?;
                let resolved = self.tracker.decide(node, &ids);
                (Resolution::Decide(ids), resolved)
            }
            NodeKind::Batch => match output.as_array().map(Vec::len) {
                Some(items) => {
                    let resolved = self
                        .tracker
                        .complete_batch(node, items)
                        .map(|(progress, _)| progress);
                    (Resolution::Batch(items), resolved)
                }
                None => {
                    return Err(Unsettled::BadOutput(format!(
                        "batch step `{name}`: the handler must return a JSON array of items, \
                         not {output}"
                    )))
                }
            },
            _ => (Resolution::Complete, self.tracker.complete(node)),
        };
        let progress = resolved.map_err(|e| Unsettled::Internal(e.to_string()))?;
        self.resolutions.push((node, resolution));
        Ok(progress)
    }

    /// `node` settled with `output` (completed, or resolved by an operator): records the
    /// result, frees its batch slot if it held one (`ran`), and starts what became ready.
    fn settled(
        &mut self,
        node: NodeId,
        output: Value,
        progress: Progress,
        ran: bool,
        at: i64,
    ) -> Result<Vec<Order>, RunFailed> {
        self.grow();
        self.results[node.0] = Some(output);
        let mut out = Vec::new();
        if ran {
            self.release_worker(node, at, &mut out);
        }
        if let Err(e) = self.advance(progress, at, &mut out) {
            return Err(self.internal(e, at));
        }
        self.finish_if_done(at);
        Ok(out)
    }

    fn fail_attempt(
        &mut self,
        node: NodeId,
        failure: &AttemptFailure,
        at: i64,
    ) -> Result<Vec<Order>, RunFailed> {
        let n = self.tracker.dag().node(node);
        let name = n.name.clone();
        let step = &self.template.steps[n.step];
        let (retry, skippable) = (step.retry.clone(), step.skippable);
        let attempts = &mut self.steps[node.0];
        let wait = if failure.retryable {
            let sample = jitter_sample(self.seed, &name, attempts.attempt());
            retry
                .jittered_delay_after(attempts.attempts_in_round(), sample)
                .map(|computed| failure.retry_after_ms.unwrap_or(computed))
        } else {
            None
        };
        let reason = if failure.retryable {
            failure.message.clone()
        } else {
            format!("{} (not retryable)", failure.message)
        };
        match attempts.fail_after(&reason, wait, retry.max_attempts, skippable, at) {
            Ok(Failed::RetryAt(until)) => {
                let seq = self.issued.len();
                self.issued.push(Issued::Backoff(node));
                Ok(vec![Order::Sleep { seq, until }])
            }
            Ok(Failed::Skipped) => {
                let progress = match self.tracker.skip(node) {
                    Ok(progress) => progress,
                    Err(e) => return Err(self.internal(e, at)),
                };
                self.resolutions.push((node, Resolution::Skip));
                let mut out = Vec::new();
                self.release_worker(node, at, &mut out);
                if let Err(e) = self.advance(progress, at, &mut out) {
                    return Err(self.internal(e, at));
                }
                self.finish_if_done(at);
                Ok(out)
            }
            Ok(Failed::ForGood) => {
                let why = format!("step `{name}` failed for good: {}", failure.message);
                match self.template.on_failure {
                    OnFailure::Hold => {
                        if self.run.state() == RunState::InProgress {
                            let reason = format!("{why}; held for an operator");
                            let _ = self
                                .run
                                .apply(RunState::Error, reason, Actor::Engine, 0, at);
                        }
                        Ok(Vec::new())
                    }
                    OnFailure::Fail => Err(self.fail_run(&why, at)),
                }
            }
            Err(e) => Err(self.internal(e, at)),
        }
    }

    /// Marks the run failed and the steps in flight (running or waiting for a retry)
    /// cancelled.
    fn fail_run(&mut self, why: &str, at: i64) -> RunFailed {
        let _ = self.run.apply(RunState::Error, why, Actor::Engine, 0, at);
        for step in &mut self.steps {
            if matches!(
                step.state(),
                StepState::InProgress | StepState::Enqueued | StepState::WaitingForRetry
            ) {
                let reason = "the run failed: its activity was cancelled";
                let _ = step.apply_by(StepState::Cancelled, reason, Actor::Engine, at);
            }
        }
        RunFailed {
            message: why.to_owned(),
            code: "dag_step_failed",
        }
    }

    /// A call the run machine cannot accept (a bug, or a journal it did not write): fails the
    /// run instead of panicking.
    fn internal(&mut self, why: impl std::fmt::Display, at: i64) -> RunFailed {
        self.fail_run(&format!("the DAG interpreter went wrong: {why}"), at)
    }

    fn finish_if_done(&mut self, at: i64) {
        if self.is_finished() {
            let reason = "every step is complete, skipped or resolved";
            let _ = self
                .run
                .apply(RunState::Complete, reason, Actor::Engine, 0, at);
        }
    }

    /// Keeps the per-node vectors as long as the graph (batch workers are added to it).
    fn grow(&mut self) {
        let n = self.tracker.dag().len();
        self.steps.resize_with(n, StepAttempts::new);
        self.results.resize(n, None);
    }

    /// Records skips and launches ready steps (holding workers back past their batch's
    /// limit); a ready step an operator already resolved settles with its given result.
    fn advance(&mut self, progress: Progress, at: i64, out: &mut Vec<Order>) -> Result<(), String> {
        for id in progress.skipped {
            let reason = "no chosen path leads to it";
            let _ = self.steps[id.0].apply_by(StepState::Skipped, reason, Actor::Engine, at);
        }
        for id in progress.ready {
            if let Some(result) = self.preset.remove(&id) {
                let progress = match self.interpret(id, &result) {
                    Ok(p) => p,
                    Err(Unsettled::BadOutput(e) | Unsettled::Internal(e)) => return Err(e),
                };
                self.grow();
                self.results[id.0] = Some(result);
                self.advance(progress, at, out)?;
                continue;
            }
            if let NodeKind::Worker { batch, .. } = self.tracker.dag().node(id).kind {
                let limit = self.concurrency(batch);
                let running = self.running.entry(batch).or_default();
                if limit > 0 && *running >= limit {
                    self.held.entry(batch).or_default().push_back(id);
                    continue;
                }
                *running += 1;
            }
            self.launch(id, at, out);
        }
        Ok(())
    }

    /// A worker of `node`'s batch resolved: the next held worker may start.
    fn release_worker(&mut self, node: NodeId, at: i64, out: &mut Vec<Order>) {
        let NodeKind::Worker { batch, .. } = self.tracker.dag().node(node).kind else {
            return;
        };
        match self.held.get_mut(&batch).and_then(VecDeque::pop_front) {
            Some(next) => self.launch(next, at, out),
            None => {
                if let Some(r) = self.running.get_mut(&batch) {
                    *r = r.saturating_sub(1);
                }
            }
        }
    }

    fn concurrency(&self, batch: NodeId) -> usize {
        let step = self.tracker.dag().node(batch).step;
        match &self.template.steps[step].kind {
            StepKind::Batch { concurrency, .. } => *concurrency as usize,
            _ => 0,
        }
    }

    /// Enqueues the ready step `id` and starts its first attempt.
    fn launch(&mut self, id: NodeId, at: i64, out: &mut Vec<Order>) {
        let _ = self.steps[id.0].enqueue("every parent is complete or skipped", at);
        self.start_attempt(id, at, out);
    }

    /// Starts the next attempt of the enqueued step `id`.
    fn start_attempt(&mut self, id: NodeId, at: i64, out: &mut Vec<Order>) {
        let node = self.tracker.dag().node(id).clone();
        let step = &self.template.steps[node.step];
        let (handler, input) = match node.kind {
            NodeKind::Worker { batch, item } => {
                let StepKind::Batch { worker, .. } = &step.kind else {
                    return;
                };
                let items = self.results[batch.0].as_ref();
                let item = items.and_then(|v| v.get(item)).cloned();
                (worker.clone(), item.unwrap_or(Value::Null))
            }
            NodeKind::Convergence => {
                let dag = self.tracker.dag();
                let mut input = step_io::mapped(&step.inputs, &self.input, dag, &self.results);
                let results = step_io::worker_results(dag, id, &self.results);
                input.insert("results".into(), Value::Array(results));
                (step.handler.clone(), Value::Object(input))
            }
            _ => (
                step.handler.clone(),
                Value::Object(step_io::mapped(
                    &step.inputs,
                    &self.input,
                    self.tracker.dag(),
                    &self.results,
                )),
            ),
        };
        let seq = self.issued.len();
        let _ = self.steps[id.0].start(at);
        self.issued.push(Issued::Attempt(id));
        out.push(Order::Launch(Launch {
            seq,
            step: node.step,
            handler,
            input,
        }));
    }
}
