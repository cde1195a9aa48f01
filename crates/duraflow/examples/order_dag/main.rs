//! Runs the order DAG of `crates/duraflow-dag/examples/order.yaml` on the embedded SQLite
//! store: two orders, one shipped (every item packed by a batch step, the parcels collected by
//! a convergence step) and one refunded (an item is sold out, so the decision step chooses
//! `refund` and the shipping branch is skipped). Prints each run's report: the steps, their
//! states, attempts and transitions, and the results.
//!
//! `cargo run --example order_dag --features dag` keeps its database in
//! `duraflow-dag-example.db` (or the path in `DURAFLOW_DB`). Run it again and it finds both
//! orders already there: the starts return the existing runs and the waits their stored
//! reports.

mod shop;

use duraflow::dag::run::{self, DagReport};
use duraflow::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("DURAFLOW_DB").unwrap_or_else(|_| "duraflow-dag-example.db".into());
    let store = SqliteStore::open(&path).await?;
    println!("store: SQLite file {path}");
    println!("template: {}", shop::TEMPLATE_PATH);
    let engine = shop::register(Engine::builder().store(store))?
        .start()
        .await?;
    let client = engine.client();

    let orders = [
        (
            "order-1001",
            shop::order("order-1001", &["book", "lamp", "mug"]),
        ),
        (
            "order-1002",
            shop::order("order-1002", &["sold-out-chair", "mug"]),
        ),
    ];
    let mut runs = Vec::new();
    for (id, start) in &orders {
        let run = client.start(run::WORKFLOW_NAME, start).id(*id).await?;
        if run.existed {
            println!("{id} already exists: reading its report");
        } else {
            println!("started {id}");
        }
        runs.push(run);
    }
    for run in &runs {
        let report: DagReport = client.wait(run).timeout(Duration::from_secs(60)).await?;
        print!("{}", shop::describe(&run.id, &report));
        // The same report, rebuilt from the run's journal (what a status page would call).
        assert_eq!(run::dag_status(&client, &run.id).await?, report);
    }
    engine.shutdown().await;
    Ok(())
}
