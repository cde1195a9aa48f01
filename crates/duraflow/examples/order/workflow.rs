//! The order workflow: charge the customer, wait for approval, a cooling-off timer, pack every
//! item in parallel, then ship through a child workflow.
//!
//! It is shared by the `order` example and by the tests that replay it.

use duraflow::prelude::*;
use duraflow::EngineBuilder;
use serde::{Deserialize, Serialize};

/// How long an approved order waits before it is packed (workflow time).
pub(crate) const COOLING_OFF: Duration = Duration::from_secs(1);

/// An order to fulfil.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Order {
    pub(crate) id: String,
    pub(crate) items: Vec<String>,
    pub(crate) cents: u64,
}

/// What charging the customer returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Receipt {
    pub(crate) order_id: String,
    pub(crate) charged_cents: u64,
    pub(crate) charge_id: String,
}

/// Who approved the order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Approval {
    pub(crate) approved_by: String,
}

/// The fulfilled order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Shipment {
    pub(crate) order_id: String,
    pub(crate) receipt: Receipt,
    pub(crate) approval: Approval,
    pub(crate) parcels: Vec<String>,
    pub(crate) tracking: String,
}

/// Charges the customer. The charge id is derived from the instance and operation ids, so a
/// retried charge reuses the same idempotency key.
pub(crate) async fn charge(ctx: ActivityContext, order: Order) -> Result<Receipt, ActivityError> {
    if order.cents == 0 {
        return Err(
            ActivityError::terminal("an order of 0 cents cannot be charged")
                .with_code("empty_order"),
        );
    }
    Ok(Receipt {
        order_id: order.id.clone(),
        charged_cents: order.cents,
        charge_id: format!("ch-{}-{}", ctx.instance_id(), ctx.op_id()),
    })
}

/// Packs one item.
pub(crate) async fn pack(_ctx: ActivityContext, item: String) -> Result<String, ActivityError> {
    Ok(format!("parcel:{item}"))
}

/// Books a courier for a labelled parcel and returns the tracking number.
pub(crate) async fn book_courier(
    _ctx: ActivityContext,
    label: String,
) -> Result<String, ActivityError> {
    Ok(format!("TRACK/{label}"))
}

/// The parent workflow.
pub(crate) async fn fulfil(ctx: WorkflowContext, order: Order) -> Result<Shipment, WorkflowError> {
    ctx.log_info(format!("fulfilling order {}", order.id));
    let receipt: Receipt = ctx
        .activity("charge", &order)
        .retry(RetryPolicy::exponential(Duration::from_millis(200)).max_attempts(5))
        .attempt_timeout(Duration::from_secs(30))
        .await?;
    let approval: Approval = ctx
        .wait_for_event("approved")
        .timeout(Duration::from_secs(3600))
        .await?;
    ctx.sleep(COOLING_OFF).await?;
    let parcels: Vec<String> = ctx
        .join_all(order.items.iter().map(|item| ctx.activity("pack", item)))
        .await?;
    let tracking: String = ctx.child_workflow("ship", &order.id).await?;
    Ok(Shipment {
        order_id: order.id,
        receipt,
        approval,
        parcels,
        tracking,
    })
}

/// The child workflow: prints a label inline, then books a courier.
pub(crate) async fn ship(ctx: WorkflowContext, order_id: String) -> Result<String, WorkflowError> {
    let label: String = ctx
        .step("print-label", |_| async { Ok(format!("LABEL-{order_id}")) })
        .await?;
    ctx.activity("book-courier", &label).await
}

/// Registers the workflows and activities of this example.
pub(crate) fn register(builder: EngineBuilder) -> EngineBuilder {
    builder
        .workflow("fulfil", fulfil)
        .workflow("ship", ship)
        .activity("charge", charge)
        .activity("pack", pack)
        .activity("book-courier", book_courier)
}

/// The order the example runs.
pub(crate) fn sample_order() -> Order {
    Order {
        id: "order-42".into(),
        items: vec!["book".into(), "lamp".into(), "kettle".into()],
        cents: 4_999,
    }
}
