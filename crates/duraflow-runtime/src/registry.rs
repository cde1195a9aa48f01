//! The names an engine can run.

use std::collections::BTreeMap;

use duraflow_core::WorkflowFn;

use crate::activity::ActivityFn;
use crate::error::EngineError;

/// Workflows and activities by registered name.
#[derive(Default)]
pub(crate) struct Registry {
    workflows: BTreeMap<String, WorkflowFn>,
    activities: BTreeMap<String, ActivityFn>,
}

impl Registry {
    pub(crate) fn add_workflow(&mut self, name: &str, f: WorkflowFn) -> Result<(), EngineError> {
        if self.workflows.insert(name.to_owned(), f).is_some() {
            return Err(EngineError::DuplicateName {
                kind: "workflow",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    pub(crate) fn add_activity(&mut self, name: &str, f: ActivityFn) -> Result<(), EngineError> {
        if self.activities.insert(name.to_owned(), f).is_some() {
            return Err(EngineError::DuplicateName {
                kind: "activity",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    pub(crate) fn workflow(&self, name: &str) -> Option<&WorkflowFn> {
        self.workflows.get(name)
    }

    pub(crate) fn activity(&self, name: &str) -> Option<&ActivityFn> {
        self.activities.get(name)
    }

    pub(crate) fn workflow_names(&self) -> Vec<String> {
        self.workflows.keys().cloned().collect()
    }

    pub(crate) fn activity_names(&self) -> Vec<String> {
        self.activities.keys().cloned().collect()
    }
}
