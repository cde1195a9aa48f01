//! Batch expansion: the worker nodes a batch step adds to a run's copy of the graph.

use super::{Dag, Node, NodeId, NodeKind, ReadinessError};

impl Dag {
    /// Adds `items` worker nodes for the batch node `batch`, named `batch[0]`, `batch[1]`, …:
    /// each depends on `batch`, and every convergence step that depended on `batch` now
    /// depends on all the workers instead. Other children of `batch` are left as they are.
    /// With no items the graph is unchanged (the convergence steps receive an empty list).
    ///
    /// Returns the workers' ids. O(items + the degree of `batch` and its convergence steps).
    pub fn expand_batch(
        &mut self,
        batch: NodeId,
        items: usize,
    ) -> Result<Vec<NodeId>, ReadinessError> {
        let node = self
            .nodes
            .get(batch.0)
            .ok_or(ReadinessError::NoSuchNode(batch))?;
        if node.kind != NodeKind::Batch {
            return Err(ReadinessError::NotABatch(node.name.clone()));
        }
        let expanded = self.children[batch.0]
            .iter()
            .any(|c| matches!(self.nodes[c.0].kind, NodeKind::Worker { .. }));
        if expanded {
            return Err(ReadinessError::AlreadyExpanded(node.name.clone()));
        }
        if items == 0 {
            return Ok(Vec::new());
        }
        let (name, step) = (node.name.clone(), node.step);
        let converge: Vec<NodeId> = self.children[batch.0]
            .iter()
            .copied()
            .filter(|c| self.nodes[c.0].kind == NodeKind::Convergence)
            .collect();
        let workers: Vec<NodeId> = (self.nodes.len()..self.nodes.len() + items)
            .map(NodeId)
            .collect();
        for (item, &w) in workers.iter().enumerate() {
            let worker = Node {
                name: format!("{name}[{item}]"),
                kind: NodeKind::Worker { batch, item },
                step,
            };
            self.index.insert(worker.name.clone(), w);
            self.nodes.push(worker);
            self.parents.push(vec![batch]);
            self.children.push(converge.clone());
        }
        self.children[batch.0].retain(|c| !converge.contains(c));
        self.children[batch.0].extend(&workers);
        for c in &converge {
            self.parents[c.0].retain(|&p| p != batch);
            self.parents[c.0].extend(&workers);
        }
        Ok(workers)
    }
}
