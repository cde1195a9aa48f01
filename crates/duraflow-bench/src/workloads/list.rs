//! `list`: the management extension at scale. N instances (10 workflow names, 10 queues, one
//! created every millisecond, ids in an order unrelated to creation), the first tenth of them
//! (by creation) completed; then each of these reads timed [`SAMPLES`] times, in rounds that
//! go over all of them in turn:
//!
//! - `first_page`: the first 100 instances by id, no filter;
//! - `deep_page`: the 100 after the middle id;
//! - `status`: the first 100 completed instances (a tenth of the ids, spread over all of them);
//! - `name`: the first 100 of one workflow name (a tenth);
//! - `queue`: the first 100 of one queue (a tenth);
//! - `status_name`: completed instances of one name (a hundredth);
//! - `created_range`: instances created within one second in the middle (1,000 of N, spread
//!   over the ids: no index serves a creation-time range in id order, so this one reads ids
//!   until it has filled its page);
//! - `count`: counts by status (`stats`).
//!
//! Everything goes through the store API with no engine: creations many at once (as in
//! `queue-fetch`), completions as turns fetched and committed 500 at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use duraflow::crates::store::{NewInstance, TurnCommit};
use duraflow::{management_of, FetchFilter, InstanceStatus, ListFilter, Payload, Store, Timestamp};

use crate::report::Figures;
use crate::stats;
use crate::store::StoreEnv;
use crate::Result;

/// Timed reads of each kind.
pub(crate) const SAMPLES: usize = 100;

/// The rounds the samples are taken in.
const ROUNDS: usize = 5;

/// Workflow names and queues the instances are spread over.
pub(crate) const SPREAD: u64 = 10;

/// The page size of every timed listing.
pub(crate) const PAGE: usize = 100;

/// Turns fetched and committed at once while completing.
const COMPLETE_BATCH: usize = 500;

/// When the first instance is created; instance `i` is created `i` ms later.
const CREATED_AT: Timestamp = Timestamp(1_800_000_000_000);

/// How long a completing fetch leases its turns.
const LEASE: Duration = Duration::from_secs(60);

/// A multiplier prime to `n`, so that `i * multiplier % n` permutes `0..n`: ids in an order
/// unrelated to creation.
fn multiplier(n: u64) -> u64 {
    let mut multiplier = 7_919u64;
    while gcd(multiplier, n) != 1 {
        multiplier += 2;
    }
    multiplier
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Runs the workload with `n` instances on a store of `env`.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let opened = env.open().await?;
    let result = measure(opened.store.clone(), n).await;
    let closed = opened.close().await;
    let figures = result?;
    closed?;
    Ok(figures)
}

async fn measure(store: Arc<dyn Store>, n: u64) -> Result<Figures> {
    let mut f = Figures::new();
    eprintln!("duraflow-bench: list: creating {n} instances");
    let t = Instant::now();
    fill(&store, n).await?;
    let fill = t.elapsed().as_secs_f64();
    f.num("fill_s", fill, 3)
        .num("fill_instances_per_s", n as f64 / fill, 1);
    let completed = n / 10;
    let t = Instant::now();
    complete(&store, completed).await?;
    f.num("complete_s", t.elapsed().as_secs_f64(), 3)
        .int("completed_instances", completed);

    let manage = management_of(&*store)?;
    let middle = Timestamp(CREATED_AT.0 + i64::try_from(n / 2).unwrap_or(i64::MAX));
    let reads: Vec<(&str, ListFilter)> = vec![
        ("first_page", ListFilter::default()),
        (
            "deep_page",
            ListFilter {
                after: Some(format!("ls-{:09}", n / 2)),
                ..ListFilter::default()
            },
        ),
        (
            "status",
            ListFilter {
                statuses: vec![InstanceStatus::Completed],
                ..ListFilter::default()
            },
        ),
        (
            "name",
            ListFilter {
                name: Some("wf-3".into()),
                ..ListFilter::default()
            },
        ),
        (
            "queue",
            ListFilter {
                queue: Some("q-7".into()),
                ..ListFilter::default()
            },
        ),
        (
            "status_name",
            ListFilter {
                statuses: vec![InstanceStatus::Completed],
                name: Some("wf-3".into()),
                ..ListFilter::default()
            },
        ),
        (
            "created_range",
            ListFilter {
                created_from: Some(middle),
                created_before: Some(middle.plus(Duration::from_secs(1))),
                ..ListFilter::default()
            },
        ),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(SAMPLES); reads.len() + 1];
    eprintln!(
        "duraflow-bench: list: timing {SAMPLES} reads of each of {} kinds",
        reads.len() + 1
    );
    for _ in 0..ROUNDS {
        for _ in 0..SAMPLES / ROUNDS {
            for (i, (name, filter)) in reads.iter().enumerate() {
                let filter = ListFilter {
                    limit: PAGE,
                    ..filter.clone()
                };
                let t = Instant::now();
                let page = manage.list(filter).await?;
                samples[i].push(t.elapsed().as_secs_f64() * 1000.0);
                let expected = expected_rows(name, n);
                if page.instances.len() != expected {
                    f.violation(format!(
                        "{name}: a page of {} instances where {expected} were expected",
                        page.instances.len()
                    ));
                }
            }
            let t = Instant::now();
            let stats = manage.stats().await?;
            samples[reads.len()].push(t.elapsed().as_secs_f64() * 1000.0);
            let total: u64 = stats.instances.iter().map(|(_, c)| c).sum();
            if total != n {
                f.violation(format!("count: {total} instances where {n} were created"));
            }
        }
    }
    let names = reads.iter().map(|(name, _)| *name).chain(["count"]);
    for (name, samples) in names.zip(samples) {
        let sorted = stats::sorted(samples);
        f.num(
            &format!("{name}_p50_ms"),
            stats::percentile(&sorted, 50.0),
            3,
        )
        .num(
            &format!("{name}_p99_ms"),
            stats::percentile(&sorted, 99.0),
            3,
        );
    }
    Ok(f)
}

/// How many instances a timed listing of `name` must return with `n` instances in all.
fn expected_rows(name: &str, n: u64) -> usize {
    let rows = match name {
        "first_page" => n,
        "deep_page" => n - n / 2 - 1,
        "status" | "name" | "queue" => n / 10,
        // A hundredth at most: which completed instances have the name depends on ids.
        "status_name" => return PAGE.min(status_name_rows(n)),
        "created_range" => n.saturating_sub(n / 2).min(1_000),
        _ => 0,
    };
    PAGE.min(usize::try_from(rows).unwrap_or(usize::MAX))
}

/// The completed instances (the first tenth created) of workflow `wf-3`.
fn status_name_rows(n: u64) -> usize {
    (0..n / 10).filter(|i| i % SPREAD == 3).count()
}

/// Creates the `n` instances.
async fn fill(store: &Arc<dyn Store>, n: u64) -> Result<()> {
    let input = Payload::null();
    let multiplier = multiplier(n);
    super::create_many(store, n, |i| NewInstance {
        id: format!("ls-{:09}", (i * multiplier) % n),
        name: format!("wf-{}", i % SPREAD),
        input: input.clone(),
        parent: None,
        // A tenth per queue, independent of the name.
        queue: format!("q-{}", (3 * i + i / SPREAD) % SPREAD),
        created_at: Timestamp(CREATED_AT.0 + i64::try_from(i).unwrap_or(i64::MAX)),
        start_at: None,
        options: Default::default(),
    })
    .await
}

/// Completes the first `count` instances created (fetches lease them in creation order).
async fn complete(store: &Arc<dyn Store>, count: u64) -> Result<()> {
    let queues: Vec<String> = (0..SPREAD).map(|q| format!("q-{q}")).collect();
    let filter = FetchFilter::queues(queues.iter().map(String::as_str));
    let mut left = count;
    let mut now = Timestamp(CREATED_AT.0 + i64::try_from(count).unwrap_or(i64::MAX));
    let output = Payload::encode("done")?;
    while left > 0 {
        now = now.plus(Duration::from_millis(1));
        let max = COMPLETE_BATCH.min(usize::try_from(left).unwrap_or(usize::MAX));
        let work = store.fetch_turns(&filter, now, max, LEASE, None).await?;
        if work.is_empty() {
            return Err(format!("list: {left} instances left to complete, none due").into());
        }
        left -= work.len() as u64;
        let commits = work
            .iter()
            .map(|w| {
                let mut c = TurnCommit::consuming(w, now);
                c.status = InstanceStatus::Completed;
                c.output = Some(output.clone());
                c
            })
            .collect();
        for result in store.commit_turns(commits).await? {
            result?;
        }
    }
    Ok(())
}
