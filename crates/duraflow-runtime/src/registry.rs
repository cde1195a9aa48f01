//! The names an engine can run: its workflows (for the dispatcher) and its activities (for the
//! workers), each part handed to the one that runs it.

use std::collections::{BTreeMap, BTreeSet};

use duraflow_core::WorkflowFn;
use duraflow_store::{FetchFilter, RegisteredKind, Registration};

use crate::activity::ActivityFn;
use crate::error::EngineError;

/// Workflows and activities by registered name, as the builder collects them.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) workflows: Workflows,
    pub(crate) activities: Activities,
    /// The default queues of what was registered by type (`Workflow::QUEUE`,
    /// `ActivitySignature::QUEUE`), served besides the engine's own queues.
    pub(crate) queues: BTreeSet<String>,
}

/// Workflows by registered name, with the version each was registered with.
#[derive(Default)]
pub(crate) struct Workflows(BTreeMap<String, (WorkflowFn, Option<String>)>);

/// Activities by registered name.
#[derive(Default)]
pub(crate) struct Activities(BTreeMap<String, ActivityFn>);

impl Registry {
    pub(crate) fn add_workflow(&mut self, name: &str, f: WorkflowFn) -> Result<(), EngineError> {
        if self
            .workflows
            .0
            .insert(name.to_owned(), (f, None))
            .is_some()
        {
            return Err(EngineError::DuplicateName {
                kind: "workflow",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    pub(crate) fn add_activity(&mut self, name: &str, f: ActivityFn) -> Result<(), EngineError> {
        if self.activities.0.insert(name.to_owned(), f).is_some() {
            return Err(EngineError::DuplicateName {
                kind: "activity",
                name: name.to_owned(),
            });
        }
        Ok(())
    }
}

impl Registry {
    /// Notes the default queue of something registered by type, if it has one.
    pub(crate) fn add_queue(&mut self, queue: Option<&str>) {
        if let Some(queue) = queue {
            self.queues.insert(queue.to_owned());
        }
    }

    /// What an engine serving `queues` takes: the turns of its workflows and the tasks of its
    /// activities in those queues and in the default queues of what it registered by type,
    /// nothing else.
    pub(crate) fn filters(&self, queues: &[String]) -> (FetchFilter, FetchFilter) {
        let mut served: Vec<String> = queues.to_vec();
        served.extend(self.queues.iter().filter(|q| !queues.contains(q)).cloned());
        let turns = FetchFilter::queues(served.iter().cloned()).names(self.workflows.names());
        let tasks = FetchFilter::queues(served).names(self.activities.names());
        (turns, tasks)
    }
}

/// What an engine with these filters announces to the store (see
/// [`duraflow_store::registry`]): each workflow on each queue it takes turns from, with the
/// version it registered, each activity on each queue it takes tasks from.
pub(crate) fn announcement(
    turns: &FetchFilter,
    tasks: &FetchFilter,
    workflows: &Workflows,
) -> Vec<Registration> {
    let mut out = Vec::new();
    for (kind, filter) in [
        (RegisteredKind::Workflow, turns),
        (RegisteredKind::Activity, tasks),
    ] {
        for queue in &filter.queues {
            for name in filter.names.iter().flatten() {
                let version = match kind {
                    RegisteredKind::Workflow => workflows.version(name).map(str::to_owned),
                    RegisteredKind::Activity => None,
                };
                out.push(
                    Registration::new(kind, queue.clone(), name.clone()).with_version(version),
                );
            }
        }
    }
    out
}

impl Workflows {
    pub(crate) fn get(&self, name: &str) -> Option<&WorkflowFn> {
        self.0.get(name).map(|(f, _)| f)
    }

    /// The version `name` was registered with, if any.
    pub(crate) fn version(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|(_, v)| v.as_deref())
    }

    /// Sets the version of the workflow registered as `name`; `false` when none is.
    pub(crate) fn set_version(&mut self, name: &str, version: String) -> bool {
        match self.0.get_mut(name) {
            Some((_, v)) => {
                *v = Some(version);
                true
            }
            None => false,
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

impl Activities {
    pub(crate) fn get(&self, name: &str) -> Option<&ActivityFn> {
        self.0.get(name)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}
