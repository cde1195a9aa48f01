//! Whether a failed execution is retried as a new attempt (the instance's retry policy), and
//! what the attempt leaves for the next one.

use std::time::Duration;

use duraflow_core::plan::{workflow_retry, AttemptRecord, WorkflowRetry};
use duraflow_core::{attempt_record, Event, Outcome, Timestamp};
use duraflow_store::{InstanceInfo, TurnCommit};

use super::{planned, TurnDecision};
use crate::shared::Shared;

/// The retry of the execution `commit` ends with `outcome`, if the instance's policy allows
/// one, with what the attempt leaves for the next: read from the whole journal (the stored part
/// before the commit's events, which a warm run no longer holds, then the commit's). A journal
/// that cannot be read abandons the turn, to be redone later.
pub(super) async fn planned_retry(
    shared: &Shared,
    instance: &InstanceInfo,
    outcome: Option<&Outcome>,
    commit: &TurnCommit,
    now: Timestamp,
) -> Result<Option<(WorkflowRetry, AttemptRecord)>, TurnDecision> {
    if instance.options.retry.is_none() || !matches!(outcome, Some(Outcome::Failed(_))) {
        return Ok(None);
    }
    let mut journal: Vec<Event> = if commit.journal_base == 0 {
        Vec::new()
    } else {
        let mut stored = shared
            .store
            .journal(&instance.id, Some(instance.execution))
            .await
            .map_err(|e| TurnDecision::Abandon {
                reason: format!(
                    "cannot read the journal of instance {:?} to retry its failed attempt: {e}",
                    instance.id
                ),
                retry: Duration::from_secs(5),
            })?;
        stored.truncate(commit.journal_base);
        stored
    };
    journal.extend(commit.new_events.iter().cloned());
    let (attempt, recorded, events) = attempt_record(&journal);
    Ok(workflow_retry(planned(instance), attempt, outcome, now)
        .map(|retry| (retry, AttemptRecord { recorded, events })))
}
