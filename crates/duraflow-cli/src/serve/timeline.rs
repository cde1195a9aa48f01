//! An execution's journal read as a timeline of operations: one row per operation with when
//! it was scheduled and when it finished, its duration, attempts and failure, for the
//! dashboard and `GET /v1/instances/{id}/timeline`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use duraflow::crates::core::primitive::Primitive;
use duraflow::{Event, EventKind, Failure, Timestamp};
use serde::Serialize;

/// One durable operation of an execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Operation {
    /// Its operation id (`3`, `3.1`).
    pub(crate) op: String,
    /// Its primitive: `activity`, `timer`, `step`, `event_wait`, `child`, `context`,
    /// `callback`, `queue_event_emit`, `queue_event_await`.
    pub(crate) kind: &'static str,
    /// The name it carries (activity, step, event, child workflow, ..), if any.
    pub(crate) name: Option<String>,
    /// When it was scheduled (its issued event), in milliseconds since the epoch.
    pub(crate) scheduled_at: Timestamp,
    /// When it finished, if it has.
    pub(crate) finished_at: Option<Timestamp>,
    /// `finished_at - scheduled_at` in milliseconds, once finished.
    pub(crate) duration_ms: Option<i64>,
    /// `open`, `completed`, `failed` or `timed_out`.
    pub(crate) outcome: &'static str,
    /// Attempts made, where the journal tells: steps journal each one, activities report
    /// theirs only when they fail for good (0: not known, e.g. an activity that completed,
    /// whose failed attempts were retried off the journal).
    pub(crate) attempts: u32,
    /// Attempts that failed and were retried.
    pub(crate) retries: u32,
    /// Why it failed (its last failure, for a step that retried).
    pub(crate) failure: Option<String>,
    /// For a child workflow, the child's instance id.
    pub(crate) child: Option<String>,
    /// The journal positions of its events.
    pub(crate) events: Vec<usize>,
}

/// An event of no operation (the execution's start and end, events raised, cancellations).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Mark {
    /// Its journal position.
    pub(crate) index: usize,
    /// When it was journaled.
    pub(crate) at: Timestamp,
    /// Its type (`workflow_started`, `event_raised`, ..).
    pub(crate) event: &'static str,
    /// What it says: a name, a reason or a failure.
    pub(crate) detail: Option<String>,
    /// Whether it is a failure (`workflow_failed`).
    pub(crate) failed: bool,
}

/// A journal as operations, in the order they were scheduled, and the other events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Timeline {
    pub(crate) operations: Vec<Operation>,
    pub(crate) marks: Vec<Mark>,
}

fn kind_name(primitive: Primitive) -> &'static str {
    match primitive {
        Primitive::Activity => "activity",
        Primitive::Timer => "timer",
        Primitive::Step => "step",
        Primitive::EventWait => "event_wait",
        Primitive::Child => "child",
        Primitive::Context => "context",
        Primitive::Callback => "callback",
        Primitive::QueueEventEmit => "queue_event_emit",
        Primitive::QueueEventAwait => "queue_event_await",
        _ => "operation",
    }
}

fn describe(failure: &Failure) -> String {
    format!("{}: {}", failure.kind, failure.message)
}

/// Reads `journal` as a timeline.
pub(crate) fn timeline(journal: &[Event]) -> Timeline {
    let mut out = Timeline::default();
    let mut rows: HashMap<String, usize> = HashMap::new();
    // Event waits by name, oldest first, and events raised that no wait has taken yet: the
    // same pairing replay makes.
    let mut waiting: BTreeMap<String, VecDeque<usize>> = BTreeMap::new();
    let mut buffered: BTreeMap<String, VecDeque<Timestamp>> = BTreeMap::new();
    for (index, event) in journal.iter().enumerate() {
        let kind = &event.kind;
        let Some(op) = kind.op().map(ToString::to_string) else {
            mark(&mut out, &mut waiting, &mut buffered, index, event);
            continue;
        };
        let row = *rows.entry(op.clone()).or_insert_with(|| {
            out.operations.push(Operation {
                op: op.clone(),
                kind: kind.primitive().map_or("operation", kind_name),
                name: kind.name().map(ToOwned::to_owned),
                scheduled_at: event.at,
                finished_at: None,
                duration_ms: None,
                outcome: "open",
                attempts: 0,
                retries: 0,
                failure: None,
                child: None,
                events: Vec::new(),
            });
            out.operations.len() - 1
        });
        let operation = &mut out.operations[row];
        operation.events.push(index);
        let ended = match kind {
            EventKind::StepStarted { attempt, .. } => {
                operation.attempts = operation.attempts.max(*attempt);
                None
            }
            EventKind::StepRetrying { failure, .. } => {
                operation.retries += 1;
                operation.failure = Some(describe(failure));
                None
            }
            EventKind::ChildStarted { instance_id, .. } => {
                operation.child = Some(instance_id.clone());
                None
            }
            EventKind::EventWaitStarted { name, .. } => {
                match buffered.get_mut(name).and_then(VecDeque::pop_front) {
                    // An event raised before the wait: it takes it at once.
                    Some(_) => Some("completed"),
                    None => {
                        waiting.entry(name.clone()).or_default().push_back(row);
                        None
                    }
                }
            }
            EventKind::ActivityFailed { failure, .. } => {
                let attempts = failure.attempts.unwrap_or(1);
                operation.attempts = attempts;
                operation.retries = attempts.saturating_sub(1);
                operation.failure = Some(describe(failure));
                Some("failed")
            }
            EventKind::StepFailed { failure, .. }
            | EventKind::ChildFailed { failure, .. }
            | EventKind::CallbackFailed { failure, .. }
            | EventKind::ContextFailed { failure, .. } => {
                operation.failure = Some(describe(failure));
                Some("failed")
            }
            // A timer of an operation that is not a timer is that operation's timeout.
            EventKind::TimerFired { .. } if operation.kind != "timer" => Some("timed_out"),
            EventKind::ChildCancelled { reason, .. } => {
                operation.failure = Some(format!("cancelled: {reason}"));
                Some("failed")
            }
            EventKind::ActivityCompleted { .. }
            | EventKind::TimerFired { .. }
            | EventKind::StepCompleted { .. }
            | EventKind::ChildCompleted { .. }
            | EventKind::CallbackCompleted { .. }
            | EventKind::ContextCompleted { .. }
            | EventKind::QueueEventEmitCompleted { .. }
            | EventKind::QueueEventReceived { .. } => Some("completed"),
            _ => None,
        };
        if let Some(outcome) = ended {
            finish(operation, outcome, event.at);
            if outcome == "timed_out" {
                for rows in waiting.values_mut() {
                    rows.retain(|r| *r != row);
                }
            }
        }
    }
    out
}

fn finish(operation: &mut Operation, outcome: &'static str, at: Timestamp) {
    operation.outcome = outcome;
    operation.finished_at = Some(at);
    operation.duration_ms = Some(at.0 - operation.scheduled_at.0);
}

/// Records an event of no operation; an event raised ends the oldest wait for its name.
fn mark(
    out: &mut Timeline,
    waiting: &mut BTreeMap<String, VecDeque<usize>>,
    buffered: &mut BTreeMap<String, VecDeque<Timestamp>>,
    index: usize,
    event: &Event,
) {
    let (detail, failed) = match &event.kind {
        EventKind::EventRaised { name, taken_by, .. } => {
            let taker = match taken_by {
                Some(op) => {
                    let op = op.to_string();
                    out.operations.iter().position(|o| o.op == op)
                }
                None => waiting.get_mut(name).and_then(VecDeque::pop_front),
            };
            match taker {
                Some(row) => {
                    for rows in waiting.values_mut() {
                        rows.retain(|r| *r != row);
                    }
                    let operation = &mut out.operations[row];
                    operation.events.push(index);
                    finish(operation, "completed", event.at);
                }
                None => buffered
                    .entry(name.clone())
                    .or_default()
                    .push_back(event.at),
            }
            (Some(name.clone()), false)
        }
        EventKind::WorkflowStarted { name, .. } => (Some(name.clone()), false),
        EventKind::CancelRequested { reason } | EventKind::TerminateRequested { reason } => {
            (Some(reason.clone()), true)
        }
        EventKind::WorkflowFailed { failure } => (Some(describe(failure)), true),
        _ => (None, false),
    };
    out.marks.push(Mark {
        index,
        at: event.at,
        event: event.kind.type_name(),
        detail,
        failed,
    });
}

#[cfg(test)]
mod tests {
    use duraflow::{FailureKind, OpId, Payload};

    use super::*;

    fn at(ms: i64, kind: EventKind) -> Event {
        Event {
            at: Timestamp(ms),
            kind,
        }
    }

    fn op(n: u32) -> OpId {
        OpId::new(None, n)
    }

    #[test]
    fn operations_have_their_times_attempts_and_failures() {
        let null = Payload::null();
        let mut failure = Failure::new(FailureKind::Application, "card declined");
        failure.attempts = Some(3);
        let journal = vec![
            at(
                0,
                EventKind::WorkflowStarted {
                    name: "fulfil".into(),
                    input: null.clone(),
                    parent: None,
                    headers: Default::default(),
                    retry: None,
                    version: None,
                },
            ),
            at(
                1,
                EventKind::ActivityScheduled {
                    op: op(1),
                    name: "charge".into(),
                    input: null.clone(),
                    options: Default::default(),
                },
            ),
            at(
                2,
                EventKind::EventWaitStarted {
                    op: op(2),
                    name: "approved".into(),
                },
            ),
            at(
                9,
                EventKind::ActivityFailed {
                    op: op(1),
                    failure: Box::new(failure),
                },
            ),
            at(
                12,
                EventKind::EventRaised {
                    name: "approved".into(),
                    data: null.clone(),
                    taken_by: None,
                },
            ),
        ];
        let t = timeline(&journal);
        assert_eq!(t.operations.len(), 2);
        let charge = &t.operations[0];
        assert_eq!(
            (charge.kind, charge.name.as_deref(), charge.outcome),
            ("activity", Some("charge"), "failed")
        );
        assert_eq!((charge.attempts, charge.retries), (3, 2));
        assert_eq!(charge.duration_ms, Some(8));
        assert!(charge
            .failure
            .as_deref()
            .unwrap_or("")
            .contains("card declined"));
        let wait = &t.operations[1];
        assert_eq!((wait.kind, wait.outcome), ("event_wait", "completed"));
        assert_eq!(
            (wait.finished_at, wait.events.clone()),
            (Some(Timestamp(12)), vec![2, 4])
        );
        let marks: Vec<&str> = t.marks.iter().map(|m| m.event).collect();
        assert_eq!(marks, ["workflow_started", "event_raised"]);
    }
}
