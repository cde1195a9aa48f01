//! Engine settings.

use std::time::Duration;

/// How an engine runs: concurrency, batch sizes, leases and shutdown.
///
/// The defaults suit one process on a small machine; every field can be set through
/// [`crate::EngineBuilder`].
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Workflow turns run at once (default 256). A turn holds its place until its commit
    /// returns, so this also bounds how many commits can share one store transaction: with 64,
    /// the engine's one committer spent its time on transactions of about 30 commits each
    /// and bounded a run of many short workflows (BENCHMARKS.md, "More turns and activities at
    /// once").
    pub workflow_concurrency: usize,
    /// Activities run at once (default 256).
    pub activity_concurrency: usize,
    /// Most turns or tasks fetched in one store call (default 32).
    pub fetch_batch: usize,
    /// Most turn commits or task completions grouped into one store transaction (default 128).
    pub commit_batch: usize,
    /// How long a fetched turn is leased (default 60 s).
    pub turn_lease: Duration,
    /// How long an activity attempt is leased; it is renewed every third of this while the
    /// activity runs (default 30 s).
    pub task_lease: Duration,
    /// How often to look for work when the store gives no wakeups, and the longest sleep between
    /// looks when it does (default 1 s).
    pub poll_interval: Duration,
    /// After a store error, the first wait before trying again; it doubles up to 10 s
    /// (default 50 ms).
    pub store_retry_initial: Duration,
    /// How long shutdown waits for running activities before handing them back (default 30 s).
    pub shutdown_grace: Duration,
    /// How many instances to keep in memory between their turns, so that the next turn applies
    /// only its new messages instead of reading and replaying the whole journal (default
    /// 1,000; 0 keeps none). The least recently run instance is dropped first; a dropped one
    /// is replayed from its journal at its next turn.
    pub warm_instances: usize,
    /// The queues this engine serves (default `["default"]`): it fetches and claims only the
    /// turns of instances and the activity tasks in these queues, and of these only the ones
    /// whose workflow or activity it has registered.
    pub queues: Vec<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            workflow_concurrency: 256,
            activity_concurrency: 256,
            fetch_batch: 32,
            commit_batch: 128,
            turn_lease: Duration::from_secs(60),
            task_lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            store_retry_initial: Duration::from_millis(50),
            shutdown_grace: Duration::from_secs(30),
            warm_instances: 1_000,
            queues: vec![duraflow_core::DEFAULT_QUEUE.to_owned()],
        }
    }
}
