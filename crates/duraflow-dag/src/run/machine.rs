//! The run machine: the interpreter's decisions without any I/O.
//!
//! It is fed what the engine reports (a launched step succeeded with this output, or failed
//! for good with this message) and answers with the steps to launch next. The interpreter
//! workflow drives it with activity results; [`dag_status`](super::dag_status) drives a fresh
//! one with the results recorded in the journal, so both arrive at the same state.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;

use super::report::{DagReport, StepReport};
use super::step_io;
use crate::graph::{NodeId, NodeKind, Progress};
use crate::state::{Actor, Failed, History, RunState, StepAttempts, StepState};
use crate::template::{RetrySpec, StepKind, Template};
use crate::{Readiness, Registered};

/// A step to start now: its handler runs as an activity with `input`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Launch {
    /// The launch's number in the run, from 0: the order activities are scheduled in.
    pub(crate) seq: usize,
    /// The index of the template step whose options (retry, timeout, queue) apply.
    pub(crate) step: usize,
    /// The activity to run.
    pub(crate) handler: String,
    /// Its input.
    pub(crate) input: Value,
}

/// A step failed for good and so did the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunFailed {
    /// Why, naming the step.
    pub(crate) message: String,
}

/// One run's progress through its template.
pub(crate) struct RunMachine {
    template: Template,
    input: Value,
    tracker: Readiness,
    steps: Vec<StepAttempts>,
    results: Vec<Option<Value>>,
    run: History<RunState>,
    /// The node of each launch, by launch number.
    launched: Vec<NodeId>,
    /// Workers held back by their batch's concurrency limit, and how many run, by batch.
    held: HashMap<NodeId, VecDeque<NodeId>>,
    running: HashMap<NodeId, usize>,
    /// The attempts a failed activity reported making (its retries ran inside the activity).
    reported_attempts: HashMap<NodeId, u32>,
}

impl RunMachine {
    /// A run of `registered` with `input` (already checked), and the steps to launch first.
    pub(crate) fn new(registered: &Registered, input: Value, at: i64) -> (Self, Vec<Launch>) {
        let (tracker, roots) = Readiness::new(registered.dag().clone());
        let n = tracker.dag().len();
        let mut machine = RunMachine {
            template: registered.template().clone(),
            input,
            tracker,
            steps: vec![StepAttempts::new(); n],
            results: vec![None; n],
            run: History::new(RunState::Pending),
            launched: Vec::new(),
            held: HashMap::new(),
            running: HashMap::new(),
            reported_attempts: HashMap::new(),
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
        machine.advance(progress, at, &mut out);
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

    /// Whether every step is complete or skipped.
    pub(crate) fn is_finished(&self) -> bool {
        self.tracker.is_finished()
    }

    /// Launch `seq` succeeded with `output`: what to launch next, or the run's failure (a
    /// decision or batch result the template does not allow fails its step).
    pub(crate) fn succeeded(
        &mut self,
        seq: usize,
        output: Value,
        at: i64,
    ) -> Result<Vec<Launch>, RunFailed> {
        let Some(&node) = self.launched.get(seq) else {
            return Err(self.internal(format!("a result for launch {seq}, which never was"), at));
        };
        let name = self.tracker.dag().node(node).name.clone();
        let resolved = match self.tracker.dag().node(node).kind {
            NodeKind::Decision => {
                match step_io::chosen(self.tracker.dag(), &self.template, node, &output) {
                    Ok(ids) => self.tracker.decide(node, &ids).map_err(|e| e.to_string()),
                    Err(why) => return self.failed(seq, &why, None, at),
                }
            }
            NodeKind::Batch => match output.as_array().map(Vec::len) {
                Some(items) => self
                    .tracker
                    .complete_batch(node, items)
                    .map(|(progress, _)| progress)
                    .map_err(|e| e.to_string()),
                None => {
                    let why = format!(
                        "batch step `{name}`: the handler must return a JSON array of items, \
                         not {output}"
                    );
                    return self.failed(seq, &why, None, at);
                }
            },
            _ => self.tracker.complete(node).map_err(|e| e.to_string()),
        };
        let progress = resolved.map_err(|e| self.internal(e, at))?;
        let _ = self.steps[node.0].complete(at);
        self.grow();
        self.results[node.0] = Some(output);
        let mut out = Vec::new();
        self.release_worker(node, at, &mut out);
        self.advance(progress, at, &mut out);
        self.finish_if_done(at);
        Ok(out)
    }

    /// Launch `seq` failed for good (its activity's retries are spent, or its error is not
    /// retryable) after `attempts` attempts, if the failure says: a skippable step is skipped,
    /// any other fails the run, and the steps in flight are cancelled.
    pub(crate) fn failed(
        &mut self,
        seq: usize,
        message: &str,
        attempts: Option<u32>,
        at: i64,
    ) -> Result<Vec<Launch>, RunFailed> {
        let Some(&node) = self.launched.get(seq) else {
            return Err(self.internal(format!("a failure for launch {seq}, which never was"), at));
        };
        if let Some(n) = attempts {
            self.reported_attempts.insert(node, n);
        }
        let n = self.tracker.dag().node(node);
        let (name, skippable) = (n.name.clone(), self.template.steps[n.step].skippable);
        let attempt = &mut self.steps[node.0];
        match attempt.fail(message, &RetrySpec::none(), skippable, at) {
            Ok(Failed::Skipped) => {
                let progress = match self.tracker.skip(node) {
                    Ok(progress) => progress,
                    Err(e) => return Err(self.internal(e, at)),
                };
                let mut out = Vec::new();
                self.release_worker(node, at, &mut out);
                self.advance(progress, at, &mut out);
                self.finish_if_done(at);
                Ok(out)
            }
            _ => {
                let why = format!("step `{name}` failed for good: {message}");
                Err(self.fail_run(&why, at))
            }
        }
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
        }
    }

    /// Marks the run failed and the steps in flight cancelled.
    fn fail_run(&mut self, why: &str, at: i64) -> RunFailed {
        let _ = self.run.apply(RunState::Error, why, Actor::Engine, 0, at);
        for step in &mut self.steps {
            if matches!(step.state(), StepState::InProgress | StepState::Enqueued) {
                let reason = "the run failed: its activity was cancelled";
                let _ = step.apply_by(StepState::Cancelled, reason, Actor::Engine, at);
            }
        }
        RunFailed {
            message: why.to_owned(),
        }
    }

    /// A call the run machine cannot accept (a bug, or a journal it did not write): fails the
    /// run instead of panicking.
    fn internal(&mut self, why: impl std::fmt::Display, at: i64) -> RunFailed {
        self.fail_run(&format!("the DAG interpreter went wrong: {why}"), at)
    }

    fn finish_if_done(&mut self, at: i64) {
        if self.is_finished() {
            let reason = "every step is complete or skipped";
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

    /// Records skips and launches ready steps (holding workers back past their batch's limit).
    fn advance(&mut self, progress: Progress, at: i64, out: &mut Vec<Launch>) {
        for id in progress.skipped {
            let reason = "no chosen path leads to it";
            let _ = self.steps[id.0].apply_by(StepState::Skipped, reason, Actor::Engine, at);
        }
        for id in progress.ready {
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
    }

    /// A worker of `node`'s batch resolved: the next held worker may start.
    fn release_worker(&mut self, node: NodeId, at: i64, out: &mut Vec<Launch>) {
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

    fn launch(&mut self, id: NodeId, at: i64, out: &mut Vec<Launch>) {
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
        let seq = self.launched.len();
        let state = &mut self.steps[id.0];
        let _ = state.enqueue("every parent is complete or skipped", at);
        let _ = state.start(at);
        self.launched.push(id);
        out.push(Launch {
            seq,
            step: node.step,
            handler,
            input,
        });
    }
}
