//! Warm instances and claims: a workflow stays in memory between its turns instead of being
//! replayed, work that stays in one engine skips the store's fetches, and both fall back to
//! the plain path (replay, fetch) whenever they must.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::observed::{Observed, Observer};
use duraflow::crates::store::{
    Committed, Completed, Journal, LeaseToken, StoreResult, TaskWork, TurnWork,
};
use duraflow::prelude::*;

/// How often each workflow's code started running (once per replay).
static STARTS: AtomicUsize = AtomicUsize::new(0);

/// How often an activity ran.
static NOOPS: AtomicUsize = AtomicUsize::new(0);

async fn noop(_ctx: ActivityContext, _: u32) -> Result<(), ActivityError> {
    NOOPS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Counts its starts, then runs `n` activities one after the other and waits for `go`.
async fn counted(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    STARTS.fetch_add(1, Ordering::SeqCst);
    for i in 0..n {
        ctx.activity::<()>("noop", &i).await?;
    }
    let extra: u32 = ctx.wait_for_event("go").await?;
    Ok(n + extra)
}

/// Waits for `n` events one after the other, running an activity after each, and sums them.
async fn rounds(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut sum = 0;
    for i in 0..n {
        sum += ctx.wait_for_event::<u32>("next").await?;
        ctx.activity::<()>("noop", &i).await?;
    }
    Ok(sum)
}

/// Counts what the store hands out through fetches and through claims.
#[derive(Default)]
struct Counting {
    fetched_turns: AtomicUsize,
    fetched_tasks: AtomicUsize,
    claimed_turns: AtomicUsize,
    claimed_starts: AtomicUsize,
    claimed_sends: AtomicUsize,
    claimed_tasks: AtomicUsize,
    cached_journals: AtomicUsize,
    direct_accepted: AtomicUsize,
    direct_refused: AtomicUsize,
    /// Refuse every direct turn, as if another turn always got to the instance first.
    refuse_direct: std::sync::atomic::AtomicBool,
}

impl Counting {
    fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

fn is_cached(turn: &TurnWork) -> bool {
    matches!(turn.journal, Ok(Journal::Cached))
}

impl Observer for Counting {
    fn created(&self, turn: Option<&TurnWork>) {
        if turn.is_some() {
            self.claimed_starts.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn sent(&self, turn: Option<&TurnWork>) {
        if let Some(turn) = turn {
            self.claimed_sends.fetch_add(1, Ordering::SeqCst);
            if is_cached(turn) {
                self.cached_journals.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    fn fetched_turns(&self, work: &[TurnWork]) {
        self.fetched_turns.fetch_add(work.len(), Ordering::SeqCst);
        let cached = work.iter().filter(|w| is_cached(w)).count();
        self.cached_journals.fetch_add(cached, Ordering::SeqCst);
    }
    fn committed(&self, results: &[StoreResult<Committed>]) {
        let claimed: usize = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|c| c.tasks.len())
            .sum();
        self.claimed_tasks.fetch_add(claimed, Ordering::SeqCst);
    }
    fn refuse_direct(&self, _commit: &duraflow::crates::store::TurnCommit) -> bool {
        self.refuse_direct.load(Ordering::SeqCst)
    }
    fn direct(&self, accepted: bool) {
        let counter = match accepted {
            true => &self.direct_accepted,
            false => &self.direct_refused,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
    fn fetched_tasks(&self, tasks: &[TaskWork]) {
        self.fetched_tasks.fetch_add(tasks.len(), Ordering::SeqCst);
    }
    fn completed(&self, _tokens: &[LeaseToken], results: &[StoreResult<Completed>]) {
        for turn in results
            .iter()
            .filter_map(|r| r.as_ref().ok()?.turn.as_ref())
        {
            self.claimed_turns.fetch_add(1, Ordering::SeqCst);
            if is_cached(turn) {
                self.cached_journals.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

async fn engine_on(store: Arc<Observed<Counting>>, options: EngineOptions) -> Engine {
    Engine::builder()
        .shared_store(store)
        .options(options)
        .workflow("counted", counted)
        .workflow("rounds", rounds)
        .activity("noop", noop)
        .start()
        .await
        .unwrap()
}

/// Waits until the instance has run its activities and waits for `go`.
async fn parked(client: &Client, id: &str) {
    common::history_with(client, id, "the wait for go", |k| {
        matches!(k, duraflow::EventKind::EventWaitStarted { .. })
    })
    .await;
}

// One test, so that nothing else moves STARTS while it counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instances_claims_and_their_fallbacks() {
    // 1. Warm: seven turns (start, five results, the event), and the code starts once. No turn
    //    is fetched, and no task: the start claims the first turn, each commit claims its task,
    //    each result, which the warm workflow waits for alone, goes straight into its next turn
    //    (a direct turn), committed with it, and the client's send of the event claims its
    //    turn, which finds its journal left unread.
    let store = Arc::new(Observed::<Counting>::default());
    let engine = engine_on(store.clone(), EngineOptions::default()).await;
    let client = engine.client();
    STARTS.store(0, Ordering::SeqCst);
    let run = client.start("counted", &5u32).id("warm").await.unwrap();
    parked(&client, &run.id).await;
    client.raise_event(&run, "go", &1u32).await.unwrap();
    let out: u32 = client.wait(&run).await.unwrap();
    assert_eq!(out, 6);
    assert_eq!(
        STARTS.load(Ordering::SeqCst),
        1,
        "a warm workflow is never replayed"
    );
    assert_eq!(Counting::get(&store.claimed_tasks), 5, "every task claimed");
    assert_eq!(Counting::get(&store.fetched_tasks), 0, "no task fetched");
    assert_eq!(
        Counting::get(&store.direct_accepted),
        5,
        "each result's turn taken directly"
    );
    assert_eq!(Counting::get(&store.direct_refused), 0);
    assert_eq!(
        Counting::get(&store.claimed_turns),
        0,
        "no result went through the inbox"
    );
    assert_eq!(
        Counting::get(&store.claimed_starts),
        1,
        "the start claimed the first turn"
    );
    assert_eq!(
        Counting::get(&store.claimed_sends),
        1,
        "the event's send claimed its turn"
    );
    assert_eq!(Counting::get(&store.fetched_turns), 0, "no turn fetched");
    assert_eq!(
        Counting::get(&store.cached_journals),
        1,
        "the event's turn found the journal in memory"
    );
    assert_eq!(engine.warm_instances(), 0, "a finished instance is dropped");
    engine.shutdown().await;

    // 1b. Every direct turn refused, as if another turn always got to the instance first: each
    //     result is reported the usual way instead (its completion claims the turn, which
    //     replays, the warm run having moved past the refused commit), each activity still
    //     runs once, and the output is the same.
    let store = Arc::new(Observed::<Counting>::default());
    store.refuse_direct.store(true, Ordering::SeqCst);
    let engine = engine_on(store.clone(), EngineOptions::default()).await;
    let client = engine.client();
    STARTS.store(0, Ordering::SeqCst);
    NOOPS.store(0, Ordering::SeqCst);
    let run = client.start("counted", &3u32).id("refused").await.unwrap();
    parked(&client, &run.id).await;
    client.raise_event(&run, "go", &1u32).await.unwrap();
    assert_eq!(client.wait::<u32>(&run).await.unwrap(), 4);
    assert_eq!(NOOPS.load(Ordering::SeqCst), 3, "each activity ran once");
    assert_eq!(Counting::get(&store.direct_refused), 3);
    assert_eq!(Counting::get(&store.direct_accepted), 0);
    assert_eq!(
        Counting::get(&store.claimed_turns),
        3,
        "each refused result's turn claimed by its completion"
    );
    assert_eq!(
        STARTS.load(Ordering::SeqCst),
        4,
        "one replay after each refused direct turn"
    );
    let journal = client.history(&run.id, None).await.unwrap();
    let report = duraflow::check_replay(duraflow::workflow_fn(counted), &run.id, 1, journal);
    assert!(report.nondeterminism().is_none(), "{:?}", report.outcome);
    engine.shutdown().await;

    // 2. No warm instances: every turn replays the journal from the start.
    let store = Arc::new(Observed::<Counting>::default());
    let options = EngineOptions {
        warm_instances: 0,
        ..EngineOptions::default()
    };
    let engine = engine_on(store.clone(), options).await;
    let client = engine.client();
    STARTS.store(0, Ordering::SeqCst);
    let run = client.start("counted", &5u32).id("cold").await.unwrap();
    parked(&client, &run.id).await;
    client.raise_event(&run, "go", &1u32).await.unwrap();
    assert_eq!(client.wait::<u32>(&run).await.unwrap(), 6);
    assert_eq!(STARTS.load(Ordering::SeqCst), 7, "one replay per turn");
    assert_eq!(Counting::get(&store.cached_journals), 0);
    engine.shutdown().await;

    // 3. A new engine on the same store (a restart) has nothing warm: it replays once, then
    //    keeps the instance warm again.
    let store = Arc::new(Observed::<Counting>::default());
    let engine = engine_on(store.clone(), EngineOptions::default()).await;
    let client = engine.client();
    STARTS.store(0, Ordering::SeqCst);
    let run = client.start("counted", &3u32).id("restart").await.unwrap();
    parked(&client, &run.id).await;
    assert_eq!(engine.warm_instances(), 1, "the parked instance is warm");
    engine.shutdown().await;
    assert_eq!(STARTS.load(Ordering::SeqCst), 1);
    let engine = engine_on(store.clone(), EngineOptions::default()).await;
    let client = engine.client();
    client.raise_event(&run, "go", &10u32).await.unwrap();
    assert_eq!(client.wait::<u32>(&run).await.unwrap(), 13);
    assert_eq!(
        STARTS.load(Ordering::SeqCst),
        2,
        "replayed once after the restart"
    );
    engine.shutdown().await;

    // 4. Two engines share the store and take the turns of one instance in whatever order
    //    they come: each turn runs on the journal as the store has it (a copy another engine
    //    moved on is never used), so every round is counted once and the journal replays.
    let store = Arc::new(Observed::<Counting>::default());
    let a = engine_on(store.clone(), EngineOptions::default()).await;
    let b = engine_on(store.clone(), EngineOptions::default()).await;
    let client = a.client();
    let run = client.start("rounds", &20u32).id("shared").await.unwrap();
    for round in 0..20u32 {
        common::eventually(&format!("round {round} to wait"), || async {
            let journal = client.history(&run.id, None).await.ok()?;
            let waits = journal
                .iter()
                .filter(|e| matches!(e.kind, duraflow::EventKind::EventWaitStarted { .. }))
                .count();
            (waits == round as usize + 1).then_some(())
        })
        .await;
        client.raise_event(&run, "next", &round).await.unwrap();
    }
    assert_eq!(
        client.wait::<u32>(&run).await.unwrap(),
        (0..20).sum::<u32>()
    );
    let journal = client.history(&run.id, None).await.unwrap();
    let report = duraflow::check_replay(duraflow::workflow_fn(rounds), &run.id, 1, journal);
    assert!(report.nondeterminism().is_none(), "{:?}", report.outcome);
    assert!(report.new_events.is_empty());
    a.shutdown().await;
    b.shutdown().await;
}
