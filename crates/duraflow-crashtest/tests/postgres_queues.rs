//! Three worker processes with different queues and different registrations share one
//! PostgreSQL schema (see `duraflow_crashtest::queues`): `web` runs orders and charges on the
//! default queue, `gpu` only renders on its queue, `mail` runs the send-email children on a
//! queue limited to two running instances. Every order completes with the right output,
//! nothing fails for being unregistered, and the shared log shows the emails queue's limit
//! held across the processes.
//!
//! `DURAFLOW_PG_ORDERS` (default 40) sets the number of orders.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[allow(dead_code, reason = "each test file uses part of the helpers")]
mod common;

use std::process::{Command, Stdio};

use common::{env_number, Pg, Workers, DEADLINE};
use duraflow::{Client, InstanceStatus, ListFilter};
use duraflow_crashtest::queues::{
    expected_output, max_overlap, order_id, EMAILS, EMAILS_CONCURRENCY, ORDER,
};
use duraflow_crashtest::SCHEMA_VAR;

#[test]
fn workers_with_different_queues_and_registrations_share_a_schema() {
    let orders = env_number("DURAFLOW_PG_ORDERS", 40);
    let pg = Pg::connect();
    let schema = pg.fresh_schema("queues");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("emails.log");
    std::fs::write(&log, "").unwrap();
    // The test's own store migrates the schema before any worker starts.
    let store = pg.store(&pg.url, &schema.name);
    let client = Client::new(store);
    pg.rt.block_on(async {
        for i in 0..orders {
            client
                .start(ORDER, &(i as u64))
                .id(order_id(i))
                .await
                .unwrap();
        }
    });

    let mut workers = Vec::new();
    for (generation, role) in ["web", "gpu", "mail"].into_iter().enumerate() {
        let child = Command::new(env!("CARGO_BIN_EXE_queue-worker"))
            .arg(role)
            .arg(&pg.url)
            .arg(&log)
            .arg(generation.to_string())
            .env(SCHEMA_VAR, &schema.name)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the queue worker starts");
        workers.push(Workers::adopt(generation as u32, child));
    }

    pg.rt.block_on(async {
        for i in 0..orders {
            let out: String = client
                .wait(order_id(i))
                .timeout(DEADLINE)
                .await
                .unwrap_or_else(|e| panic!("order {i}: {e}"));
            assert_eq!(out, expected_output(i));
        }
        let not_completed = client
            .list(ListFilter {
                statuses: vec![
                    InstanceStatus::Pending,
                    InstanceStatus::Running,
                    InstanceStatus::Failed,
                    InstanceStatus::Cancelled,
                    InstanceStatus::Terminated,
                ],
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert!(
            not_completed.instances.is_empty(),
            "instances that did not complete: {:?}",
            not_completed.instances
        );
        let emails = client
            .list(ListFilter {
                queue: Some(EMAILS.into()),
                limit: 1_000,
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(emails.instances.len(), orders, "one send-email per order");
    });
    drop(workers);

    let lines = std::fs::read_to_string(&log).unwrap();
    let (max, ended) = max_overlap(&lines).unwrap_or_else(|e| panic!("{e}\n{lines}"));
    assert_eq!(ended, orders, "every send-email logged its end");
    eprintln!("at most {max} send-email instances ran at once (limit {EMAILS_CONCURRENCY})");
    assert!(
        max <= EMAILS_CONCURRENCY as usize,
        "{max} send-email instances ran at once; the emails queue allows {EMAILS_CONCURRENCY}"
    );
}
