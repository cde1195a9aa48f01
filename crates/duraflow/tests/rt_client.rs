//! The client: idempotent starts, unknown workflow names, status and history, waits with a
//! timeout, listing with filters and paging, and purge.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{history_with, virtual_clock};
use duraflow::prelude::*;
use duraflow::{EventKind, IfExists, ListFilter, StoreError};

/// Counts its runs through an activity and returns its input doubled.
async fn double(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    ctx.activity("count", &n).await
}

/// Blocks until it gets `release`.
async fn blocked(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.wait_for_event("release").await
}

async fn engine(runs: Arc<AtomicUsize>) -> Engine {
    Engine::builder()
        .store(MemoryStore::new())
        .clock(virtual_clock())
        .workflow("double", double)
        .workflow("blocked", blocked)
        .activity("count", move |_ctx: ActivityContext, n: u32| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<u32, ActivityError>(n * 2)
            }
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_an_existing_id_returns_the_instance_without_a_second_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let engine = engine(runs.clone()).await;
    let client = engine.client();

    let first = client.start("double", &21u32).id("order-1").await.unwrap();
    assert_eq!(first.id, "order-1");
    assert!(!first.existed);
    let again = client.start("double", &21u32).id("order-1").await.unwrap();
    assert_eq!(again.id, "order-1");
    assert!(again.existed);
    // Even with other input: the existing instance is returned, unchanged.
    let other = client.start("double", &99u32).id("order-1").await.unwrap();
    assert!(other.existed);

    assert_eq!(
        client
            .wait::<u32>(&first)
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        42
    );
    let after = client.start("double", &21u32).id("order-1").await.unwrap();
    assert!(after.existed, "a finished instance is returned too");
    assert_eq!(
        client
            .wait::<u32>(&after)
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        42
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the workflow ran once");
    let info = client.status(&first).await.unwrap();
    assert_eq!(info.input.as_json(), "21");
    assert_eq!(info.execution, 1);

    match client
        .start("double", &21u32)
        .id("order-1")
        .if_exists(IfExists::Fail)
        .await
    {
        Err(ClientError::AlreadyExists(id)) => assert_eq!(id, "order-1"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // A fresh id with IfExists::Fail starts normally.
    let fresh = client
        .start("double", &1u32)
        .id("order-2")
        .if_exists(IfExists::Fail)
        .await
        .unwrap();
    assert!(!fresh.existed);
    assert_eq!(
        client
            .wait::<u32>(&fresh)
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        2
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_an_unregistered_workflow_lists_the_registered_ones() {
    let engine = engine(Arc::default()).await;
    let client = engine.client();
    match client.start("dobule", &1u32).id("typo").await {
        Err(e @ ClientError::UnknownWorkflow { .. }) => {
            let message = e.to_string();
            let ClientError::UnknownWorkflow { name, registered } = e else {
                unreachable!()
            };
            assert_eq!(name, "dobule");
            assert_eq!(registered, ["blocked", "double"]);
            assert!(message.contains("blocked, double"), "{message}");
        }
        other => panic!("expected UnknownWorkflow, got {other:?}"),
    }
    assert!(matches!(
        client.status("typo").await,
        Err(ClientError::NotFound(_))
    ));
    match client.start("double", &1u32).id("  ").await {
        Err(ClientError::Store(StoreError::Invalid(_))) => {}
        other => panic!("expected an invalid id, got {other:?}"),
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_history_follow_an_instance() {
    let engine = engine(Arc::default()).await;
    let client = engine.client();
    let run = client.start("blocked", &()).id("b").await.unwrap();
    history_with(&client, &run.id, "the wait", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    let info = client.status(&run).await.unwrap();
    assert_eq!(info.status, InstanceStatus::Running);
    assert_eq!(info.name, "blocked");
    assert!(info.output.is_none() && info.failure.is_none());

    client.raise_event(&run, "release", &7u32).await.unwrap();
    assert_eq!(
        client
            .wait::<u32>(&run)
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        7
    );
    let info = client.status(&run).await.unwrap();
    assert_eq!(info.status, InstanceStatus::Completed);
    assert_eq!(info.output.unwrap().as_json(), "7");
    assert_eq!(
        common::types(&client.history(&run, None).await.unwrap()),
        [
            "workflow_started",
            "event_wait_started",
            "event_raised",
            "workflow_completed"
        ]
    );
    assert_eq!(
        client.history(&run, Some(1)).await.unwrap(),
        client.history(&run, None).await.unwrap()
    );
    assert!(matches!(
        client.history("nobody", None).await,
        Err(ClientError::NotFound(id)) if id == "nobody"
    ));
    assert!(matches!(
        client.status("nobody").await,
        Err(ClientError::NotFound(_))
    ));
    assert!(matches!(
        client.wait::<u32>("nobody").timeout(common::DEADLINE).await,
        Err(ClientError::NotFound(_))
    ));
    // Decoding the output as the wrong type is reported, not a panic.
    assert!(matches!(
        client.wait::<String>(&run).timeout(common::DEADLINE).await,
        Err(ClientError::Decode { .. })
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_with_a_timeout_gives_up_while_the_instance_goes_on() {
    let engine = engine(Arc::default()).await;
    let client = engine.client();
    let run = client.start("blocked", &()).await.unwrap();
    // A client-side wait in real time: the instance is blocked on an event that never comes.
    match client
        .wait::<u32>(&run)
        .timeout(Duration::from_millis(50))
        .await
    {
        Err(ClientError::Timeout { id, waited }) => {
            assert_eq!(id, run.id);
            assert_eq!(waited, Duration::from_millis(50));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(!client.status(&run).await.unwrap().status.is_terminal());
    client.raise_event(&run, "release", &3u32).await.unwrap();
    assert_eq!(
        client
            .wait::<u32>(&run)
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        3
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_status_and_name_and_pages_through_every_instance_once() {
    let engine = engine(Arc::default()).await;
    let client = engine.client();
    let mut doubles = BTreeSet::new();
    for n in 0..7u32 {
        let run = client
            .start("double", &n)
            .id(format!("d-{n:02}"))
            .await
            .unwrap();
        doubles.insert(run.id);
    }
    let mut blocked_ids = BTreeSet::new();
    for n in 0..5u32 {
        let run = client
            .start("blocked", &())
            .id(format!("b-{n:02}"))
            .await
            .unwrap();
        blocked_ids.insert(run.id);
    }
    for id in &doubles {
        client
            .wait::<u32>(id)
            .timeout(common::DEADLINE)
            .await
            .unwrap();
    }
    for id in &blocked_ids {
        history_with(&client, id, "the wait", |k| {
            matches!(k, EventKind::EventWaitStarted { .. })
        })
        .await;
    }

    let all = |filter: ListFilter| {
        let client = client.clone();
        async move {
            let mut seen = Vec::new();
            let mut filter = filter;
            let mut pages = 0;
            loop {
                let page = client.list(filter.clone()).await.unwrap();
                assert!(page.instances.len() <= filter.limit.max(1), "{page:?}");
                pages += 1;
                seen.extend(
                    page.instances
                        .iter()
                        .map(|i| (i.id.clone(), i.name.clone(), i.status)),
                );
                match page.next {
                    Some(next) => filter.after = Some(next),
                    None => break,
                }
                assert!(pages < 100, "paging does not end");
            }
            (seen, pages)
        }
    };

    // Completed doubles, two at a time.
    let (seen, pages) = all(ListFilter {
        statuses: vec![InstanceStatus::Completed],
        name: Some("double".into()),
        limit: 2,
        ..ListFilter::default()
    })
    .await;
    let ids: Vec<String> = seen.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(
        ids,
        doubles.iter().cloned().collect::<Vec<_>>(),
        "each once, in id order"
    );
    assert!(seen
        .iter()
        .all(|(_, n, s)| n == "double" && *s == InstanceStatus::Completed));
    assert_eq!(pages, 4);

    // Running instances, whatever their name.
    let (seen, _) = all(ListFilter {
        statuses: vec![InstanceStatus::Running],
        limit: 3,
        ..ListFilter::default()
    })
    .await;
    let ids: BTreeSet<String> = seen.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(ids, blocked_ids);
    assert_eq!(seen.len(), blocked_ids.len());

    // By name only, one at a time.
    let (seen, pages) = all(ListFilter {
        name: Some("blocked".into()),
        limit: 1,
        ..ListFilter::default()
    })
    .await;
    assert_eq!(seen.len(), 5);
    assert_eq!(pages, 5);

    // Everything, and statuses that match nothing.
    let (seen, _) = all(ListFilter {
        limit: 5,
        ..ListFilter::default()
    })
    .await;
    let ids: BTreeSet<String> = seen.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(seen.len(), 12);
    let (seen, pages) = all(ListFilter {
        statuses: vec![InstanceStatus::Failed, InstanceStatus::Cancelled],
        limit: 5,
        ..ListFilter::default()
    })
    .await;
    assert!(seen.is_empty());
    assert_eq!(pages, 1);
    let (seen, _) = all(ListFilter {
        statuses: vec![InstanceStatus::Running, InstanceStatus::Completed],
        name: Some("double".into()),
        limit: 4,
        ..ListFilter::default()
    })
    .await;
    assert_eq!(seen.len(), 7);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_refuses_a_running_instance_and_deletes_a_finished_one() {
    let engine = engine(Arc::default()).await;
    let client = engine.client();
    let running = client.start("blocked", &()).id("running").await.unwrap();
    history_with(&client, &running.id, "the wait", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    match client.purge(&running).await {
        Err(ClientError::InstanceRunning(id)) => assert_eq!(id, "running"),
        other => panic!("expected InstanceRunning, got {other:?}"),
    }
    assert_eq!(
        client.status(&running).await.unwrap().status,
        InstanceStatus::Running
    );
    assert!(!client.history(&running, None).await.unwrap().is_empty());

    let done = client.start("double", &4u32).id("done").await.unwrap();
    assert_eq!(
        client
            .wait::<u32>(&done)
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        8
    );
    let counts = |running: u64, completed: u64| {
        InstanceStatus::ALL
            .into_iter()
            .map(|s| match s {
                InstanceStatus::Running => (s, running),
                InstanceStatus::Completed => (s, completed),
                _ => (s, 0),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(client.count_by_status().await.unwrap(), counts(1, 1));
    client.purge(&done).await.unwrap();
    assert_eq!(client.count_by_status().await.unwrap(), counts(1, 0));
    assert!(matches!(
        client.history(&done, None).await,
        Err(ClientError::NotFound(_))
    ));
    assert!(matches!(
        client.status(&done).await,
        Err(ClientError::NotFound(_))
    ));
    for gone in ["done", "never-existed"] {
        match client.purge(gone).await {
            Err(ClientError::NotFound(id)) => assert_eq!(id, gone),
            other => panic!("purging {gone:?}: expected NotFound, got {other:?}"),
        }
    }

    // The id is free again.
    let reused = client.start("double", &5u32).id("done").await.unwrap();
    assert!(!reused.existed);
    assert_eq!(
        client
            .wait::<u32>(&reused)
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        10
    );

    // The running instance, once finished, can be purged too.
    client
        .raise_event(&running, "release", &0u32)
        .await
        .unwrap();
    client
        .wait::<u32>(&running)
        .timeout(common::DEADLINE)
        .await
        .unwrap();
    client.purge(&running).await.unwrap();
    engine.shutdown().await;
}

/// `start_many` creates a batch in one write, with each start's own options, and every instance
/// runs; a start that asked to fail on a taken id reports it, an unknown workflow fails the
/// whole call before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_many_starts_a_batch_that_runs() {
    let runs = Arc::new(AtomicUsize::new(0));
    let engine = engine(runs.clone()).await;
    let client = engine.client();
    client.start("double", &1u32).id("batch-0").await.unwrap();

    let handles = client
        .start_many((0..50u32).map(|n| client.start("double", &n).id(format!("batch-{n}"))))
        .await
        .unwrap();
    assert_eq!(handles.len(), 50);
    assert_eq!(handles[0].id, "batch-0");
    assert!(handles[0].existed, "batch-0 was started before the batch");
    assert!(handles[1..].iter().all(|h| !h.existed));
    for (n, handle) in handles.iter().enumerate().skip(1) {
        assert_eq!(handle.id, format!("batch-{n}"));
        let out = client
            .wait::<u32>(handle)
            .timeout(common::DEADLINE)
            .await
            .unwrap();
        assert_eq!(out, 2 * u32::try_from(n).unwrap());
    }
    assert_eq!(
        client
            .wait::<u32>(&handles[0])
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        2,
        "the existing instance kept its own input"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 50, "each instance ran once");

    // A start that must be new reports its taken id; the others in the batch are created.
    match client
        .start_many([
            client.start("double", &7u32).id("batch-new"),
            client
                .start("double", &7u32)
                .id("batch-3")
                .if_exists(IfExists::Fail),
        ])
        .await
    {
        Err(ClientError::AlreadyExists(id)) => assert_eq!(id, "batch-3"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        client
            .wait::<u32>("batch-new")
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        14
    );

    // An unknown workflow anywhere in the batch fails it before anything is written.
    let refused = client
        .start_many([
            client.start("double", &1u32).id("never-1"),
            client.start("no-such-workflow", &1u32).id("never-2"),
        ])
        .await;
    assert!(
        matches!(refused, Err(ClientError::UnknownWorkflow { ref name, .. }) if name == "no-such-workflow"),
        "{refused:?}"
    );
    assert!(matches!(
        client.status("never-1").await,
        Err(ClientError::NotFound(_))
    ));
    engine.shutdown().await;
}

/// Each waiting client watches its own instance (`Notifier::watch`): an instance that
/// finishes wakes its own waiters, and a finished wait leaves no watch behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_waiting_client_watches_its_own_instance() {
    let engine = engine(Arc::default()).await;
    let client = engine.client();
    let store = engine.store();
    let notifier = store.notifier().expect("the memory store has a notifier");
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(client.start("blocked", &()).await.unwrap());
    }
    let waits: Vec<_> = runs
        .iter()
        .map(|run| {
            let client = client.clone();
            let id = run.id.clone();
            tokio::spawn(async move { client.wait::<u32>(&id).timeout(common::DEADLINE).await })
        })
        .collect();
    common::eventually("every client watches its instance", || async {
        (notifier.watched_instances() == 3).then_some(())
    })
    .await;

    client
        .raise_event(&runs[1], "release", &7u32)
        .await
        .unwrap();
    let mut waits = waits.into_iter();
    let (first, second, third) = (
        waits.next().unwrap(),
        waits.next().unwrap(),
        waits.next().unwrap(),
    );
    assert_eq!(second.await.unwrap().unwrap(), 7);
    assert_eq!(
        notifier.watched_instances(),
        2,
        "the finished wait stopped watching"
    );
    assert!(!first.is_finished() && !third.is_finished());

    client
        .raise_event(&runs[0], "release", &1u32)
        .await
        .unwrap();
    client
        .raise_event(&runs[2], "release", &3u32)
        .await
        .unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(third.await.unwrap().unwrap(), 3);
    assert_eq!(notifier.watched_instances(), 0);
    engine.shutdown().await;
}
