//! Shared by `replay` and `parked`: waiting until a workflow is parked on an event wait, and
//! timing how long a raised event takes to resume it to completion.

use std::time::{Duration, Instant};

use duraflow::prelude::*;
use duraflow::{EventKind, InstanceInfo, Store};

use crate::Result;

/// How long a status read waits for a store wakeup before reading again.
const NAP: Duration = Duration::from_millis(50);

/// Waits until instance `id` is parked: running, with its journal ending in the wait for an
/// event. Returns the journal's length then. Fails if the instance finishes first, or is not
/// parked within `limit`.
///
/// Each check reads the instance's description (its status and journal length); the journal
/// itself is read at the first check and then only when its length has not moved since the
/// previous one, so a workflow that checkpoints thousands of steps on its way to the wait is
/// not read whole at each of them.
pub(crate) async fn wait_parked(
    store: &dyn Store,
    client: &Client,
    id: &str,
    limit: Duration,
) -> Result<usize> {
    let started = Instant::now();
    let mut last_len = None;
    loop {
        let notified = store.notifier().map(|n| n.instances.notified());
        tokio::pin!(notified);
        if let Some(n) = notified.as_mut().as_pin_mut() {
            n.enable();
        }
        let info = client.describe(id).await?;
        if info.status.is_terminal() {
            return Err(format!(
                "workflow {id} ended {} while it should be waiting for an event: {:?}",
                info.status, info.failure
            )
            .into());
        }
        let len = info.journal_len;
        let settled = last_len.is_none() || len == last_len;
        if info.status == InstanceStatus::Running && len.is_some() && settled {
            let journal = client.history(id, None).await?;
            if matches!(
                journal.last().map(|e| &e.kind),
                Some(EventKind::EventWaitStarted { .. })
            ) {
                return Ok(journal.len());
            }
        }
        last_len = len;
        if started.elapsed() > limit {
            return Err(format!(
                "workflow {id} was not waiting for its event after {limit:?} (status {})",
                info.status
            )
            .into());
        }
        match notified.as_mut().as_pin_mut() {
            Some(n) => {
                let _ = tokio::time::timeout(NAP, n).await;
            }
            None => tokio::time::sleep(NAP).await,
        }
    }
}

/// Raises `event` with `data` on the parked instance `id` and waits for it to finish: returns
/// the milliseconds from the raise call to the moment its completion was seen, and its final
/// state. Fails if it did not complete within `limit`, or ended otherwise than completed.
pub(crate) async fn resume(
    client: &Client,
    id: &str,
    event: &str,
    data: u64,
    limit: Duration,
) -> Result<(f64, InstanceInfo)> {
    let started = Instant::now();
    client.raise_event(id, event, &data).await?;
    let info = client.wait_finished(id, Some(limit)).await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if info.status != InstanceStatus::Completed {
        return Err(format!(
            "workflow {id} ended {} after event {event:?}: {:?}",
            info.status, info.failure
        )
        .into());
    }
    Ok((ms, info))
}
