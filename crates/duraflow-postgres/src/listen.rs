//! LISTEN/NOTIFY: commits in any process announce new work on the schema's channel; every
//! store listening on it wakes its engine's dispatcher, workers and waiting clients.

use std::sync::Arc;
use std::time::Duration;

use duraflow_store::Notifier;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tracing::{debug, warn};

/// What a notification's payload names.
pub(crate) const TURNS: &str = "turns";
pub(crate) const TASKS: &str = "tasks";
/// Some instances finished or changed execution, which is not said (every watcher wakes).
pub(crate) const INSTANCES: &str = "instances";
/// The start of the payload that names one instance that finished or changed execution:
/// `instance:<id>` wakes the watchers of that instance only.
pub(crate) const INSTANCE: &str = "instance:";

/// The longest payload PostgreSQL takes is 7,999 bytes: an instance whose id would make a
/// longer one is announced as [`INSTANCES`].
const MAX_PAYLOAD: usize = 7_999;

/// The notifications that announce that `ids` finished or changed execution, one per instance
/// (PostgreSQL sends each distinct payload of a transaction once).
pub(crate) fn instance_payloads(ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            if INSTANCE.len() + id.len() <= MAX_PAYLOAD {
                format!("{INSTANCE}{id}")
            } else {
                INSTANCES.to_owned()
            }
        })
        .collect()
}

/// The channel of a schema.
pub(crate) fn channel(schema: &str) -> String {
    format!("duraflow_{schema}")
}

/// Wakes the in-process waiters named by a notification payload.
pub(crate) fn wake(notifier: &Notifier, payload: &str) {
    match payload {
        TURNS => notifier.turns.notify_waiters(),
        TASKS => notifier.tasks.notify_waiters(),
        INSTANCES => notifier.all_instances_changed(),
        _ => match payload.strip_prefix(INSTANCE) {
            Some(id) => notifier.instances_changed([id]),
            None => notifier.wake_all(),
        },
    }
}

/// Listens until the task is aborted. When the connection drops, notifications sent meanwhile
/// are lost: everyone is woken once it is back so they look for work (and the engine polls
/// anyway as a fallback).
pub(crate) async fn listen(pool: PgPool, channel: String, notifier: Arc<Notifier>) {
    let mut delay = Duration::from_millis(50);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot LISTEN for duraflow notifications; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            warn!(error = %e, "LISTEN {channel} failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            continue;
        }
        delay = Duration::from_millis(50);
        notifier.wake_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => wake(&notifier, n.payload()),
                Ok(None) => {
                    debug!("the LISTEN connection was re-established; waking everyone");
                    notifier.wake_all();
                }
                Err(e) => {
                    warn!(error = %e, "the LISTEN connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use duraflow_store::conformance::fired;

    use super::*;

    #[test]
    fn an_instance_is_announced_by_id_unless_the_id_is_too_long() {
        let long = "x".repeat(MAX_PAYLOAD);
        let payloads = instance_payloads(&["a".to_owned(), long]);
        assert_eq!(payloads, ["instance:a", INSTANCES]);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let fits = "y".repeat(MAX_PAYLOAD - INSTANCE.len());
        assert_eq!(
            instance_payloads(std::slice::from_ref(&fits)),
            [format!("{INSTANCE}{fits}")]
        );
    }

    #[test]
    fn a_notification_wakes_the_watchers_it_names() {
        let notifier = Notifier::new();
        let a = notifier.watch("a");
        let b = notifier.watch("b:c");
        let (a_changed, b_changed) = (a.notified(), b.notified());
        tokio::pin!(a_changed, b_changed);
        a_changed.as_mut().enable();
        b_changed.as_mut().enable();
        wake(&notifier, "instance:b:c");
        assert!(fired(b_changed), "the id is all that follows the prefix");
        assert!(
            !fired(a_changed.as_mut()),
            "another instance's watcher sleeps on"
        );
        wake(&notifier, INSTANCES);
        assert!(
            fired(a_changed),
            "a notification that names no instance wakes every watcher"
        );
    }
}
