//! `recovery`: N workflows in flight, their worker process killed with SIGKILL and started
//! again; how long until every workflow has completed, and how many activities ran twice.
//!
//! 1. The benchmark opens the store and starts N workflows of [`ACTIVITIES`] sequential
//!    activities through a client of its own (it runs no engine).
//! 2. It starts a worker process (`duraflow-bench recovery-worker`, see [`worker`]) that runs
//!    them. Each activity appends a line to a side-effect log, which survives the kill.
//! 3. Once half of the N × [`ACTIVITIES`] activities are in the log, the worker is killed with
//!    SIGKILL, and a new one is started at once.
//! 4. The benchmark watches the log and the store's counts, and times, from the restart:
//!    the new worker's engine running (`worker_ready_s`), its first activity
//!    (`first_activity_s`), its first re-run of an activity the killed worker had run
//!    (`first_rerun_s`: work held by the dead worker's leases comes back when the store takes
//!    them over, or else when they expire),
//!    and every workflow completed (`all_complete_s`).
//! 5. It checks that every workflow completed with the right output, that each activity's
//!    result is in its journal exactly once, and that every activity ran (violations
//!    otherwise); re-executions are the log lines beyond N × [`ACTIVITIES`].
//!
//! The worker runs with the engine's default options except the leases (`--turn-lease-ms`,
//! `--task-lease-ms`, default the engine's 60 s and 30 s). Work the killed worker had leased
//! comes back as soon as the store knows that worker is gone (SQLite's owner files,
//! PostgreSQL's lease owners: both within about a second) rather than when those leases
//! expire. The memory store cannot survive a kill: the workload does not apply to it.

pub(crate) mod worker;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use duraflow::{Client, EngineOptions, EventKind, InstanceStatus, ListFilter};

use crate::cli::Config;
use crate::engine::start_all;
use crate::report::Figures;
use crate::store::{StoreEnv, StoreKind};
use crate::Result;

use worker::{expected_output, CHAIN, COMMAND};
pub(crate) use worker::{ACTIVITIES, ACTIVITY_MS};

/// Why the workload does not run on the memory store.
pub(crate) const NOT_ON_MEMORY: &str =
    "not applicable: a memory store does not survive its worker process being killed";

/// The share of the activities logged when the worker is killed.
const KILL_AT: f64 = 0.5;

/// How often the log is read before the kill (the kill should land close to the half).
const TAIL_FAST: Duration = Duration::from_millis(1);

/// How often the log and the store's counts are read after the restart.
const TAIL_SLOW: Duration = Duration::from_millis(10);

/// A gap longer than this after the restart in which no activity was logged and no workflow
/// completed counts as a stall: the new worker idle, waiting for the killed one's leases to
/// expire.
const STALL: Duration = Duration::from_millis(250);

/// How long a worker may take to exit once told to stop.
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// The leases the worker runs with: `--turn-lease-ms` and `--task-lease-ms`, else the
/// engine's defaults.
pub(crate) fn leases(config: &Config) -> (Duration, Duration) {
    let defaults = EngineOptions::default();
    (
        config
            .turn_lease_ms
            .map_or(defaults.turn_lease, Duration::from_millis),
        config
            .task_lease_ms
            .map_or(defaults.task_lease, Duration::from_millis),
    )
}

/// Runs the workload with `n` workflows.
pub(crate) async fn run(env: &StoreEnv, n: u64, config: &Config) -> Result<Figures> {
    let store_args = worker_store_args(env)?;
    let (turn_lease, task_lease) = leases(config);
    let dir = tempfile::Builder::new()
        .prefix("duraflow-bench-recovery-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory for the log: {e}"))?;
    let log = dir.path().join("effects.log");
    let spawn = |generation: u32| {
        let mut args = store_args.clone();
        for (flag, value) in [
            ("--log", log.clone().into_os_string()),
            ("--generation", generation.to_string().into()),
            ("--turn-lease-ms", turn_lease.as_millis().to_string().into()),
            ("--task-lease-ms", task_lease.as_millis().to_string().into()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        WorkerProcess::spawn(&args, generation)
    };

    let opened = env.open().await?;
    let client = Client::new(opened.store.clone());
    let runs: Vec<(String, u64)> = (0..n).map(|i| (id(i), i)).collect();
    start_all(&client, CHAIN, &runs).await?;
    drop(runs);
    let expected = n * ACTIVITIES;
    // Generous: both leases, ten minutes, and 10 ms per workflow (PostgreSQL needs about 5 ms
    // per workflow here).
    let deadline = turn_lease
        + task_lease
        + Duration::from_secs(600)
        + Duration::from_millis(10).saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));

    // The first worker, killed half way.
    let mut tail = LogTail::new(&log);
    let first_started = Instant::now();
    let mut first = spawn(0)?;
    let kill_at = ((expected as f64 * KILL_AT).ceil() as u64).max(1);
    until_half(&mut first, &mut tail, kill_at, deadline).await?;
    first.kill()?;
    let killed_after = first_started.elapsed();
    tail.read()?;
    let logged_at_kill = tail.activities;
    if logged_at_kill >= expected {
        return Err(format!(
            "the worker ran all {expected} activities before it could be killed; use a \
             larger --n"
        )
        .into());
    }
    eprintln!(
        "duraflow-bench: recovery: worker killed after {:.2} s with {logged_at_kill} of \
         {expected} activities logged; restarting",
        killed_after.as_secs_f64()
    );

    // The second worker, timed until every workflow has completed.
    let restarted = Instant::now();
    let mut second = spawn(1)?;
    let mut seen = Progress {
        last_progress: (logged_at_kill, 0, Duration::ZERO),
        ..Progress::default()
    };
    let store = opened.store.clone();
    until_complete(
        &mut second,
        &mut tail,
        &mut seen,
        &*store,
        n,
        restarted,
        deadline,
    )
    .await?;
    let all_complete = restarted.elapsed();
    let status = second.stop().await?;
    if !status.success() {
        return Err(format!("the restarted worker exited with {status}").into());
    }
    // The counts below include what the worker logged after the last look.
    tail.read()?;

    // Check what happened.
    let mut f = Figures::new();
    let violations = verify(&client, n).await?;
    let ran: HashSet<&(String, String)> = tail.runs.keys().collect();
    let reexecuted = tail.activities.saturating_sub(expected);
    let rerun_distinct = tail.runs.values().filter(|g| g.len() > 1).count();
    f.num("all_complete_s", all_complete.as_secs_f64(), 3);
    for (key, at) in [
        ("worker_ready_s", seen.ready),
        ("first_activity_s", seen.first_activity),
        ("first_rerun_s", seen.first_rerun),
        ("last_rerun_s", seen.last_rerun),
    ] {
        match at {
            Some(d) => f.num(key, d.as_secs_f64(), 3),
            None => f.null(key),
        };
    }
    match seen.first_stall {
        Some((at, completed)) => f
            .num("stalled_s", seen.stalled.as_secs_f64(), 3)
            .num("first_stall_at_s", at.as_secs_f64(), 3)
            .int("completed_at_first_stall", completed),
        None => f
            .num("stalled_s", 0.0, 3)
            .null("first_stall_at_s")
            .null("completed_at_first_stall"),
    };
    match seen.longest_stall {
        Some((at, length, completed)) => f
            .num("longest_stall_s", length.as_secs_f64(), 3)
            .num("longest_stall_at_s", at.as_secs_f64(), 3)
            .int("completed_at_longest_stall", completed),
        None => f
            .num("longest_stall_s", 0.0, 3)
            .null("longest_stall_at_s")
            .null("completed_at_longest_stall"),
    };
    f.int("reexecuted_activities", reexecuted)
        .int("activities_run_twice", rerun_distinct as u64)
        .int("activities_logged_at_kill", logged_at_kill)
        .int("activities_expected", expected)
        .num("killed_after_s", killed_after.as_secs_f64(), 3)
        .int("workflows_completed", n - violations.incomplete)
        .text(
            "timing_note",
            "times from the restart of the worker: its engine ready, its first activity, its \
             first and last re-run of an activity the killed worker had run, every workflow \
             completed (the store's counts, read every 10 ms); stalled_s sums the gaps of more \
             than 250 ms in which no activity was logged and no workflow completed",
        );
    if ran.len() as u64 != expected {
        f.violation(format!(
            "{} distinct activities ran, expected {expected}",
            ran.len()
        ));
    }
    for v in violations.found {
        f.violation(v);
    }
    drop(client);
    drop(store);
    opened.close().await?;
    Ok(f)
}

/// The id of workflow `i`.
fn id(i: u64) -> String {
    format!("rc-{i:07}")
}

/// The worker's arguments naming the store of `env`.
fn worker_store_args(env: &StoreEnv) -> Result<Vec<OsString>> {
    if let Some(path) = env.sqlite_path() {
        let synchronous = if env.kind() == StoreKind::SqliteNormal {
            "normal"
        } else {
            "full"
        };
        return Ok(vec![
            COMMAND.into(),
            "--sqlite".into(),
            path.as_os_str().to_owned(),
            "--synchronous".into(),
            synchronous.into(),
        ]);
    }
    if let Some(pg) = env.postgres() {
        return Ok(vec![
            COMMAND.into(),
            "--pg-url".into(),
            pg.url().into(),
            "--pg-schema".into(),
            pg.schema().into(),
        ]);
    }
    Err(NOT_ON_MEMORY.into())
}

/// A worker process, killed (SIGKILL) and reaped when dropped if still running, so no worker
/// outlives the benchmark's run, on error paths too.
struct WorkerProcess {
    child: Child,
    generation: u32,
}

impl WorkerProcess {
    /// Starts this executable as a worker with `args` (the subcommand first).
    fn spawn(args: &[OsString], generation: u32) -> Result<WorkerProcess> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the benchmark's own executable: {e}"))?;
        let child = Command::new(&exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the worker {}: {e}", exe.display()))?;
        Ok(WorkerProcess { child, generation })
    }

    /// The exit status, if the worker has exited.
    fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().map_err(|e| {
            format!(
                "cannot poll worker {} ({}): {e}",
                self.generation,
                self.child.id()
            )
            .into()
        })
    }

    /// Kills the worker with SIGKILL and reaps it.
    fn kill(mut self) -> Result<()> {
        self.child
            .kill()
            .map_err(|e| format!("cannot kill worker {}: {e}", self.generation))?;
        self.child
            .wait()
            .map_err(|e| format!("cannot reap worker {}: {e}", self.generation))?;
        Ok(())
    }

    /// Tells the worker to stop (closes its standard input) and waits for it to exit; kills it
    /// if it has not exited within [`STOP_LIMIT`].
    async fn stop(mut self) -> Result<ExitStatus> {
        drop(self.child.stdin.take());
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            if started.elapsed() > STOP_LIMIT {
                return Err(format!(
                    "worker {} did not exit within {STOP_LIMIT:?} of being told to stop; killed",
                    self.generation
                )
                .into());
            }
            tokio::time::sleep(TAIL_SLOW).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `kill_at` activities are in the log; the worker must keep running until then.
async fn until_half(
    worker: &mut WorkerProcess,
    tail: &mut LogTail,
    kill_at: u64,
    deadline: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        tail.read()?;
        if tail.activities >= kill_at {
            return Ok(());
        }
        if let Some(status) = worker.exited()? {
            return Err(format!(
                "the first worker exited ({status}) with {} of the {kill_at} activities to log \
                 before the kill",
                tail.activities
            )
            .into());
        }
        if started.elapsed() > deadline {
            return Err(format!(
                "the first worker had logged {} of {kill_at} activities after {deadline:?}",
                tail.activities
            )
            .into());
        }
        tokio::time::sleep(TAIL_FAST).await;
    }
}

/// Waits until the store counts `n` completed instances, noting in `seen` when the restarted
/// worker reached each milestone. The worker may exit by itself once all have finished, but
/// not with a failure.
async fn until_complete(
    worker: &mut WorkerProcess,
    tail: &mut LogTail,
    seen: &mut Progress,
    store: &dyn duraflow::Store,
    n: u64,
    restarted: Instant,
    deadline: Duration,
) -> Result<()> {
    let mut reported = Instant::now();
    loop {
        tail.read()?;
        seen.note(tail, restarted.elapsed());
        let s = duraflow::management_of(store)?.stats().await?;
        let count = |status: InstanceStatus| {
            s.instances
                .iter()
                .find(|(st, _)| *st == status)
                .map_or(0, |(_, c)| *c)
        };
        let completed = count(InstanceStatus::Completed);
        seen.progress(tail.activities, completed, restarted.elapsed());
        if completed == n {
            return Ok(());
        }
        let open = count(InstanceStatus::Pending) + count(InstanceStatus::Running);
        if completed + open < n {
            return Err(format!(
                "some workflows ended otherwise than completed: {:?}",
                s.instances
            )
            .into());
        }
        if let Some(status) = worker.exited()? {
            if !status.success() {
                return Err(format!("the restarted worker failed ({status})").into());
            }
        }
        if restarted.elapsed() > deadline {
            return Err(format!(
                "{completed} of {n} workflows had completed {deadline:?} after the restart"
            )
            .into());
        }
        if reported.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "duraflow-bench: recovery: {completed} of {n} completed {:.1} s after the restart",
                restarted.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(TAIL_SLOW).await;
    }
}

/// The side-effect log, read as it grows.
struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
    /// Activity lines read.
    activities: u64,
    /// The generations that ran each `(instance, op)`, in log order.
    runs: BTreeMap<(String, String), Vec<u32>>,
    /// The generations whose `# ready` marker has been read.
    ready: Vec<u32>,
    /// The first activity line of generation 1 (its position in the log, from 1).
    first_of_restart: Option<u64>,
    /// Re-runs read: activity lines of an `(instance, op)` seen before.
    reruns: u64,
}

impl LogTail {
    fn new(path: &Path) -> LogTail {
        LogTail {
            path: path.to_owned(),
            offset: 0,
            partial: String::new(),
            activities: 0,
            runs: BTreeMap::new(),
            ready: Vec::new(),
            first_of_restart: None,
            reruns: 0,
        }
    }

    /// Reads what was appended since the last read (a missing log is empty).
    fn read(&mut self) -> Result<()> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(format!("cannot read the log {}: {e}", self.path.display()).into())
            }
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.line(line.trim_end());
        }
        Ok(())
    }

    fn line(&mut self, line: &str) {
        if let Some(generation) = line.strip_prefix("# ready ") {
            if let Ok(g) = generation.trim().parse() {
                self.ready.push(g);
            }
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(generation), Some(instance), Some(op)) = (
            parts.next().and_then(|g| g.parse::<u32>().ok()),
            parts.next(),
            parts.next(),
        ) else {
            eprintln!("duraflow-bench: recovery: a malformed log line was skipped: {line:?}");
            return;
        };
        self.activities += 1;
        if generation > 0 && self.first_of_restart.is_none() {
            self.first_of_restart = Some(self.activities);
        }
        let runs = self
            .runs
            .entry((instance.to_owned(), op.to_owned()))
            .or_default();
        if !runs.is_empty() {
            self.reruns += 1;
        }
        runs.push(generation);
    }
}

/// When, after the restart, the new worker was first seen reaching each milestone.
#[derive(Default)]
struct Progress {
    ready: Option<Duration>,
    first_activity: Option<Duration>,
    first_rerun: Option<Duration>,
    last_rerun: Option<Duration>,
    reruns_seen: u64,
    /// The activity lines and completed workflows last seen, and when either last rose
    /// (from the restart).
    last_progress: (u64, u64, Duration),
    /// The gaps longer than [`STALL`] without progress, summed.
    stalled: Duration,
    /// When the first such gap began, and how many workflows had completed by then.
    first_stall: Option<(Duration, u64)>,
    /// The longest such gap: when it began, how long it was, and how many workflows had
    /// completed by then.
    longest_stall: Option<(Duration, Duration, u64)>,
}

impl Progress {
    /// Notes the activity lines logged and the workflows completed, seen at `at` (since the
    /// restart); a rise of either is progress.
    fn progress(&mut self, activities: u64, completed: u64, at: Duration) {
        let (last_activities, last_completed, since) = self.last_progress;
        if activities > last_activities || completed > last_completed {
            let gap = at.saturating_sub(since);
            if gap > STALL {
                self.stalled += gap;
                self.first_stall.get_or_insert((since, last_completed));
                if self
                    .longest_stall
                    .is_none_or(|(_, longest, _)| gap > longest)
                {
                    self.longest_stall = Some((since, gap, last_completed));
                }
            }
            self.last_progress = (activities, completed, at);
        }
    }

    /// Notes the milestones `tail` shows at `at` (since the restart).
    fn note(&mut self, tail: &LogTail, at: Duration) {
        if self.ready.is_none() && tail.ready.contains(&1) {
            self.ready = Some(at);
        }
        if self.first_activity.is_none() && tail.first_of_restart.is_some() {
            self.first_activity = Some(at);
        }
        if tail.reruns > self.reruns_seen {
            self.reruns_seen = tail.reruns;
            self.first_rerun.get_or_insert(at);
            self.last_rerun = Some(at);
        }
    }
}

/// What [`verify`] found wrong.
struct Verified {
    found: Vec<String>,
    incomplete: u64,
}

/// Checks every workflow `0..n`: completed, with its expected output, and each of its
/// activities' results journaled exactly once. At most a few problems are described.
async fn verify(client: &Client, n: u64) -> Result<Verified> {
    let mut found = Vec::new();
    let mut incomplete = 0;
    let mut problems = 0usize;
    let mut outputs: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut after = None;
    loop {
        let page = client
            .list(ListFilter {
                statuses: vec![InstanceStatus::Completed],
                name: Some(CHAIN.into()),
                limit: 1_000,
                after,
                ..ListFilter::default()
            })
            .await?;
        for info in page.instances {
            let output = info.output.and_then(|p| p.decode::<u64>().ok());
            outputs.insert(info.id, output);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    for i in 0..n {
        let id = id(i);
        let problem = match outputs.get(&id) {
            None => {
                incomplete += 1;
                Some(format!("workflow {id} did not complete"))
            }
            Some(None) => Some(format!(
                "workflow {id} completed without a number as output"
            )),
            Some(Some(out)) if *out != expected_output(i) => Some(format!(
                "workflow {id} returned {out}, expected {}",
                expected_output(i)
            )),
            Some(Some(_)) => {
                let journal = client.history(&id, None).await?;
                let mut results: BTreeMap<String, usize> = BTreeMap::new();
                for e in &journal {
                    if let EventKind::ActivityCompleted { op, .. } = &e.kind {
                        *results.entry(op.to_string()).or_default() += 1;
                    }
                }
                (results.len() as u64 != ACTIVITIES || results.values().any(|c| *c != 1)).then(
                    || format!("workflow {id}: each activity result must be journaled once, found {results:?}"),
                )
            }
        };
        if let Some(p) = problem {
            problems += 1;
            if found.len() < 10 {
                found.push(p);
            }
        }
    }
    if problems > found.len() {
        found.push(format!("and {} more problems", problems - found.len()));
    }
    Ok(Verified { found, incomplete })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::io::Write;

    use super::*;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn the_tail_reads_lines_split_across_reads_and_finds_reruns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut tail = LogTail::new(&path);
        tail.read().unwrap();
        assert_eq!(tail.activities, 0, "a missing log is empty");

        append(
            &path,
            "# ready 0\n0 rc-0000000 1 1\n0 rc-0000000 2 1\n0 rc-00",
        );
        tail.read().unwrap();
        assert_eq!(tail.activities, 2, "the torn last line waits for its end");
        assert_eq!(tail.ready, vec![0]);

        append(
            &path,
            "00001 1 1\n# ready 1\n1 rc-0000002 1 1\n1 rc-0000000 2 2\n",
        );
        tail.read().unwrap();
        assert_eq!(tail.activities, 5);
        assert_eq!(tail.ready, vec![0, 1]);
        assert_eq!(tail.first_of_restart, Some(4));
        assert_eq!(tail.reruns, 1, "rc-0000000 op 2 ran in both generations");
        assert_eq!(
            tail.runs[&("rc-0000000".to_owned(), "2".to_owned())],
            vec![0, 1]
        );
        assert_eq!(tail.runs.len(), 4);
    }

    #[test]
    fn progress_keeps_the_first_time_of_each_milestone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut tail = LogTail::new(&path);
        let mut seen = Progress::default();
        append(&path, "0 a 1 1\n");
        tail.read().unwrap();
        seen.note(&tail, Duration::from_millis(1));
        assert!(seen.ready.is_none() && seen.first_activity.is_none());

        append(&path, "# ready 1\n1 b 1 1\n");
        tail.read().unwrap();
        seen.note(&tail, Duration::from_millis(2));
        append(&path, "1 a 1 2\n");
        tail.read().unwrap();
        seen.note(&tail, Duration::from_millis(3));
        append(&path, "1 c 1 1\n");
        tail.read().unwrap();
        seen.note(&tail, Duration::from_millis(4));
        assert_eq!(seen.ready, Some(Duration::from_millis(2)));
        assert_eq!(seen.first_activity, Some(Duration::from_millis(2)));
        assert_eq!(seen.first_rerun, Some(Duration::from_millis(3)));
        assert_eq!(seen.last_rerun, Some(Duration::from_millis(3)));
    }

    #[test]
    fn stalls_are_the_long_gaps_without_activities_or_completions() {
        let ms = Duration::from_millis;
        // The log was at 2,000 lines at the kill.
        let mut seen = Progress {
            last_progress: (2_000, 0, Duration::ZERO),
            ..Progress::default()
        };
        seen.progress(2_000, 0, ms(10));
        seen.progress(2_100, 0, ms(100));
        // Activities without completions are progress too.
        seen.progress(2_400, 0, ms(300));
        seen.progress(2_500, 5, ms(400));
        seen.progress(2_500, 9, ms(500));
        seen.progress(2_500, 9, ms(5_000));
        seen.progress(2_501, 9, ms(30_500));
        seen.progress(2_502, 9, ms(30_600));
        seen.progress(2_502, 10, ms(61_600));
        // A short gap is not a stall.
        seen.progress(2_503, 10, ms(61_700));
        assert_eq!(seen.first_stall, Some((ms(500), 9)));
        assert_eq!(seen.longest_stall, Some((ms(30_600), ms(31_000), 9)));
        assert_eq!(seen.stalled, ms(30_000 + 31_000));
        assert_eq!(seen.last_progress, (2_503, 10, ms(61_700)));
    }

    #[test]
    fn the_outputs_are_what_the_chain_computes() {
        assert_eq!(expected_output(0), 1 + 2 + 3);
        assert_eq!(expected_output(2), 8 + 9 + 10 + 11);
    }
}
