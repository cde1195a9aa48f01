//! A turn for an instance whose workflow the engine does not have.

use crate::{Event, EventKind, Failure, FailureKind, Outcome, Timestamp};

use super::TurnInstance;

/// The events and outcome of a turn for an instance whose workflow is not registered with the
/// engine running it (`registered` names the ones that are): a cancellation or termination
/// among `deliveries` still ends the instance (the first one is journaled); any other delivery
/// fails it with kind `unknown_workflow` (after journaling `workflow_started` when the turn
/// `begins` the execution). The new events are appended to `events`; no deliveries, no
/// outcome.
pub fn unknown_workflow(
    instance: TurnInstance<'_>,
    begins: bool,
    deliveries: &[EventKind],
    registered: &[String],
    now: Timestamp,
    events: &mut Vec<Event>,
) -> Option<Outcome> {
    for kind in deliveries {
        let outcome = match kind {
            EventKind::CancelRequested { reason } => Outcome::Cancelled(reason.clone()),
            EventKind::TerminateRequested { reason } => Outcome::Terminated(reason.clone()),
            _ => continue,
        };
        events.push(Event {
            at: now,
            kind: kind.clone(),
        });
        return Some(outcome);
    }
    if deliveries.is_empty() {
        return None;
    }
    if begins {
        if let Some(start) = deliveries
            .iter()
            .find(|k| matches!(k, EventKind::WorkflowStarted { .. }))
        {
            events.push(Event {
                at: now,
                kind: start.clone(),
            });
        }
    }
    let failure = Failure::new(
        FailureKind::UnknownWorkflow,
        format!(
            "no workflow named {:?} is registered with the engine that ran this instance \
             (registered: {}); register it and start the instance again",
            instance.name,
            registered.join(", ")
        ),
    );
    events.push(Event {
        at: now,
        kind: EventKind::WorkflowFailed {
            failure: Box::new(failure.clone()),
        },
    });
    Some(Outcome::Failed(failure))
}
