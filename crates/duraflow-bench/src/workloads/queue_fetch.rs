//! `queue-fetch`: does the latency of a fetch depend on the work waiting in queues the fetcher
//! does not serve? Times `Store::fetch_turns` of up to 32 turns on three stores of the same
//! kind:
//!
//! - **loaded**: 1,000 pending instances (at most N) on the queue `served`, and N pending
//!   instances spread over the 100 queues `q-00`..`q-99` (N/100 on `q-00`, the rest round
//!   robin over `q-01`..`q-99`);
//! - **base-served**: only the 1,000 instances on `served`;
//! - **base-queue**: only the N/100 instances on `q-00`.
//!
//! Two fetches are timed: one serving only `served` (on loaded and base-served), and one
//! serving only `q-00`, one of the loaded queues (on loaded and base-queue). The ratio
//! loaded/baseline of each percentile says whether the fetch stays flat with N pending
//! instances on queues it does not serve.
//!
//! Everything goes through the [`Store`] API, with no engine: the instances are created with
//! [`Store::create_instance`] (there is no batch create), many at once so that the SQLite
//! writer and the PostgreSQL create batcher group them into shared transactions; the time of
//! the loaded store's fill is reported separately. Each fetch leases its turns for 1 ms on a
//! virtual clock that moves 1 ms per fetch, so what one fetch leased is due again (at the back
//! of its queue, by lease expiry) for the next, and every fetch finds as much work as the
//! first; nothing is committed or abandoned, so a sample is the fetch and nothing else. The
//! samples are taken in rounds that go over the four (store, fetch) pairs in turn, so that a
//! baseline and its loaded store see the same machine load and the same history of fetches
//! (leases leave dead rows and index entries behind in PostgreSQL). A fetch that returns fewer
//! turns than its queue holds (up to 32) is a correctness violation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use duraflow::crates::store::NewInstance;
use duraflow::{FetchFilter, InstanceStatus, Payload, Store, Timestamp};

use crate::report::Figures;
use crate::stats;
use crate::store::{Opened, StoreEnv};
use crate::Result;

/// The number of queues the load is spread over (`q-00`..`q-99`).
pub(crate) const QUEUES: u64 = 100;

/// The pending instances on the served queue (at most N).
pub(crate) const SERVED: u64 = 1_000;

/// The most turns one fetch takes (the engine's default fetch batch).
pub(crate) const FETCH_MAX: usize = 32;

/// Timed fetches per (store, fetch) pair.
pub(crate) const SAMPLES: usize = 1_000;

/// The rounds the samples are taken in.
pub(crate) const ROUNDS: usize = 5;

/// Fetches of each pair before the first round that are not timed (prepared statements, pool
/// connections).
const WARMUP: usize = 20;

/// The queue of the first fetch.
const SERVED_QUEUE: &str = "served";

/// The loaded queue of the second fetch.
const ONE_QUEUE: &str = "q-00";

/// The workflow name of every instance.
const NAME: &str = "queue-fetch";

/// When every instance is created (virtual time; the fetches start 1 s later).
const CREATED_AT: Timestamp = Timestamp(1_800_000_000_000);

/// How long a fetch leases its turns, and how far the virtual clock moves between fetches.
const LEASE: Duration = Duration::from_millis(1);

/// One timed fetch: a store and the queue it serves.
struct Pair {
    store: Arc<dyn Store>,
    filter: FetchFilter,
    /// The turns each fetch must lease.
    expected: usize,
    /// Latencies in ms.
    samples: Vec<f64>,
}

/// Runs the workload with `n` pending instances on the 100 loaded queues; `env` holds the
/// loaded store, and two more places of its kind are made for the baselines.
pub(crate) async fn run(env: &StoreEnv, n: u64) -> Result<Figures> {
    let url = env.postgres().map_or("", |pg| pg.url()).to_owned();
    let base_served = StoreEnv::create(env.kind(), &url).await?;
    let base_queue = match StoreEnv::create(env.kind(), &url).await {
        Ok(place) => place,
        Err(e) => {
            base_served.teardown().await;
            return Err(e);
        }
    };
    let result = on(env, &base_served, &base_queue, n).await;
    base_served.teardown().await;
    base_queue.teardown().await;
    result
}

/// Opens the three stores, measures, and closes them.
async fn on(
    loaded: &StoreEnv,
    base_served: &StoreEnv,
    base_queue: &StoreEnv,
    n: u64,
) -> Result<Figures> {
    let mut opened: Vec<Opened> = Vec::with_capacity(3);
    let mut result = Ok(Figures::new());
    for env in [loaded, base_served, base_queue] {
        match env.open().await {
            Ok(store) => opened.push(store),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if let [l, s, q] = opened.as_slice() {
        result = measure(l.store.clone(), s.store.clone(), q.store.clone(), n).await;
    }
    for store in opened {
        if let Err(e) = store.close().await {
            result = result.and(Err(e));
        }
    }
    result
}

/// Fills the three stores and times the fetches.
async fn measure(
    loaded: Arc<dyn Store>,
    base_served: Arc<dyn Store>,
    base_queue: Arc<dyn Store>,
    n: u64,
) -> Result<Figures> {
    let served = SERVED.min(n);
    let one_queue = n.div_ceil(QUEUES);
    let rest = n - one_queue;
    let served_place = |i| (SERVED_QUEUE.to_owned(), format!("qf-s-{i:07}"));
    let queue_place = |i| (ONE_QUEUE.to_owned(), format!("qf-00-{i:07}"));
    let rest_place = |i| {
        let q = 1 + i % (QUEUES - 1);
        (format!("q-{q:02}"), format!("qf-{q:02}-{i:07}"))
    };
    let mut f = Figures::new();

    fill(&base_served, served, served_place).await?;
    fill(&base_queue, one_queue, queue_place).await?;
    let t = Instant::now();
    fill(&loaded, served, served_place).await?;
    f.num("fill_served_s", t.elapsed().as_secs_f64(), 3);
    eprintln!("duraflow-bench: queue-fetch: creating {n} pending instances on {QUEUES} queues");
    let t = Instant::now();
    fill(&loaded, one_queue, queue_place).await?;
    fill(&loaded, rest, rest_place).await?;
    let fill = t.elapsed().as_secs_f64();
    f.num("fill_s", fill, 3)
        .num("fill_instances_per_s", n as f64 / fill, 1)
        .int("pending_instances", pending(&loaded).await?);

    let pair = |store: &Arc<dyn Store>, queue: &str, held: u64| Pair {
        store: store.clone(),
        filter: FetchFilter::queues([queue]),
        expected: usize::try_from(held).unwrap_or(usize::MAX).min(FETCH_MAX),
        samples: Vec::with_capacity(SAMPLES),
    };
    let mut pairs = [
        pair(&base_served, SERVED_QUEUE, served),
        pair(&loaded, SERVED_QUEUE, served),
        pair(&base_queue, ONE_QUEUE, one_queue),
        pair(&loaded, ONE_QUEUE, one_queue),
    ];
    let mut now = CREATED_AT.plus(Duration::from_secs(1));
    for pair in &mut pairs {
        for _ in 0..WARMUP {
            pair.fetch(&mut now, &mut f).await?;
        }
    }
    eprintln!("duraflow-bench: queue-fetch: timing {SAMPLES} fetches of each of 4 pairs");
    for _ in 0..ROUNDS {
        for pair in &mut pairs {
            for _ in 0..SAMPLES / ROUNDS {
                let ms = pair.fetch(&mut now, &mut f).await?.as_secs_f64() * 1000.0;
                pair.samples.push(ms);
            }
        }
    }
    let [base_s, loaded_s, base_q, loaded_q] = pairs;
    report(&mut f, "served", base_s.samples, loaded_s.samples);
    report(&mut f, "queue", base_q.samples, loaded_q.samples);
    Ok(f)
}

/// The pending instances of `store`.
async fn pending(store: &Arc<dyn Store>) -> Result<u64> {
    Ok(duraflow::management_of(&**store)?
        .stats()
        .await?
        .instances
        .iter()
        .filter(|(status, _)| *status == InstanceStatus::Pending)
        .map(|(_, count)| count)
        .sum())
}

/// Creates `count` instances of [`NAME`] at [`CREATED_AT`], `place(i)` giving the queue and
/// id of the `i`th.
async fn fill(
    store: &Arc<dyn Store>,
    count: u64,
    place: impl Fn(u64) -> (String, String),
) -> Result<()> {
    let input = Payload::null();
    super::create_many(store, count, |i| {
        let (queue, id) = place(i);
        NewInstance {
            id,
            name: NAME.to_owned(),
            input: input.clone(),
            parent: None,
            queue,
            created_at: CREATED_AT,
            start_at: None,
            options: Default::default(),
        }
    })
    .await
}

impl Pair {
    /// One fetch at the next tick of the virtual clock `now`; how long it took. A fetch that
    /// leases fewer or more turns than expected is recorded in `f` as a violation.
    async fn fetch(&self, now: &mut Timestamp, f: &mut Figures) -> Result<Duration> {
        *now = now.plus(LEASE);
        let t = Instant::now();
        let work = self
            .store
            .fetch_turns(&self.filter, *now, FETCH_MAX, LEASE, None)
            .await?;
        let elapsed = t.elapsed();
        if work.len() != self.expected {
            f.violation(format!(
                "a fetch serving {:?} leased {} turns, not {}",
                self.filter.queues,
                work.len(),
                self.expected
            ));
        }
        Ok(elapsed)
    }
}

/// Adds the baseline and loaded percentiles of one fetch, and their ratios, as `{prefix}_...`.
fn report(f: &mut Figures, prefix: &str, base: Vec<f64>, loaded: Vec<f64>) {
    let base_mean = stats::mean(&base);
    let loaded_mean = stats::mean(&loaded);
    let base = stats::sorted(base);
    let loaded = stats::sorted(loaded);
    let (b50, l50) = (
        stats::percentile(&base, 50.0),
        stats::percentile(&loaded, 50.0),
    );
    let (b99, l99) = (
        stats::percentile(&base, 99.0),
        stats::percentile(&loaded, 99.0),
    );
    f.num(&format!("{prefix}_base_p50_ms"), b50, 3)
        .num(&format!("{prefix}_base_p99_ms"), b99, 3)
        .num(&format!("{prefix}_base_mean_ms"), base_mean, 3)
        .num(&format!("{prefix}_loaded_p50_ms"), l50, 3)
        .num(&format!("{prefix}_loaded_p99_ms"), l99, 3)
        .num(&format!("{prefix}_loaded_mean_ms"), loaded_mean, 3)
        .num(&format!("{prefix}_ratio_p50"), l50 / b50, 2)
        .num(&format!("{prefix}_ratio_p99"), l99 / b99, 2)
        .num(&format!("{prefix}_ratio_mean"), loaded_mean / base_mean, 2);
}
