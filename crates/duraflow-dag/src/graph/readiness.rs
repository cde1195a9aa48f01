//! Incremental ready-step discovery.
//!
//! Each node keeps a counter of parents not yet resolved and a counter of parents that
//! resolved *live* (completed, or skipped as allowed). Resolving a node touches only its
//! children, so a whole run costs O(nodes + edges): no rescans of the graph.
//!
//! The skip rule: a node whose parents are all resolved is ready when at least one of them is
//! live, and is skipped (*pruned*) when none is. A decision prunes the targets it did not
//! choose at once, whatever their other parents; pruning then flows down to every node that
//! only pruned nodes lead to. Retries, backoff and "in progress" are not tracked here: a ready
//! node stays ready until it is resolved ([`StepAttempts`](crate::state::StepAttempts)
//! covers a step's attempts and backoff).

use super::{Dag, NodeId, NodeKind};

/// Where a node stands in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Some parent is not resolved yet.
    Waiting,
    /// Every parent is resolved and one is live: the step may be started.
    Ready,
    /// Completed (or skipped as allowed): its children count it as live.
    Done,
    /// Skipped because no path of live steps leads to it.
    Pruned,
}

/// What resolving a node changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Nodes that became ready.
    pub ready: Vec<NodeId>,
    /// Nodes that were pruned (skipped), in the order they were.
    pub skipped: Vec<NodeId>,
}

/// A call the graph or the tracker cannot accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadinessError {
    /// The id is not a node of the graph.
    #[error("node {0:?} is not in the graph")]
    NoSuchNode(NodeId),
    /// The step is not ready: it is waiting for parents, or already resolved.
    #[error("step `{name}` is {status:?}, not ready: only a ready step can be resolved")]
    NotReady {
        /// The step.
        name: String,
        /// Where it stands.
        status: Status,
    },
    /// A decision step must be resolved with [`Readiness::decide`].
    #[error("step `{0}` is a decision step: resolve it with `decide`, naming the chosen targets")]
    IsADecision(String),
    /// A batch step must be resolved with [`Readiness::complete_batch`].
    #[error("step `{0}` is a batch step: resolve it with `complete_batch`, giving the item count")]
    IsABatch(String),
    /// Only a decision step chooses targets.
    #[error("step `{0}` is not a decision step: resolve it with `complete`")]
    NotADecision(String),
    /// A decision chose a step that is not one of its targets.
    #[error("decision step `{decision}` chose `{chosen}`, which is not one of its targets")]
    NotATarget {
        /// The decision step.
        decision: String,
        /// The step it chose.
        chosen: String,
    },
    /// Only a batch step expands into workers.
    #[error("step `{0}` is not a batch step")]
    NotABatch(String),
    /// A batch step expands once.
    #[error("batch step `{0}` already has its workers")]
    AlreadyExpanded(String),
}

/// Tracks which nodes of a run's graph may start, as nodes are resolved.
#[derive(Clone, Debug)]
pub struct Readiness {
    dag: Dag,
    waiting: Vec<usize>,
    live: Vec<usize>,
    status: Vec<Status>,
    resolved: usize,
    edge_visits: usize,
}

impl Readiness {
    /// A tracker over the run's copy of the graph, and the nodes ready at the start (the roots).
    pub fn new(dag: Dag) -> (Readiness, Vec<NodeId>) {
        let waiting: Vec<usize> = dag.ids().map(|id| dag.parents(id).len()).collect();
        let status = waiting
            .iter()
            .map(|&w| {
                if w == 0 {
                    Status::Ready
                } else {
                    Status::Waiting
                }
            })
            .collect();
        let roots = dag.roots().collect();
        let live = vec![0; dag.len()];
        let tracker = Readiness {
            dag,
            waiting,
            live,
            status,
            resolved: 0,
            edge_visits: 0,
        };
        (tracker, roots)
    }

    /// The run's graph, with the workers added so far.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// Where `id` stands.
    ///
    /// # Panics
    /// When `id` is not a node of the run's graph.
    pub fn status(&self, id: NodeId) -> Status {
        self.status[id.0]
    }

    /// Whether every node is resolved (done or pruned): the run is complete.
    pub fn is_finished(&self) -> bool {
        self.resolved == self.dag.len()
    }

    /// How many times an edge has been followed so far. Each edge is followed once, when its
    /// parent resolves, so a finished run has followed exactly as many edges as the graph has:
    /// the work of a run grows with nodes + edges, never with a rescan. Tests check this
    /// count instead of timing anything.
    pub fn edge_visits(&self) -> usize {
        self.edge_visits
    }

    /// Resolves a ready normal, convergence or worker step as completed.
    pub fn complete(&mut self, id: NodeId) -> Result<Progress, ReadinessError> {
        self.check_ready(id)?;
        let name = || self.dag.node(id).name.clone();
        match self.dag.node(id).kind {
            NodeKind::Decision => Err(ReadinessError::IsADecision(name())),
            NodeKind::Batch => Err(ReadinessError::IsABatch(name())),
            _ => Ok(self.resolve(id, |_| true)),
        }
    }

    /// Resolves a ready step as skipped on purpose (a skippable step that failed for good, or
    /// an operator's skip): its children proceed as if it had completed. A skipped decision
    /// chooses no target; a skipped batch step has no items.
    pub fn skip(&mut self, id: NodeId) -> Result<Progress, ReadinessError> {
        self.check_ready(id)?;
        let decision = self.dag.node(id).kind == NodeKind::Decision;
        Ok(self.resolve(id, |_| !decision))
    }

    /// Resolves a ready decision step that chose `chosen` (each one of its targets, i.e. its
    /// children): the other targets are pruned, and so is every node only they lead to.
    pub fn decide(&mut self, id: NodeId, chosen: &[NodeId]) -> Result<Progress, ReadinessError> {
        self.check_ready(id)?;
        let node = self.dag.node(id);
        if node.kind != NodeKind::Decision {
            return Err(ReadinessError::NotADecision(node.name.clone()));
        }
        if let Some(bad) = chosen.iter().find(|c| !self.dag.children(id).contains(c)) {
            return Err(ReadinessError::NotATarget {
                decision: node.name.clone(),
                chosen: self.dag.node(*bad).name.clone(),
            });
        }
        Ok(self.resolve(id, |c| chosen.contains(&c)))
    }

    /// Resolves a ready batch step whose handler returned `items` items: adds the workers
    /// ([`Dag::expand_batch`]) and makes them ready. Returns the progress and the workers.
    pub fn complete_batch(
        &mut self,
        id: NodeId,
        items: usize,
    ) -> Result<(Progress, Vec<NodeId>), ReadinessError> {
        self.check_ready(id)?;
        let workers = self.dag.expand_batch(id, items)?;
        if let Some(&first) = workers.first() {
            for &c in self.dag.children(first) {
                // The convergence step waited for the batch step; now for every worker.
                self.waiting[c.0] += items - 1;
            }
        }
        let n = workers.len();
        self.waiting.extend(std::iter::repeat_n(1, n));
        self.live.extend(std::iter::repeat_n(0, n));
        self.status.extend(std::iter::repeat_n(Status::Waiting, n));
        Ok((self.resolve(id, |_| true), workers))
    }

    fn check_ready(&self, id: NodeId) -> Result<(), ReadinessError> {
        match self.status.get(id.0) {
            None => Err(ReadinessError::NoSuchNode(id)),
            Some(Status::Ready) => Ok(()),
            Some(&status) => Err(ReadinessError::NotReady {
                name: self.dag.node(id).name.clone(),
                status,
            }),
        }
    }

    /// Marks `id` done and tells its children; `keeps(child)` says whether the edge to a child
    /// is live (false prunes the child at once). Pruning then flows down the graph.
    fn resolve(&mut self, id: NodeId, keeps: impl Fn(NodeId) -> bool) -> Progress {
        let mut progress = Progress::default();
        let mut pruned = Vec::new();
        self.status[id.0] = Status::Done;
        self.resolved += 1;
        for i in 0..self.dag.children(id).len() {
            let c = self.dag.children(id)[i];
            if keeps(c) {
                self.release(c, true, &mut progress, &mut pruned);
            } else {
                self.waiting[c.0] -= 1;
                self.edge_visits += 1;
                if self.status[c.0] == Status::Waiting {
                    self.prune(c, &mut progress, &mut pruned);
                }
            }
        }
        while let Some(p) = pruned.pop() {
            for i in 0..self.dag.children(p).len() {
                let c = self.dag.children(p)[i];
                self.release(c, false, &mut progress, &mut pruned);
            }
        }
        progress
    }

    /// One parent of `c` resolved, live or pruned.
    fn release(
        &mut self,
        c: NodeId,
        is_live: bool,
        progress: &mut Progress,
        pruned: &mut Vec<NodeId>,
    ) {
        self.waiting[c.0] -= 1;
        self.edge_visits += 1;
        if is_live {
            self.live[c.0] += 1;
        }
        if self.status[c.0] == Status::Waiting && self.waiting[c.0] == 0 {
            if self.live[c.0] > 0 {
                self.status[c.0] = Status::Ready;
                progress.ready.push(c);
            } else {
                self.prune(c, progress, pruned);
            }
        }
    }

    fn prune(&mut self, c: NodeId, progress: &mut Progress, pruned: &mut Vec<NodeId>) {
        self.status[c.0] = Status::Pruned;
        self.resolved += 1;
        progress.skipped.push(c);
        pruned.push(c);
    }
}
