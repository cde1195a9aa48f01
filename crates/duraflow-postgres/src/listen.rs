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
pub(crate) const INSTANCES: &str = "instances";

/// The channel of a schema.
pub(crate) fn channel(schema: &str) -> String {
    format!("duraflow_{schema}")
}

/// Wakes the in-process waiters named by a notification payload.
pub(crate) fn wake(notifier: &Notifier, payload: &str) {
    match payload {
        TURNS => notifier.turns.notify_waiters(),
        TASKS => notifier.tasks.notify_waiters(),
        INSTANCES => notifier.instances.notify_waiters(),
        _ => wake_all(notifier),
    }
}

fn wake_all(notifier: &Notifier) {
    notifier.turns.notify_waiters();
    notifier.tasks.notify_waiters();
    notifier.instances.notify_waiters();
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
        wake_all(&notifier);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => wake(&notifier, n.payload()),
                Ok(None) => {
                    debug!("the LISTEN connection was re-established; waking everyone");
                    wake_all(&notifier);
                }
                Err(e) => {
                    warn!(error = %e, "the LISTEN connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}
