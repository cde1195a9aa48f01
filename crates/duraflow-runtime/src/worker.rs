//! The activity worker pool: leases visible tasks and runs each attempt with its lease renewed.

use std::sync::Arc;

use duraflow_store::TaskCompletion;

use crate::attempt::run_attempt;
use crate::batcher::Batcher;
use crate::engine::Inner;
use crate::lease_loop::LeaseLoop;

/// Runs until the engine stops, then waits for the attempts in flight (shutdown cancels them
/// after its grace period).
pub(crate) async fn run_workers(inner: Arc<Inner>, completer: Batcher<TaskCompletion>) {
    LeaseLoop {
        what: "activity tasks",
        concurrency: inner.options.activity_concurrency,
        wakeup: |n| &n.tasks,
        due: |d| d.task,
        fetch: |inner: Arc<Inner>, now, max| async move {
            inner
                .store
                .fetch_tasks(now, max, inner.options.task_lease)
                .await
        },
        run: move |inner: Arc<Inner>, task| {
            let completer = completer.clone();
            async move { run_attempt(&inner, &completer, task).await }
        },
    }
    .run(inner.clone())
    .await
}
