//! Runs the order workflow end to end: start it, approve it, wait for the shipment, and print
//! its journal.
//!
//! `cargo run --example order`

mod workflow;

use duraflow::prelude::*;
use workflow::{register, sample_order, Approval, Shipment};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info".into()),
        )
        .init();

    let engine = register(Engine::builder().store(MemoryStore::new())).start().await?;
    let client = engine.client();

    let order = sample_order();
    let run = client.start("fulfil", &order).id(order.id.as_str()).await?;
    println!("started {run} (already existed: {})", run.existed);

    client
        .raise_event(&run, "approved", &Approval { approved_by: "alice".into() })
        .await?;
    let shipment: Shipment = client.wait(&run).timeout(Duration::from_secs(30)).await?;
    println!("shipment: {}", serde_json::to_string_pretty(&shipment)?);

    println!("journal of {run}:");
    for (position, event) in client.history(&run, None).await?.iter().enumerate() {
        println!("  {position:>3}  {}", event.kind.describe());
    }
    let status = client.status(&run).await?;
    println!("status: {}", status.status);
    engine.shutdown().await;
    Ok(())
}
