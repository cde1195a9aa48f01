//! Workflow-level retries: what a new attempt of a failed workflow starts with.
//!
//! When a workflow started with a retry policy fails with a retryable error, its execution ends
//! and a new one begins after the policy's backoff, with the same input. The new attempt runs
//! the code from the start; every operation that completed in an earlier attempt returns its
//! recorded result at once (nothing is scheduled, nothing runs again), so only what failed or
//! never finished runs again. The results travel in the new execution's start and are
//! journaled in its `workflow_started`, so replay hands out exactly the same ones.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind};
use crate::op_id::OpId;

/// An operation that completed in an earlier attempt: the event that issued it (matched against
/// what the new attempt asks for: same kind of operation, same id, same name) and the event
/// that completed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedOp {
    /// The issued event (`activity_scheduled`, `step_started`, `timer_created`, ...).
    pub issued: EventKind,
    /// Its successful completion (`activity_completed`, `step_completed`, `timer_fired`, ...).
    pub completion: EventKind,
}

/// What the start of a new attempt carries (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptStart {
    /// The attempt that starts: 2 for the first retry.
    pub attempt: u32,
    /// The operations earlier attempts completed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recorded: Vec<RecordedOp>,
}

/// Whether `kind` completes an operation successfully, in a way a later attempt can reuse.
fn reusable_completion(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::ActivityCompleted { .. }
            | EventKind::StepCompleted { .. }
            | EventKind::ChildCompleted { .. }
            | EventKind::TimerFired { .. }
    )
}

/// Whether `kind` issues an operation whose completion a later attempt can reuse.
fn reusable_issue(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::ActivityScheduled { .. }
            | EventKind::StepStarted { .. }
            | EventKind::ChildStarted { .. }
            | EventKind::TimerCreated { .. }
    )
}

/// The operations a next attempt reuses: those `earlier` attempts completed, and those this
/// attempt's `journal` shows completed (an operation's first issue, with its successful
/// completion). Ordered by where they completed, earlier attempts first.
pub fn recorded_ops(earlier: &[RecordedOp], journal: &[Event]) -> Vec<RecordedOp> {
    let mut out: Vec<RecordedOp> = earlier.to_vec();
    let mut known: HashMap<OpId, usize> = HashMap::new();
    for (i, r) in out.iter().enumerate() {
        if let Some(op) = r.issued.op() {
            known.insert(op.clone(), i);
        }
    }
    let mut issued: HashMap<&OpId, &EventKind> = HashMap::new();
    for event in journal {
        let kind = &event.kind;
        let Some(op) = kind.op() else { continue };
        if reusable_issue(kind) {
            issued.entry(op).or_insert(kind);
        } else if reusable_completion(kind) && !known.contains_key(op) {
            if let Some(issue) = issued.get(op) {
                known.insert(op.clone(), out.len());
                out.push(RecordedOp {
                    issued: (*issue).clone(),
                    completion: kind.clone(),
                });
            }
        }
    }
    out
}

/// The attempt an execution runs and what it leaves for the next one, read from its whole
/// journal: the attempt and the earlier attempts' operations from its `workflow_started`, the
/// operations it completed, and every external event it received.
pub fn attempt_record(journal: &[Event]) -> (u32, Vec<RecordedOp>, Vec<(String, crate::Payload)>) {
    let (attempt, earlier): (u32, &[RecordedOp]) = match journal.first().map(|e| &e.kind) {
        Some(EventKind::WorkflowStarted {
            retry: Some(start), ..
        }) => (start.attempt, &start.recorded),
        _ => (1, &[]),
    };
    let events = journal
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::EventRaised { name, data, .. } => Some((name.clone(), data.clone())),
            _ => None,
        })
        .collect();
    (attempt, recorded_ops(earlier, journal), events)
}
