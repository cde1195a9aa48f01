//! The README's DAG example (`cargo run --example order_dag --features dag`) end to end: its
//! own handlers and the template file it loads, on a SQLite file, down both branches of the
//! decision; then a second engine on the same file finds both runs done, as the example does
//! when run twice.

#![cfg(feature = "dag")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[path = "../examples/order_dag/shop.rs"]
mod shop;

use std::collections::BTreeMap;

use duraflow::dag::run::{self, DagReport};
use duraflow::dag::{RunState, StepState};
use duraflow::prelude::*;
use serde_json::json;

/// How long a run may take before the test fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(60);

fn states(report: &DagReport) -> BTreeMap<String, StepState> {
    report
        .steps
        .iter()
        .map(|(name, s)| (name.clone(), s.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_dag_example_ships_one_order_and_refunds_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("order-dag.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let engine = shop::register(Engine::builder().store(store))
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let shipped = client
        .start(
            run::WORKFLOW_NAME,
            &shop::order("o-1", &["book", "lamp", "mug"]),
        )
        .id("o-1")
        .await
        .unwrap();
    let refunded = client
        .start(
            run::WORKFLOW_NAME,
            &shop::order("o-2", &["sold-out-chair", "mug"]),
        )
        .id("o-2")
        .await
        .unwrap();

    let ship: DagReport = client.wait(&shipped).timeout(DEADLINE).await.unwrap();
    assert_eq!(ship.state, RunState::Complete);
    assert_eq!(ship.results["ship_or_refund"], json!(["ship"]));
    assert_eq!(
        ship.results["collect_parcels"],
        json!({ "parcels": [{"parcel": "book"}, {"parcel": "lamp"}, {"parcel": "mug"}] })
    );
    assert_eq!(ship.results["notify"], json!("customer of o-1 notified"));
    let mut expected: BTreeMap<String, StepState> = [
        "validate",
        "reserve_inventory",
        "charge_payment",
        "ship_or_refund",
        "ship",
        "pack_items",
        "pack_items[0]",
        "pack_items[1]",
        "pack_items[2]",
        "collect_parcels",
        "notify",
    ]
    .iter()
    .map(|s| (s.to_string(), StepState::Complete))
    .collect();
    expected.insert("refund".into(), StepState::Skipped);
    assert_eq!(states(&ship), expected);

    let refund: DagReport = client.wait(&refunded).timeout(DEADLINE).await.unwrap();
    assert_eq!(refund.state, RunState::Complete);
    assert_eq!(refund.results["ship_or_refund"], json!(["refund"]));
    assert_eq!(refund.results["refund"], json!({ "refunded": "rcpt-o-2" }));
    assert_eq!(
        refund.results["reserve_inventory"],
        json!({ "reserved": ["mug"], "missing": ["sold-out-chair"] })
    );
    let mut expected: BTreeMap<String, StepState> = [
        "validate",
        "reserve_inventory",
        "charge_payment",
        "ship_or_refund",
        "refund",
        "notify",
    ]
    .iter()
    .map(|s| (s.to_string(), StepState::Complete))
    .collect();
    for skipped in ["ship", "pack_items", "collect_parcels"] {
        expected.insert(skipped.into(), StepState::Skipped);
    }
    assert_eq!(states(&refund), expected);

    // What the example prints, and the report rebuilt from each journal.
    for (run, report) in [(&shipped, &ship), (&refunded, &refund)] {
        assert_eq!(&run::dag_status(&client, &run.id).await.unwrap(), report);
        let text = shop::describe(&run.id, report);
        assert!(
            text.starts_with(&format!("run {} (shop/order@1.0.0): complete,", run.id)),
            "{text}"
        );
        assert!(
            text.contains("pending → enqueued → in_progress → complete"),
            "{text}"
        );
    }
    let text = shop::describe("o-2", &refund);
    assert!(text.contains("  ship               skipped"), "{text}");
    drop(client);
    engine.shutdown().await;

    // Run twice: a new engine on the same file finds both runs finished with their reports.
    let store = SqliteStore::open(&path).await.unwrap();
    let engine = shop::register(Engine::builder().store(store))
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let again = client
        .start(
            run::WORKFLOW_NAME,
            &shop::order("o-1", &["book", "lamp", "mug"]),
        )
        .id("o-1")
        .await
        .unwrap();
    assert!(again.existed);
    let report: DagReport = client.wait(&again).timeout(DEADLINE).await.unwrap();
    assert_eq!(report, ship);
    drop(client);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_without_items_fails_at_validation_before_anything_else() {
    let engine = shop::register(Engine::builder().store(MemoryStore::new()))
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client
        .start(run::WORKFLOW_NAME, &shop::order("o-3", &[]))
        .await
        .unwrap();
    let e = client
        .wait::<DagReport>(&run)
        .timeout(DEADLINE)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least one item"), "{e}");
    let status = run::dag_status(&client, &run.id).await.unwrap();
    assert_eq!(status.state, RunState::Error);
    assert_eq!(status.steps["validate"].state, StepState::Error);
    assert_eq!(status.steps["charge_payment"].state, StepState::Pending);
    drop(client);
    engine.shutdown().await;
}
