//! The order DAG's handlers, the engine registration and the report printout, shared by
//! `main.rs` and the test that runs the example (`tests/dag_example.rs`).
//!
//! The template is `crates/duraflow-dag/examples/order.yaml`: validate → reserve inventory ‖
//! charge payment → decide (ship or refund) → ship → pack each item (a batch) → collect the
//! parcels (convergence) → notify, or refund → notify.

use std::fmt::Write as _;
use std::sync::Arc;

use duraflow::dag::run::{self, DagReport, DagStart};
use duraflow::dag::template::load;
use duraflow::dag::{Registry, Template};
use duraflow::prelude::*;
use serde_json::{json, Value};

/// The template file.
pub(crate) const TEMPLATE_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../duraflow-dag/examples/order.yaml"
);

/// Every handler the template names (the batch worker `pack_item` included).
pub(crate) const HANDLERS: [&str; 10] = [
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

/// The order template, read from [`TEMPLATE_PATH`].
pub(crate) fn template() -> Result<Template, Box<dyn std::error::Error>> {
    Ok(load::from_path(TEMPLATE_PATH)?)
}

/// Registers the DAG interpreter with the order template, and the handlers as activities.
/// The engine serves the `payments` queue too (`charge_payment` runs there).
pub(crate) fn register(
    builder: EngineBuilder,
) -> Result<EngineBuilder, Box<dyn std::error::Error>> {
    let mut registry = Registry::new(HANDLERS);
    registry.register(template()?)?;
    Ok(run::register(builder, Arc::new(registry))
        .queues(["default", "payments"])
        .activity("validate_order", validate_order)
        .activity("reserve_inventory", reserve_inventory)
        .activity("charge_payment", charge_payment)
        .activity("decide_shipping", decide_shipping)
        .activity("book_shipment", book_shipment)
        .activity("refund_payment", refund_payment)
        .activity("list_items", list_items)
        .activity("pack_item", pack_item)
        .activity("collect_parcels", collect_parcels)
        .activity("notify_customer", notify_customer))
}

/// The start of an order run: the template by name (its latest version) and the order.
pub(crate) fn order(id: &str, skus: &[&str]) -> DagStart {
    let items: Vec<Value> = skus.iter().map(|sku| json!({ "sku": sku })).collect();
    DagStart::named(
        "shop",
        "order",
        json!({ "order": { "id": id, "items": items } }),
    )
}

/// Whether the warehouse has `sku` (anything starting with `sold-out` it has not).
fn in_stock(sku: &str) -> bool {
    !sku.starts_with("sold-out")
}

async fn validate_order(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    let order = &input["order"];
    match order["items"].as_array() {
        Some(items) if !items.is_empty() => Ok(json!({ "items": items.len() })),
        _ => Err(ActivityError::terminal("an order needs at least one item")),
    }
}

async fn reserve_inventory(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    let skus: Vec<&str> = input["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["sku"].as_str()).collect())
        .unwrap_or_default();
    let (reserved, missing): (Vec<&str>, Vec<&str>) = skus.into_iter().partition(|s| in_stock(s));
    Ok(json!({ "reserved": reserved, "missing": missing }))
}

async fn charge_payment(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    let id = input["order"]["id"].as_str().unwrap_or("?");
    Ok(json!({ "receipt": format!("rcpt-{id}") }))
}

/// The decision: ship when everything was reserved, refund otherwise.
async fn decide_shipping(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    let missing = input["reservation"]["missing"]
        .as_array()
        .map_or(0, Vec::len);
    Ok(if missing == 0 {
        json!(["ship"])
    } else {
        json!(["refund"])
    })
}

async fn book_shipment(ctx: ActivityContext, _input: Value) -> Result<Value, ActivityError> {
    Ok(json!({ "carrier": "duraparcel", "booking": format!("bk-{}", ctx.instance_id()) }))
}

async fn refund_payment(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    Ok(json!({ "refunded": input["receipt"] }))
}

/// The batch step: one item per SKU, each packed by a `pack_item` worker.
async fn list_items(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    Ok(input["items"].clone())
}

async fn pack_item(_ctx: ActivityContext, item: Value) -> Result<Value, ActivityError> {
    Ok(json!({ "parcel": item["sku"] }))
}

/// The convergence step: every worker's result, in item order.
async fn collect_parcels(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    Ok(json!({ "parcels": input["results"] }))
}

async fn notify_customer(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    let id = input["order"]["id"].as_str().unwrap_or("?");
    Ok(json!(format!("customer of {id} notified")))
}

/// A run's report as text: the run's state and transitions, then each step's state, attempts
/// and transitions, and the results of the steps that have one.
pub(crate) fn describe(id: &str, report: &DagReport) -> String {
    let mut out = String::new();
    let transitions: usize = report.steps.values().map(|s| s.transitions.len()).sum();
    let _ = writeln!(
        out,
        "run {id} ({}): {}, {} steps, {} run transitions, {transitions} step transitions",
        report.template,
        report.state,
        report.steps.len(),
        report.run_transitions.len(),
    );
    for (name, step) in &report.steps {
        let trail: Vec<String> = step.transitions.iter().map(|t| t.to.to_string()).collect();
        let _ = writeln!(
            out,
            "  {name:<18} {:<10} attempts {}  pending → {}",
            step.state.to_string(),
            step.attempts,
            trail.join(" → "),
        );
    }
    for (name, result) in &report.results {
        let _ = writeln!(out, "  result {name:<18} {result}");
    }
    out
}
