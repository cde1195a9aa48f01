//! Durable functions on the embedded SQLite store: a purchase that gathers quotes with a map
//! and a completion policy, waits for an approval callback, and polls a supplier's job with
//! `wait_for_condition` (see `workflow.rs`).
//!
//! `cargo run --example durable_functions` keeps its database in
//! `duraflow-durable-functions.db` (or the path in `DURAFLOW_DB`). This program plays the
//! approver too: a task of its own finds the callback's token in the journal and completes it
//! through the client. Run it again and it finds the purchase already done: the start returns
//! the existing instance and the wait its stored result (or resumes it, if the first run was
//! stopped half way).

mod workflow;

use duraflow::prelude::*;
use duraflow::EventKind;
use workflow::{register, Approval, Purchase, Request};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let path =
        std::env::var("DURAFLOW_DB").unwrap_or_else(|_| "duraflow-durable-functions.db".into());
    let store = SqliteStore::open(&path).await?;
    println!("store: SQLite file {path}");
    let engine = register(Engine::builder().store(store)).start().await?;
    let client = engine.client();

    let request = Request {
        id: "purchase-1".into(),
        item: "widget".into(),
        quantity: 12,
    };
    let run = client
        .start("purchase", &request)
        .id(request.id.as_str())
        .await?;
    if run.existed {
        println!("purchase {run} already exists: resuming it / reading its result");
    } else {
        println!("started purchase {run}");
    }

    // The approver: waits for the callback's token and approves.
    let approver = tokio::spawn(approve(client.clone(), run.to_string()));

    let purchase: Purchase = client.wait(&run).timeout(Duration::from_secs(60)).await?;
    approver.await??;
    println!("result: {}", serde_json::to_string_pretty(&purchase)?);

    println!("journal of {run}:");
    for (position, event) in client.history(&run, None).await?.iter().enumerate() {
        println!("  {position:>3}  {}", event.kind.describe());
    }
    println!("status: {}", client.status(&run).await?.status);
    engine.shutdown().await;
    Ok(())
}

/// Plays the approver of instance `id`: once the workflow has opened its approval callback,
/// reads the token from the journal and completes the callback. Returns at once if the
/// instance has finished or the callback was already answered.
async fn approve(client: Client, id: String) -> Result<(), ClientError> {
    loop {
        let journal = client.history(&id, None).await?;
        let answered = journal
            .iter()
            .any(|e| matches!(e.kind, EventKind::CallbackCompleted { .. }));
        let token = journal.iter().find_map(|e| match &e.kind {
            EventKind::CallbackCreated { token, .. } => Some(token.clone()),
            _ => None,
        });
        if answered || client.status(&id).await?.status.is_terminal() {
            return Ok(());
        }
        if let Some(token) = token {
            println!("approver: approving with token {token}");
            let approval = Approval {
                approved: true,
                by: "alice".into(),
            };
            return match client.complete_callback(&token, &approval).await {
                // Answered meanwhile (by an earlier run of this program): nothing to do.
                Ok(()) | Err(ClientError::CallbackClosed { .. }) => Ok(()),
                Err(e) => Err(e),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
