//! Runs the order workflow end to end on the embedded SQLite store: start it, approve it, wait
//! for the shipment, and print its journal.
//!
//! `cargo run --example order` keeps its database in `duraflow-example.db` (or the path in
//! `DURAFLOW_DB`). Run it again and it finds the order already there: the start returns the
//! existing instance and the wait returns its stored result (or resumes it, if the first run
//! was stopped half way).

mod workflow;

use duraflow::prelude::*;
use duraflow::ClientError;
use workflow::{register, sample_order, Approval, Shipment};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let path = std::env::var("DURAFLOW_DB").unwrap_or_else(|_| "duraflow-example.db".into());
    let store = SqliteStore::open(&path).await?;
    println!("store: SQLite file {path}");
    let engine = register(Engine::builder().store(store)).start().await?;
    let client = engine.client();

    let order = sample_order();
    let run = client.start("fulfil", &order).id(order.id.as_str()).await?;
    if run.existed {
        println!("order {run} already exists: resuming it / reading its result");
    } else {
        println!("started order {run}");
    }

    // Approve it (an order that already finished takes no more events).
    let approval = Approval {
        approved_by: "alice".into(),
    };
    match client.raise_event(&run, "approved", &approval).await {
        Ok(()) | Err(ClientError::InstanceFinished { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let shipment: Shipment = client.wait(&run).timeout(Duration::from_secs(60)).await?;
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
