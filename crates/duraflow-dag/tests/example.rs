//! The example template `examples/order.yaml` loads, validates, registers and runs (in a
//! simulation) down both branches of its decision.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use duraflow_dag::graph::Status;
use duraflow_dag::template::load;
use duraflow_dag::{NodeId, NodeKind, Readiness, Registry, StepKind};
use serde_json::json;

const HANDLERS: [&str; 10] = [
    "validate_order",
    "reserve_inventory",
    "charge_payment",
    "decide_shipping",
    "book_shipment",
    "refund_payment",
    "list_items",
    "pack_item",
    "collect_parcels",
    "notify_customer",
];

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/order.yaml")
}

#[test]
fn the_order_example_loads_and_validates() {
    let template = load::from_path(path()).unwrap();
    assert_eq!(template.id().to_string(), "shop/order@1.0.0");
    assert_eq!(template.steps.len(), 9);
    assert!(matches!(
        template.step("pack_items").unwrap().kind,
        StepKind::Batch { concurrency: 4, .. }
    ));
    let dag = duraflow_dag::validate(&template, HANDLERS).unwrap();
    let order: Vec<&str> = dag
        .topological_order()
        .into_iter()
        .map(|n| dag.node(n).name.as_str())
        .collect();
    assert_eq!(order.first(), Some(&"validate"));
    assert_eq!(order.last(), Some(&"notify"));

    let mut registry = Registry::new(HANDLERS);
    registry.register(template).unwrap();
    let input = json!({"order": {"id": "o-1", "items": [{"sku": "a"}, {"sku": "b"}]}});
    registry.start("shop", "order", None, &input).unwrap();
    let e = registry
        .start("shop", "order", None, &json!({"order": {"id": 1}}))
        .unwrap_err();
    assert!(e.to_string().contains("/order"), "{e}");
}

#[test]
fn the_same_template_reads_back_from_a_json_file() {
    let template = load::from_path(path()).unwrap();
    let file = std::env::temp_dir().join(format!("duraflow-dag-order-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec_pretty(&template).unwrap()).unwrap();
    let back = load::from_path(&file);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(back.unwrap(), template);
}

/// Runs the example to the end, choosing `branch` at the decision and packing two items.
fn run(branch: &str) -> (Vec<String>, Vec<String>) {
    let template = load::from_path(path()).unwrap();
    let dag = duraflow_dag::validate(&template, HANDLERS).unwrap();
    let (mut r, mut ready) = Readiness::new(dag);
    let (mut ran, mut skipped) = (Vec::new(), Vec::new());
    while let Some(n) = ready.pop() {
        ran.push(r.dag().node(n).name.clone());
        let progress = match r.dag().node(n).kind {
            NodeKind::Decision => {
                let chosen: Vec<NodeId> = r.dag().id(branch).into_iter().collect();
                r.decide(n, &chosen).unwrap()
            }
            NodeKind::Batch => r.complete_batch(n, 2).unwrap().0,
            _ => r.complete(n).unwrap(),
        };
        ready.extend(progress.ready);
        skipped.extend(
            progress
                .skipped
                .iter()
                .map(|&s| r.dag().node(s).name.clone()),
        );
    }
    assert!(r.is_finished());
    for id in r.dag().ids() {
        assert!(matches!(r.status(id), Status::Done | Status::Pruned));
    }
    ran.sort();
    skipped.sort();
    (ran, skipped)
}

#[test]
fn shipping_packs_every_item_and_skips_the_refund() {
    let (ran, skipped) = run("ship");
    assert_eq!(skipped, ["refund"]);
    for step in [
        "pack_items[0]",
        "pack_items[1]",
        "collect_parcels",
        "notify",
    ] {
        assert!(ran.iter().any(|s| s == step), "{step} did not run: {ran:?}");
    }
}

#[test]
fn refunding_skips_the_whole_shipping_branch_but_notifies() {
    let (ran, skipped) = run("refund");
    assert_eq!(skipped, ["collect_parcels", "pack_items", "ship"]);
    assert!(ran.iter().any(|s| s == "notify"), "{ran:?}");
}
