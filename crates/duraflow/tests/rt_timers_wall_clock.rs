//! Durable timers on the system clock: a sleep never ends before its duration has passed in
//! wall time since the workflow asked for it, although journal times are whole milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use duraflow::prelude::*;

const SLEEP: Duration = Duration::from_secs(1);
/// Sleepers run side by side, so their calls fall at different points of a millisecond.
const SLEEPERS: u32 = 12;

/// For each sleeper, how long its sleep took in wall time, as the workflow itself measured it.
type Measured = Arc<Mutex<Vec<(String, Duration)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_sleep_never_ends_before_one_second_has_passed() {
    let measured: Measured = Arc::default();
    let sink = measured.clone();
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .workflow("sleeper", move |ctx: WorkflowContext, _: u32| {
            let sink = sink.clone();
            async move {
                let called = Instant::now();
                ctx.sleep(SLEEP).await?;
                // The workflow only resumes live here (the timer's turn runs the warm run),
                // so this measures the real span from the call to the resumption.
                if !ctx.is_replaying() {
                    let took = called.elapsed();
                    sink.lock()
                        .unwrap()
                        .push((ctx.instance_id().to_string(), took));
                }
                Ok::<_, WorkflowError>(())
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let mut runs = Vec::new();
    for i in 0..SLEEPERS {
        runs.push(
            client
                .start("sleeper", &i)
                .id(format!("sleeper-{i}"))
                .await
                .unwrap(),
        );
    }
    for run in &runs {
        let () = client.wait(run).timeout(common::DEADLINE).await.unwrap();
    }
    let measured = measured.lock().unwrap().clone();
    assert_eq!(
        measured.len(),
        runs.len(),
        "every sleeper measured its sleep"
    );
    for (id, took) in measured {
        assert!(
            took >= SLEEP,
            "{id}: a {SLEEP:?} sleep resumed after only {took:?} of wall time"
        );
    }
    drop(client);
    engine.shutdown().await;
}
