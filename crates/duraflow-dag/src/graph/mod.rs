//! The indexed DAG of a template, and the [`Readiness`] tracker that runs through it.
//!
//! A [`Dag`] numbers the steps (`NodeId`s are indexes), keeps each node's parents and children
//! and can list the nodes in topological order. It is built from a template by
//! [`Dag::from_template`] (which rejects duplicate names, unknown dependencies and cycles) or
//! by [`validate`](crate::validate()) (which checks every rule). A run works on its own copy:
//! [`Dag::expand_batch`] adds the worker nodes of a batch step to that copy.

mod batch;
mod cycle;
mod readiness;

use std::collections::HashMap;

use crate::template::{StepKind, Template};
use crate::validate::Invalid;

pub use cycle::find_cycle;
pub use readiness::{Progress, Readiness, ReadinessError, Status};

/// A node's index in its [`Dag`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// What a node of the graph is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A normal step of the template.
    Normal,
    /// A decision step: its children are its targets.
    Decision,
    /// A batch step: its workers are added when it completes.
    Batch,
    /// A convergence step: it waits for every worker of its batch step.
    Convergence,
    /// Worker `item` of the batch step `batch`, added by [`Dag::expand_batch`].
    Worker {
        /// The batch step that produced the item.
        batch: NodeId,
        /// The item's position in the batch step's result.
        item: usize,
    },
}

/// One node: a template step, or a batch worker added to a run's copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The step's name; a worker is named `batch[item]`.
    pub name: String,
    /// What the node is.
    pub kind: NodeKind,
    /// The index of the template step this node is (a worker: its batch step's), into
    /// [`Template::steps`].
    pub step: usize,
}

/// An indexed directed acyclic graph of steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dag {
    nodes: Vec<Node>,
    parents: Vec<Vec<NodeId>>,
    children: Vec<Vec<NodeId>>,
    index: HashMap<String, NodeId>,
}

impl Dag {
    /// The graph of `template`'s steps. Checks only what building needs (unique names, known
    /// dependencies, no cycle); [`validate`](crate::validate()) checks every rule.
    pub fn from_template(template: &Template) -> Result<Dag, Invalid> {
        let mut errors = Vec::new();
        match crate::validate::structure(template, &mut errors) {
            Some(dag) if errors.is_empty() => Ok(dag),
            _ => Err(Invalid {
                template: template.id(),
                errors,
            }),
        }
    }

    /// A graph from its nodes and each node's parents (indexes into `nodes`). The caller
    /// guarantees the edges are acyclic and the names unique.
    pub(crate) fn from_parents(nodes: Vec<Node>, parents: Vec<Vec<NodeId>>) -> Dag {
        let mut children = vec![Vec::new(); nodes.len()];
        for (child, ps) in parents.iter().enumerate() {
            for p in ps {
                children[p.0].push(NodeId(child));
            }
        }
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), NodeId(i)))
            .collect();
        Dag {
            nodes,
            parents,
            children,
            index,
        }
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node id, in index order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).map(NodeId)
    }

    /// The node `id`.
    ///
    /// # Panics
    /// When `id` is not a node of this graph.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// The node named `name`.
    pub fn id(&self, name: &str) -> Option<NodeId> {
        self.index.get(name).copied()
    }

    /// The nodes `id` depends on.
    pub fn parents(&self, id: NodeId) -> &[NodeId] {
        &self.parents[id.0]
    }

    /// The nodes that depend on `id`.
    pub fn children(&self, id: NodeId) -> &[NodeId] {
        &self.children[id.0]
    }

    /// The nodes with no parent, where a run starts.
    pub fn roots(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.ids().filter(|id| self.parents[id.0].is_empty())
    }

    /// Every node, each after all of its parents (Kahn's algorithm, O(nodes + edges)).
    pub fn topological_order(&self) -> Vec<NodeId> {
        let mut waiting: Vec<usize> = self.parents.iter().map(Vec::len).collect();
        let mut order: Vec<NodeId> = self.roots().collect();
        let mut next = 0;
        while let Some(&id) = order.get(next) {
            next += 1;
            for &c in &self.children[id.0] {
                waiting[c.0] -= 1;
                if waiting[c.0] == 0 {
                    order.push(c);
                }
            }
        }
        order
    }

    /// Whether `ancestor` is `id` or one of its ancestors (a search up the parents).
    pub fn is_upstream(&self, ancestor: NodeId, id: NodeId) -> bool {
        let mut seen = vec![false; self.nodes.len()];
        let mut todo = vec![id];
        while let Some(n) = todo.pop() {
            if n == ancestor {
                return true;
            }
            for &p in &self.parents[n.0] {
                if !std::mem::replace(&mut seen[p.0], true) {
                    todo.push(p);
                }
            }
        }
        false
    }
}

impl NodeKind {
    /// The node kind of a template step kind.
    pub fn of(kind: &StepKind) -> NodeKind {
        match kind {
            StepKind::Normal => NodeKind::Normal,
            StepKind::Decision { .. } => NodeKind::Decision,
            StepKind::Batch { .. } => NodeKind::Batch,
            StepKind::Convergence => NodeKind::Convergence,
        }
    }
}
