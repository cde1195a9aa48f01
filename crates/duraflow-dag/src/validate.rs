//! The rules a template must satisfy before it is registered.
//!
//! [`validate`] checks all of them and reports every failure, each naming the template
//! (`namespace/name@version`) and the step, and saying what to change:
//!
//! - the template has at least one step, and step names are unique and well formed
//!   (not empty, no `.`, `[` or `]`: those are used by input references and batch workers);
//! - every dependency names a step of the template, and the dependencies form no cycle (the
//!   error prints the cycle's path, `a -> b -> c -> a`);
//! - every handler (and every batch step's worker) is one of the known handlers;
//! - every target of a decision step is a step that depends on it;
//! - every step is *reachable*, that is some run can start it. A step is unreachable when it
//!   depends on a decision step without being one of its targets (the decision can never
//!   choose it, so it is always skipped), or when every step it depends on is unreachable
//!   (a step with at least one reachable dependency can still run);
//! - a convergence step depends on exactly one batch step;
//! - an input mapped from a step's result names a step upstream of the reading step.
//!
//! The checks cost O(steps + edges), except the input rule: one search up the graph per
//! input that reads a step's result.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::graph::{find_cycle, Dag, Node, NodeId, NodeKind};
use crate::template::{StepKind, Template, TemplateId};

/// One rule a template breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The template has no step.
    #[error("template {template} has no steps: add at least one step")]
    NoSteps {
        /// The template.
        template: TemplateId,
    },
    /// A step name is empty or contains `.`, `[` or `]`.
    #[error("template {template}: step name `{step}` is not allowed: use a non-empty name without `.`, `[` or `]`")]
    InvalidStepName {
        /// The template.
        template: TemplateId,
        /// The name.
        step: String,
    },
    /// Two steps have the same name.
    #[error("template {template}: step `{step}` is declared more than once: give each step a unique name")]
    DuplicateStep {
        /// The template.
        template: TemplateId,
        /// The repeated name.
        step: String,
    },
    /// A dependency names no step of the template.
    #[error("template {template}: step `{step}` depends on `{dependency}`, which is not a step of the template: declare `{dependency}` or fix the name")]
    UnknownDependency {
        /// The template.
        template: TemplateId,
        /// The step with the dependency.
        step: String,
        /// The name it depends on.
        dependency: String,
    },
    /// The dependencies form a cycle.
    #[error("template {template}: steps depend on each other in a cycle {}: remove one of these dependencies", path.join(" -> "))]
    Cycle {
        /// The template.
        template: TemplateId,
        /// The cycle, first step repeated at the end: `[a, b, c, a]` for `a -> b -> c -> a`.
        path: Vec<String>,
    },
    /// A step's handler (or a batch step's worker) is not a known handler.
    #[error("template {template}: step `{step}` uses handler `{handler}`, which is not registered: register a handler of that name or fix the name")]
    MissingHandler {
        /// The template.
        template: TemplateId,
        /// The step.
        step: String,
        /// The unknown handler.
        handler: String,
    },
    /// A decision target is not a step that depends on the decision step.
    #[error("template {template}: decision step `{step}` lists `{target}` as a target, but `{target}` is not a step that depends on `{step}`: add `{step}` to the depends_on of `{target}`, or remove the target")]
    DecisionTargetNotDownstream {
        /// The template.
        template: TemplateId,
        /// The decision step.
        step: String,
        /// The target.
        target: String,
    },
    /// A step depends on a decision step without being one of its targets: it never runs.
    #[error("template {template}: step `{step}` is unreachable: it depends on decision step `{decision}` but is not one of its targets, so it would always be skipped: add it to the targets of `{decision}` or remove the dependency")]
    NotADecisionTarget {
        /// The template.
        template: TemplateId,
        /// The step that can never run.
        step: String,
        /// The decision step.
        decision: String,
    },
    /// Every step a step depends on is unreachable: it never runs.
    #[error("template {template}: step `{step}` is unreachable: every step it depends on is unreachable, so it would always be skipped: fix those steps or remove it")]
    Unreachable {
        /// The template.
        template: TemplateId,
        /// The step that can never run.
        step: String,
    },
    /// A convergence step depends on no batch step, or on more than one.
    #[error("template {template}: convergence step `{step}` depends on {batches} batch steps: a convergence step depends on exactly one batch step")]
    ConvergenceNeedsOneBatch {
        /// The template.
        template: TemplateId,
        /// The convergence step.
        step: String,
        /// How many batch steps it depends on.
        batches: usize,
    },
    /// An input reads the result of a step that is not upstream of the reading step.
    #[error("template {template}: input `{field}` of step `{step}` reads the result of `{source_step}`, which is not a step `{step}` depends on (directly or through others): add the dependency or fix the reference")]
    InputNotUpstream {
        /// The template.
        template: TemplateId,
        /// The reading step.
        step: String,
        /// The input field.
        field: String,
        /// The step whose result it reads.
        source_step: String,
    },
}

/// A template that breaks one or more rules: every [`ValidationError`] found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// The template.
    pub template: TemplateId,
    /// What is wrong, at least one item.
    pub errors: Vec<ValidationError>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template {} is invalid:", self.template)?;
        self.errors.iter().try_for_each(|e| write!(f, "\n  - {e}"))
    }
}

/// Checks every rule (see the [module docs](self)) against `template`, with `handlers` the
/// names of the known handlers, and returns the template's graph.
pub fn validate<I, S>(template: &Template, handlers: I) -> Result<Dag, Invalid>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let known: HashSet<String> = handlers
        .into_iter()
        .map(|h| h.as_ref().to_owned())
        .collect();
    let id = template.id();
    let mut errors = Vec::new();
    let by_name: HashMap<&str, &crate::template::Step> = template
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    for step in &template.steps {
        let mut need = vec![&step.handler];
        if let StepKind::Batch { worker, .. } = &step.kind {
            need.push(worker);
        }
        for handler in need.into_iter().filter(|h| !known.contains(*h)) {
            errors.push(ValidationError::MissingHandler {
                template: id.clone(),
                step: step.name.clone(),
                handler: handler.clone(),
            });
        }
        if let StepKind::Decision { targets } = &step.kind {
            for target in targets {
                let downstream = by_name
                    .get(target.as_str())
                    .is_some_and(|t| t.depends_on.contains(&step.name));
                if !downstream {
                    errors.push(ValidationError::DecisionTargetNotDownstream {
                        template: id.clone(),
                        step: step.name.clone(),
                        target: target.clone(),
                    });
                }
            }
        }
    }
    let dag = structure(template, &mut errors);
    if let Some(dag) = &dag {
        reachability(template, dag, &mut errors);
        convergence(template, dag, &mut errors);
        inputs(template, dag, &mut errors);
    }
    match dag {
        Some(dag) if errors.is_empty() => Ok(dag),
        _ => Err(Invalid {
            template: id,
            errors,
        }),
    }
}

/// The rules building the graph needs: steps, names, dependencies, no cycle. Adds what is
/// broken to `errors`; returns the graph when it could be built.
pub(crate) fn structure(template: &Template, errors: &mut Vec<ValidationError>) -> Option<Dag> {
    let id = template.id();
    let before = errors.len();
    if template.steps.is_empty() {
        errors.push(ValidationError::NoSteps {
            template: id.clone(),
        });
    }
    let mut index: HashMap<&str, NodeId> = HashMap::new();
    for (i, step) in template.steps.iter().enumerate() {
        let name = &step.name;
        if name.is_empty() || name.contains(['.', '[', ']']) {
            errors.push(ValidationError::InvalidStepName {
                template: id.clone(),
                step: name.clone(),
            });
        }
        if index.insert(name, NodeId(i)).is_some() {
            errors.push(ValidationError::DuplicateStep {
                template: id.clone(),
                step: name.clone(),
            });
        }
    }
    let mut parents = Vec::with_capacity(template.steps.len());
    // `listed[p] == i + 1` when step `i` already lists `p`: a dependency named twice is kept
    // once, in O(1) per dependency (a search of the list made a step with many dependencies,
    // a join of a wide fan-out, quadratic).
    let mut listed = vec![0usize; template.steps.len()];
    for (i, step) in template.steps.iter().enumerate() {
        let mut ps: Vec<NodeId> = Vec::new();
        for dep in &step.depends_on {
            match index.get(dep.as_str()) {
                Some(p) if listed[p.0] != i + 1 => {
                    listed[p.0] = i + 1;
                    ps.push(*p);
                }
                Some(_) => {}
                None => errors.push(ValidationError::UnknownDependency {
                    template: id.clone(),
                    step: step.name.clone(),
                    dependency: dep.clone(),
                }),
            }
        }
        parents.push(ps);
    }
    if errors.len() > before {
        return None;
    }
    let nodes = template.steps.iter().enumerate().map(|(i, s)| Node {
        name: s.name.clone(),
        kind: NodeKind::of(&s.kind),
        step: i,
    });
    let dag = Dag::from_parents(nodes.collect(), parents);
    let children: Vec<Vec<usize>> = dag
        .ids()
        .map(|n| dag.children(n).iter().map(|c| c.0).collect())
        .collect();
    if let Some(path) = find_cycle(&children) {
        errors.push(ValidationError::Cycle {
            template: id,
            path: path
                .into_iter()
                .map(|i| template.steps[i].name.clone())
                .collect(),
        });
        return None;
    }
    Some(dag)
}

/// Unreachable steps, in topological order so that a step's parents are judged first.
fn reachability(template: &Template, dag: &Dag, errors: &mut Vec<ValidationError>) {
    let id = template.id();
    let mut reachable = vec![true; dag.len()];
    for n in dag.topological_order() {
        let step = &template.steps[n.0];
        let not_chosen = dag
            .parents(n)
            .iter()
            .find(|p| match &template.steps[p.0].kind {
                StepKind::Decision { targets } => !targets.contains(&step.name),
                _ => false,
            });
        if let Some(d) = not_chosen {
            reachable[n.0] = false;
            errors.push(ValidationError::NotADecisionTarget {
                template: id.clone(),
                step: step.name.clone(),
                decision: template.steps[d.0].name.clone(),
            });
        } else if !dag.parents(n).is_empty() && dag.parents(n).iter().all(|p| !reachable[p.0]) {
            reachable[n.0] = false;
            errors.push(ValidationError::Unreachable {
                template: id.clone(),
                step: step.name.clone(),
            });
        }
    }
}

fn convergence(template: &Template, dag: &Dag, errors: &mut Vec<ValidationError>) {
    for n in dag
        .ids()
        .filter(|&n| dag.node(n).kind == NodeKind::Convergence)
    {
        let batches = dag
            .parents(n)
            .iter()
            .filter(|p| dag.node(**p).kind == NodeKind::Batch)
            .count();
        if batches != 1 {
            errors.push(ValidationError::ConvergenceNeedsOneBatch {
                template: template.id(),
                step: dag.node(n).name.clone(),
                batches,
            });
        }
    }
}

fn inputs(template: &Template, dag: &Dag, errors: &mut Vec<ValidationError>) {
    for (i, step) in template.steps.iter().enumerate() {
        for (field, source) in &step.inputs {
            let Some(source_step) = source.step() else {
                continue;
            };
            let upstream = dag
                .id(source_step)
                .is_some_and(|s| s != NodeId(i) && dag.is_upstream(s, NodeId(i)));
            if !upstream {
                errors.push(ValidationError::InputNotUpstream {
                    template: template.id(),
                    step: step.name.clone(),
                    field: field.clone(),
                    source_step: source_step.to_owned(),
                });
            }
        }
    }
}
