//! The activity worker pool: leases visible tasks and runs each attempt with its lease renewed.
//!
//! Tasks also arrive without a fetch, claimed by the commit of the turn that created them (see
//! the dispatcher); they run the same way ([`Attempts::spawn_attempt`]), under the same
//! permits.

use std::sync::Arc;

use crate::attempt::{run_attempt, Attempts};
use crate::lease_loop::LeaseLoop;

/// Runs until the engine stops (shutdown waits for the attempts in flight and cancels them
/// after its grace period).
pub(crate) async fn run_workers(attempts: Arc<Attempts>) {
    let shared = &attempts.shared;
    let running = attempts.clone();
    LeaseLoop {
        what: "activity tasks",
        permits: attempts.permits.clone(),
        wakeup: |n| &n.tasks,
        due: |d| d.task,
        fetch: |now, max| {
            shared
                .store
                .fetch_tasks(&shared.task_filter, now, max, shared.options.task_lease)
        },
        run: move |task, permit| {
            let attempts = running.clone();
            async move {
                // Boxed, as a turn is (`run_dispatcher`).
                Box::pin(run_attempt(&attempts, task, permit)).await;
            }
        },
    }
    .run(shared)
    .await
}
