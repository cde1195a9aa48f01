//! The poison-activity crash tests: a supervisor that restarts `poison-worker` whenever its
//! activity kills it, and the checks on what happened.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use duraflow::{EventKind, Failure, FailureKind, InstanceStatus, Store};
use duraflow_crashtest::{read_log, LEASE_MS_VAR, POISON_ATTEMPTS, POISON_WORKFLOW_ID, SCHEMA_VAR};

use super::Workers;

/// SIGKILL's number.
const SIGKILL: i32 = 9;

/// How to start the poison worker.
pub(crate) struct PoisonSpec<'a> {
    /// `sqlite:<path>` or a `postgres://` URL.
    pub(crate) store: &'a str,
    /// The PostgreSQL schema (ignored for SQLite).
    pub(crate) schema: &'a str,
    /// The side-effect log.
    pub(crate) log: &'a Path,
    /// The turn and task leases, in milliseconds.
    pub(crate) lease_ms: u64,
}

/// Starts poison workers one after the other, as a supervisor (systemd, Kubernetes) would,
/// starting another each time one is killed, until one exits by itself. Returns how each
/// ended. Fails if a worker ends any other way than SIGKILL or success, or if more than
/// `max_starts` were needed.
pub(crate) fn supervise(spec: &PoisonSpec<'_>, max_starts: u32) -> Vec<ExitStatus> {
    let mut endings = Vec::new();
    for generation in 0..max_starts {
        let child = Command::new(env!("CARGO_BIN_EXE_poison-worker"))
            .arg(spec.store)
            .arg(spec.log)
            .arg(generation.to_string())
            .env(SCHEMA_VAR, spec.schema)
            .env(LEASE_MS_VAR, spec.lease_ms.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the poison worker starts");
        let mut workers = Workers::adopt(generation, child);
        let status = workers.wait(generation);
        endings.push(status);
        if status.success() {
            return endings;
        }
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "poison worker {generation} ended neither by SIGKILL nor by finishing: {status}"
        );
    }
    panic!("the poison workflow did not finish in {max_starts} worker starts: {endings:?}");
}

/// Checks the outcome: the activity ran exactly [`POISON_ATTEMPTS`] times, once in each of the
/// first workers, with attempts 1, 2, 3...; each of those workers was killed and the next one
/// finished; and the workflow completed with the activity's `lease_expired` failure as its
/// output, which is journaled once.
pub(crate) async fn check_poison_outcome(store: &dyn Store, log: &Path, endings: &[ExitStatus]) {
    let attempts = POISON_ATTEMPTS as usize;
    assert_eq!(
        endings.len(),
        attempts + 1,
        "one worker killed by each attempt, then one that finished: {endings:?}"
    );
    assert!(endings[..attempts]
        .iter()
        .all(|s| s.signal() == Some(SIGKILL)));

    let lines = read_log(log);
    let runs: Vec<(u32, u32)> = lines.iter().map(|l| (l.generation, l.attempt)).collect();
    let expected: Vec<(u32, u32)> = (0..POISON_ATTEMPTS).map(|g| (g, g + 1)).collect();
    assert_eq!(
        runs, expected,
        "(worker, attempt) of each run of the activity: one attempt per worker, no more than \
         the policy allows"
    );

    let info = store
        .instance(POISON_WORKFLOW_ID)
        .await
        .expect("the instance can be read")
        .expect("the instance exists");
    assert_eq!(
        info.status,
        InstanceStatus::Completed,
        "the workflow handled the failure: {info:?}"
    );
    let failure: Failure = info
        .output
        .expect("the workflow has an output")
        .decode()
        .expect("the output is the activity's failure");
    assert_eq!(failure.kind, FailureKind::LeaseExpired, "{failure}");
    assert_eq!(failure.attempts, Some(POISON_ATTEMPTS), "{failure}");
    assert_eq!(failure.source.as_deref(), Some("activity \"kill-worker\""));
    assert_eq!(
        failure.op.map(|op| op.to_string()),
        Some(lines[0].op.clone())
    );

    let journal = store
        .journal(POISON_WORKFLOW_ID, None)
        .await
        .expect("the journal can be read");
    let results: Vec<&Failure> = journal
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ActivityFailed { failure, .. } => Some(failure.as_ref()),
            EventKind::ActivityCompleted { .. } => panic!("the activity never completes"),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 1, "one result journaled: {results:?}");
    assert_eq!(results[0].kind, FailureKind::LeaseExpired);
}
