//! What a step receives and what a decision's result means: pure functions of the run's
//! graph, input and results, for the run machine.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::graph::{Dag, NodeId, NodeKind};
use crate::template::{InputRef, StepKind, Template};

/// The results of the workers the convergence step `id` waits for, in item order (null for a
/// worker with no result).
pub(super) fn worker_results(dag: &Dag, id: NodeId, results: &[Option<Value>]) -> Vec<Value> {
    let mut workers: Vec<(usize, NodeId)> = dag
        .parents(id)
        .iter()
        .filter_map(|&p| match dag.node(p).kind {
            NodeKind::Worker { item, .. } => Some((item, p)),
            _ => None,
        })
        .collect();
    workers.sort_unstable();
    workers
        .into_iter()
        .map(|(_, w)| results.get(w.0).cloned().flatten().unwrap_or(Value::Null))
        .collect()
}

/// A step's input fields from the run's input and upstream results (null where the source
/// is missing, e.g. a skipped step's result).
pub(super) fn mapped(
    inputs: &BTreeMap<String, InputRef>,
    input: &Value,
    dag: &Dag,
    results: &[Option<Value>],
) -> Map<String, Value> {
    inputs
        .iter()
        .map(|(field, source)| {
            let from = match source.step() {
                None => Some(input),
                Some(step) => dag
                    .id(step)
                    .and_then(|id| results.get(id.0))
                    .and_then(Option::as_ref),
            };
            let value = from.and_then(|v| source.select(v)).cloned();
            (field.clone(), value.unwrap_or(Value::Null))
        })
        .collect()
}

/// The targets the output of the decision step `node` names: a JSON array of target names
/// (or one name), each one of the decision's declared targets.
pub(super) fn chosen(
    dag: &Dag,
    template: &Template,
    node: NodeId,
    output: &Value,
) -> Result<Vec<NodeId>, String> {
    let name = &dag.node(node).name;
    let kind = template.steps.get(dag.node(node).step).map(|s| &s.kind);
    let Some(StepKind::Decision { targets }) = kind else {
        return Err(format!("step `{name}` is not a decision step"));
    };
    let names: Vec<&str> = match output {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => match items.iter().map(Value::as_str).collect() {
            Some(names) => names,
            None => return Err(not_names(name, output)),
        },
        _ => return Err(not_names(name, output)),
    };
    names
        .into_iter()
        .map(|chosen| {
            targets
                .iter()
                .any(|t| t == chosen)
                .then(|| dag.id(chosen))
                .flatten()
                .ok_or_else(|| {
                    format!(
                        "decision step `{name}` chose `{chosen}`, which is not one of its \
                         targets [{}]",
                        targets.join(", ")
                    )
                })
        })
        .collect()
}

fn not_names(name: &str, output: &Value) -> String {
    format!(
        "decision step `{name}`: the handler must return the names of the targets to run \
         (a JSON array of strings), not {output}"
    )
}
