//! Metrics: a real engine (memory, SQLite and, with the feature `postgres`, PostgreSQL stores) runs workflows with activities, a retried
//! activity, a failed one and a virtual-time timer; the scraped text, parsed, shows each counter
//! moved by exactly what ran. A nondeterminism failure is counted, by a handle two engines share.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{echo, eventually, flaky, history_with, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::{EventKind, Metrics, Store};

const HOUR: Duration = Duration::from_secs(3600);
/// How late the test lets the timers fire: the clock is moved this far past their due time.
const LATE: Duration = Duration::from_secs(2);
const JOBS: usize = 3;

async fn doomed(_ctx: ActivityContext, _: u32) -> Result<u32, ActivityError> {
    Err(ActivityError::terminal("never works"))
}

/// Two activities, an hour's sleep, a retried activity, and a failed one it survives.
async fn job(ctx: WorkflowContext, x: u32) -> Result<u32, WorkflowError> {
    let a: u32 = ctx.activity("echo", &x).await?;
    let b: u32 = ctx.activity("echo", &(x + 1)).await?;
    ctx.sleep(HOUR).await?;
    let c: u32 = ctx
        .activity("flaky", &x)
        .retry(RetryPolicy::fixed(Duration::ZERO).max_attempts(3))
        .await?;
    let d: u32 = ctx.activity("doomed", &x).await.unwrap_or(0);
    Ok(a + b + c + d)
}

/// One sample's name and labels, as the text shows them.
type Series = (String, BTreeMap<String, String>);

/// The samples of a scrape, parsed from the OpenMetrics text.
#[derive(Debug)]
struct Scrape(BTreeMap<Series, f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics text ends with # EOF"
        );
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("a sample and its value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("labels end with }");
                    let labels = inner
                        .split(',')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            let (k, v) = l.split_once('=').expect("label=value");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            let value: f64 = value.parse().expect("a number");
            let old = samples.insert((name.to_owned(), labels), value);
            assert!(old.is_none(), "one sample per series: {line}");
        }
        Scrape(samples)
    }

    /// The value of `name` with exactly `labels`; 0 when the series is absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum over every series of `name`.
    fn total(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }
}

fn activity(name: &str) -> [(&'static str, &str); 2] {
    [("activity", name), ("queue", "default")]
}

async fn scrape(metrics: &Metrics, store: &dyn Store) -> Scrape {
    Scrape::parse(&metrics.scrape(store).await.unwrap())
}

/// Runs [`JOBS`] jobs on `store` and checks what the metrics counted.
async fn counters_move_as_workflows_run(store: Arc<dyn Store>) {
    let clock = virtual_clock();
    let engine = Engine::builder()
        .shared_store(store.clone())
        .clock(clock.clone())
        .options(virtual_options())
        .workflow("job", job)
        .activity("echo", echo)
        .activity("flaky", flaky)
        .activity("doomed", doomed)
        .start()
        .await
        .unwrap();
    let metrics = engine.metrics();
    let client = engine.client();

    let before = scrape(&metrics, store.as_ref()).await;
    assert_eq!(before.total("duraflow_turns_total"), 0.0);
    assert_eq!(
        before.get("duraflow_activities_completed_total", &activity("echo")),
        0.0
    );
    assert_eq!(
        before.get("duraflow_store_instances", &[("status", "running")]),
        0.0
    );

    let mut runs = Vec::new();
    for i in 0..JOBS {
        let n = u32::try_from(i).unwrap();
        runs.push(
            client
                .start("job", &n)
                .id(format!("job-{i}"))
                .await
                .unwrap(),
        );
    }
    for run in &runs {
        history_with(&client, &run.id, "timer_created", |k| {
            matches!(k, EventKind::TimerCreated { .. })
        })
        .await;
    }
    // An activity's result is counted once its commit has returned: the journal can show the
    // turn it led to (the timer) a moment before the counter does.
    let asleep = common::eventually("two echoes per job before the timer", || async {
        let asleep = scrape(&metrics, store.as_ref()).await;
        let echoes = asleep.get("duraflow_activities_completed_total", &activity("echo"));
        (echoes == (2 * JOBS) as f64).then_some(asleep)
    })
    .await;
    assert_eq!(
        asleep.get("duraflow_store_instances", &[("status", "running")]),
        JOBS as f64
    );
    assert_eq!(asleep.get("duraflow_timers_fired_total", &[]), 0.0);

    clock.advance(HOUR + LATE);
    for (i, run) in runs.iter().enumerate() {
        let n = u32::try_from(i).unwrap();
        let out: u32 = client.wait(run).timeout(common::DEADLINE).await.unwrap();
        assert_eq!(out, n + (n + 1) + n);
    }
    // A counter moves once its commit is acknowledged, which may be just after the waiter saw
    // the instance finish: after shutdown every turn and attempt has ended.
    engine.shutdown().await;
    let after = scrape(&metrics, store.as_ref()).await;

    let jobs = JOBS as f64;
    let started = |name| after.get("duraflow_activity_attempts_started_total", &activity(name));
    let completed = |name| after.get("duraflow_activities_completed_total", &activity(name));
    let failed = |name| after.get("duraflow_activities_failed_total", &activity(name));
    let retried = |name| after.get("duraflow_activity_retries_total", &activity(name));
    assert_eq!(
        (
            started("echo"),
            completed("echo"),
            failed("echo"),
            retried("echo")
        ),
        (2.0 * jobs, 2.0 * jobs, 0.0, 0.0)
    );
    assert_eq!(
        (
            started("flaky"),
            completed("flaky"),
            failed("flaky"),
            retried("flaky")
        ),
        (2.0 * jobs, jobs, 0.0, jobs),
        "each flaky activity failed once and was retried once"
    );
    assert_eq!(
        (
            started("doomed"),
            completed("doomed"),
            failed("doomed"),
            retried("doomed")
        ),
        (jobs, 0.0, jobs, 0.0),
        "a terminal error is not retried"
    );

    assert_eq!(after.get("duraflow_timers_fired_total", &[]), jobs);
    assert_eq!(
        after.get("duraflow_timer_lateness_seconds_count", &[]),
        jobs
    );
    assert_eq!(
        after.get("duraflow_timer_lateness_seconds_sum", &[]),
        jobs * LATE.as_secs_f64(),
        "every timer ran exactly LATE after its due time on the engine clock"
    );

    let committed = after.get("duraflow_turns_total", &[("outcome", "committed")]);
    assert!(
        committed >= jobs * 6.0,
        "a turn for the start and one per result or timer: {committed}"
    );
    assert_eq!(
        after.get("duraflow_turn_duration_seconds_count", &[]),
        committed,
        "one latency per committed turn"
    );
    let turn_commits = after.get("duraflow_commits_total", &[("kind", "turns")]);
    assert!(turn_commits >= 1.0 && turn_commits <= committed);
    assert_eq!(
        after.get(
            "duraflow_commit_duration_seconds_count",
            &[("kind", "turns")]
        ),
        turn_commits
    );
    assert!(
        after.get("duraflow_committed_items_total", &[("kind", "turns")]) >= committed,
        "every committed turn was written by a group commit"
    );
    assert_eq!(
        after.get("duraflow_committed_items_total", &[("kind", "completions")])
            + after.get("duraflow_direct_turns_total", &[]),
        completed("echo") + completed("flaky") + failed("doomed"),
        "a completion or a direct turn per reported result"
    );
    assert!(
        after.get("duraflow_direct_turns_total", &[]) >= 1.0,
        "results a warm workflow waited for alone went straight into its next turn"
    );
    assert!(
        after.get("duraflow_warm_cache_hits_total", &[]) >= 1.0,
        "turns after the first found their workflow warm"
    );
    assert_eq!(after.total("duraflow_leases_lost_total"), 0.0);
    assert_eq!(
        after.get("duraflow_nondeterminism_failures_total", &[]),
        0.0
    );
    assert_eq!(
        after.get("duraflow_store_instances", &[("status", "completed")]),
        jobs
    );
    assert_eq!(
        after.get("duraflow_store_instances", &[("status", "running")]),
        0.0
    );
    assert_eq!(after.get("duraflow_store_tasks", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_as_workflows_run_on_memory() {
    counters_move_as_workflows_run(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_as_workflows_run_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("metrics.db"))
        .await
        .unwrap();
    counters_move_as_workflows_run(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_as_workflows_run_on_postgres() {
    let (store, drop_schema) = common::postgres_store("metrics").await;
    counters_move_as_workflows_run(Arc::new(store)).await;
    drop_schema.run().await;
}

async fn waits(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.wait_for_event("go").await
}

/// The same workflow with a timer added before its wait.
async fn waits_after_a_timer(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.sleep(Duration::from_secs(1)).await?;
    ctx.wait_for_event("go").await
}

/// An engine on `store` recording into `metrics`, running `code` as the workflow `wf`.
async fn engine_with<F, Fut>(store: &Arc<dyn Store>, metrics: &Metrics, code: F) -> Engine
where
    F: Fn(WorkflowContext, ()) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u32, WorkflowError>> + Send + 'static,
{
    Engine::builder()
        .shared_store(store.clone())
        .metrics(metrics.clone())
        .workflow("wf", code)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nondeterminism_failure_is_counted_by_a_shared_handle() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let metrics = Metrics::new();
    let engine = engine_with(&store, &metrics, waits).await;
    let client = engine.client();
    let run = client.start("wf", &()).id("nd").await.unwrap();
    history_with(&client, &run.id, "the wait", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    engine.shutdown().await;

    let engine = engine_with(&store, &metrics, waits_after_a_timer).await;
    let client = engine.client();
    client.raise_event(&run, "go", &2).await.unwrap();
    let failed = client.wait::<u32>(&run).await.unwrap_err();
    assert!(
        matches!(&failed, ClientError::WorkflowFailed(f) if f.kind == FailureKind::Nondeterminism),
        "{failed:?}"
    );
    let s = eventually("the failure to be counted", || async {
        let s = scrape(&metrics, store.as_ref()).await;
        (s.get("duraflow_nondeterminism_failures_total", &[]) == 1.0).then_some(s)
    })
    .await;
    assert_eq!(
        s.get("duraflow_store_instances", &[("status", "failed")]),
        1.0
    );
    assert!(
        s.get("duraflow_turns_total", &[("outcome", "committed")]) >= 2.0,
        "both engines' turns add up in the shared handle"
    );
    engine.shutdown().await;

    // A process that runs no engine renders the store's gauges through a client.
    let gauges = Scrape::parse(&Client::new(store).store_metrics().await.unwrap());
    assert_eq!(
        gauges.get("duraflow_store_instances", &[("status", "failed")]),
        1.0
    );
    assert_eq!(
        gauges.total("duraflow_turns_total"),
        0.0,
        "no engine series"
    );
}

#[test]
fn the_metrics_register_into_an_applications_registry() {
    use duraflow::metrics::prometheus_client::metrics::counter::Counter;
    use duraflow::metrics::prometheus_client::registry::Registry;

    let mut registry = Registry::default();
    let requests: Counter = Counter::default();
    registry.register("app_requests", "The application's own", requests.clone());
    let metrics = Metrics::new();
    metrics.register(&mut registry);
    requests.inc();
    let mut text = String::new();
    duraflow::metrics::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let s = Scrape::parse(&text);
    assert_eq!(s.get("app_requests_total", &[]), 1.0);
    assert_eq!(
        s.get("duraflow_turns_total", &[("outcome", "committed")]),
        0.0
    );
    assert!(text.contains("# TYPE duraflow_timer_lateness_seconds histogram"));
    assert!(
        text.contains("# TYPE duraflow_store_instances gauge"),
        "{text}"
    );
}
