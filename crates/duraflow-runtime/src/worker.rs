//! The activity worker pool: leases visible tasks and runs each attempt with its lease renewed.
//!
//! Tasks also arrive without a fetch, claimed by the commit of the turn that created them (see
//! the dispatcher); they run the same way, under the same permits.

use std::sync::Arc;

use duraflow_store::TaskWork;
use tokio::sync::OwnedSemaphorePermit;

use crate::attempt::run_attempt;
use crate::engine::{Inner, Writers};
use crate::lease_loop::LeaseLoop;

/// Runs until the engine stops (shutdown waits for the attempts in flight and cancels them
/// after its grace period).
pub(crate) async fn run_workers(inner: Arc<Inner>, writers: Arc<Writers>) {
    LeaseLoop {
        what: "activity tasks",
        permits: inner.task_permits.clone(),
        wakeup: |n| &n.tasks,
        due: |d| d.task,
        fetch: |inner: Arc<Inner>, now, max| async move {
            inner
                .store
                .fetch_tasks(now, max, inner.options.task_lease)
                .await
        },
        run: move |inner: Arc<Inner>, task, permit| {
            let writers = writers.clone();
            async move {
                run_attempt(&inner, &writers, task).await;
                drop(permit);
            }
        },
    }
    .run(inner.clone())
    .await
}

/// Runs a leased attempt in a task of its own (tracked by the engine), holding `permit`.
pub(crate) fn spawn_attempt(
    inner: &Arc<Inner>,
    writers: &Arc<Writers>,
    task: TaskWork,
    permit: OwnedSemaphorePermit,
) {
    let (inner, writers) = (inner.clone(), writers.clone());
    let tracker = inner.tracker.clone();
    tracker.spawn(async move {
        run_attempt(&inner, &writers, task).await;
        drop(permit);
    });
}
