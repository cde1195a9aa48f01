//! Warm instances under load: many workflows whose activities finish at once, so each result
//! comes back (and claims the next turn) while the turn that scheduled it may still be
//! finishing its commit. Every turn after the first must find its run warm, and no turn may be
//! lost to a stale one.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use duraflow::prelude::*;
use duraflow::{EngineOptions, MemoryStore};
use futures::{StreamExt, TryStreamExt};

/// How often a workflow's code started running (once per replay).
static STARTS: AtomicUsize = AtomicUsize::new(0);

async fn noop(_ctx: ActivityContext, _: u32) -> Result<(), ActivityError> {
    Ok(())
}

/// Three no-op activities one after the other; returns its input.
async fn three(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    STARTS.fetch_add(1, Ordering::SeqCst);
    for i in 0..3u32 {
        ctx.activity::<()>("noop", &i).await?;
    }
    Ok(n)
}

// Each round is 1,000 workflows: the stale-run race this guards against showed up about once
// in 10,000 workflows, the missed-warm one in most rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_turn_finds_its_run_warm_and_none_is_lost() {
    const N: u32 = 1_000;
    for round in 0..5 {
        STARTS.store(0, Ordering::SeqCst);
        let engine = Engine::builder()
            .shared_store(Arc::new(MemoryStore::new()))
            // The cache holds every workflow in flight, so none is ever evicted.
            .options(EngineOptions {
                warm_instances: N as usize,
                ..EngineOptions::default()
            })
            .workflow("three", three)
            .activity("noop", noop)
            .start()
            .await
            .unwrap();
        let client = engine.client();
        let ids: Vec<String> = (0..N).map(|i| format!("r{round}-w{i:04}")).collect();
        futures::stream::iter(ids.iter().zip(0..N).map(|(id, n)| {
            let client = client.clone();
            async move { client.start("three", &n).id(id.clone()).await }
        }))
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
        // A turn lost to a stale run would hold its lease for the engine's 60 s turn lease.
        for (id, n) in ids.iter().zip(0..N) {
            let out: u32 = client
                .wait(id)
                .timeout(common::DEADLINE)
                .await
                .unwrap_or_else(|e| panic!("round {round}: {id} did not finish: {e}"));
            assert_eq!(out, n);
        }
        assert_eq!(
            STARTS.load(Ordering::SeqCst),
            N as usize,
            "round {round}: each workflow's code ran once; every later turn was warm"
        );
        engine.shutdown().await;
    }
}
