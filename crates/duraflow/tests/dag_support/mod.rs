//! Helpers shared by the DAG tests: the order example's template and handlers, counted.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "shared test helpers"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use duraflow::dag::run::DagReport;
use duraflow::dag::run::{self, DagStart};
use duraflow::dag::{template::load, Registry, StepKind, Template};
use duraflow::prelude::*;
use serde_json::{json, Value};

/// `crates/duraflow-dag/examples/order.yaml`.
pub fn order_template() -> Template {
    let yaml = include_str!("../../../duraflow-dag/examples/order.yaml");
    load::from_yaml_str(yaml).unwrap()
}

/// Every handler the order template names (batch workers included), in step order.
pub fn order_handlers() -> Vec<String> {
    let mut handlers = Vec::new();
    for step in order_template().steps {
        handlers.push(step.handler);
        if let StepKind::Batch { worker, .. } = step.kind {
            handlers.push(worker);
        }
    }
    handlers
}

/// A registry holding the order template.
pub fn order_registry() -> Arc<Registry> {
    let mut registry = Registry::new(order_handlers());
    registry.register(order_template()).unwrap();
    Arc::new(registry)
}

/// The start of an order run: `items` SKUs (none: the order is refunded).
pub fn order_start(id: &str, skus: &[&str]) -> DagStart {
    let items: Vec<Value> = skus.iter().map(|s| json!({ "sku": s })).collect();
    DagStart::named(
        "shop",
        "order",
        json!({ "order": { "id": id, "items": items } }),
    )
}

/// How many times each handler ran.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<BTreeMap<String, usize>>>);

impl Calls {
    pub fn count(&self, handler: &str) -> usize {
        self.0.lock().unwrap().get(handler).copied().unwrap_or(0)
    }

    fn hit(&self, handler: &str) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(handler.to_owned())
            .or_default() += 1;
    }
}

fn order_handler(name: &str, input: &Value) -> Value {
    match name {
        "validate_order" => json!({ "valid": true }),
        "reserve_inventory" => json!({ "reserved": input["items"].as_array().map_or(0, Vec::len) }),
        "charge_payment" => {
            json!({ "receipt": format!("r-{}", input["order"]["id"].as_str().unwrap_or("?")) })
        }
        "decide_shipping" => {
            if input["reservation"]["reserved"].as_u64().unwrap_or(0) > 0 {
                json!(["ship"])
            } else {
                json!(["refund"])
            }
        }
        "book_shipment" => json!({ "booked": true }),
        "refund_payment" => json!({ "refunded": input["receipt"] }),
        "list_items" => input["items"].clone(),
        "pack_item" => json!({ "parcel": input["sku"] }),
        "collect_parcels" => input["results"].clone(),
        "notify_customer" => json!("sent"),
        _ => Value::Null,
    }
}

/// Registers the order handlers (all but `except`) as activities, counting their calls, and
/// the interpreter with `registry`; the engine serves the `payments` queue too.
pub fn order_engine(
    builder: EngineBuilder,
    registry: Arc<Registry>,
    calls: &Calls,
    except: &[&str],
) -> EngineBuilder {
    let mut builder = run::register(builder, registry).queues(["default", "payments"]);
    for handler in order_handlers() {
        if except.contains(&handler.as_str()) {
            continue;
        }
        let calls = calls.clone();
        let name = handler.clone();
        builder = builder.activity(&name, move |_ctx: ActivityContext, input: Value| {
            calls.hit(&handler);
            let out = order_handler(&handler, &input);
            async move { Ok::<_, ActivityError>(out) }
        });
    }
    builder
}

/// An engine builder on `store` with a virtual clock.
pub fn on(store: impl duraflow::IntoStore) -> EngineBuilder {
    Engine::builder()
        .store(store)
        .clock(crate::common::virtual_clock())
}

/// Starts a DAG run and waits for its report, or its failure's message.
pub async fn run_dag(client: &Client, start: &DagStart) -> Result<DagReport, String> {
    let run = client
        .start(run::WORKFLOW_NAME, start)
        .await
        .map_err(|e| e.to_string())?;
    client
        .wait::<DagReport>(&run)
        .await
        .map_err(|e| e.to_string())
}

/// Checks the finished run `id`: its journal replays with the interpreter to `expected` with
/// no new operations, and `dag_status` rebuilds `expected` from it. Returns the journal.
pub async fn assert_replays(
    client: &Client,
    registry: &Arc<Registry>,
    id: &str,
    expected: &DagReport,
) -> Vec<duraflow::Event> {
    let journal = client.history(id, None).await.unwrap();
    let replay = duraflow::check_replay(
        duraflow::workflow_fn(run::interpreter(registry.clone())),
        id,
        1,
        journal.clone(),
    );
    assert!(replay.new_events.is_empty(), "{:?}", replay.new_events);
    let output = duraflow::Payload::encode(expected).unwrap();
    assert_eq!(replay.outcome, Some(duraflow::Outcome::Completed(output)));
    assert_eq!(&run::dag_status(client, id).await.unwrap(), expected);
    journal
}

/// Starts a run of the inline `template` with an empty input.
pub async fn start_inline(client: &Client, template: Template) -> RunHandle {
    let start = DagStart::inline(template, json!({}));
    client.start(run::WORKFLOW_NAME, &start).await.unwrap()
}
