//! Smoke test: every workload runs on every kind of store with a tiny size and produces a
//! well-formed result. No timing is asserted. `recovery` runs with 1 s leases, so that its
//! restarted worker does not wait for the engine's default 60 s lease; it does not apply to
//! the memory store, which `all` skips. The PostgreSQL test needs the test server
//! (`DURAFLOW_TEST_POSTGRES_URL`, default `127.0.0.1:5432`) and fails if it cannot be reached.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_duraflow-bench");
const N: u64 = 10;

/// The lease of the recovery workload's worker in these runs, in milliseconds.
const LEASE_MS: u64 = 1_000;

/// The figures each workload must report as numbers.
const FIGURES: [(&str, &[&str]); 16] = [
    (
        "throughput",
        &["workflows_per_s", "activities_per_s", "elapsed_s"],
    ),
    (
        "sequential",
        &[
            "activity_ms_per_op",
            "step_ms_per_op",
            "activities_total_ms",
        ],
    ),
    ("start-latency", &["p50_ms", "p99_ms", "max_ms"]),
    ("fan-out", &["total_s", "peak_rss_mib"]),
    (
        "timers",
        &[
            "lateness_p50_ms",
            "lateness_p99_ms",
            "lateness_max_ms",
            "fired_early",
        ],
    ),
    (
        "replay",
        &[
            "warm_next_turn_ms_p50_k1",
            "warm_next_turn_ms_p50_k10",
            "cold_next_turn_ms_p50_k1",
            "cold_next_turn_ms_p50_k10",
            "warm_next_turn_ms_max_k10",
            "journal_events_k1",
            "journal_events_k10",
            "warm_flatness",
            "cold_flatness",
        ],
    ),
    (
        "parked",
        &[
            "rss_bytes_per_workflow",
            "resume_p50_ms",
            "resume_p99_ms",
            "resume_max_ms",
            "resume_samples",
            "all_parked_s",
        ],
    ),
    (
        "recovery",
        &[
            "all_complete_s",
            "worker_ready_s",
            "first_activity_s",
            "stalled_s",
            "longest_stall_s",
            "reexecuted_activities",
            "activities_logged_at_kill",
            "workflows_completed",
        ],
    ),
    (
        "steps",
        &[
            "alo_sequential_ms_per_step",
            "amo_sequential_ms_per_step",
            "turn_sequential_ms_per_step",
            "alo_concurrent_steps_per_s",
            "amo_concurrent_wall_ms_per_step",
            "turn_concurrent_ms_per_step_per_workflow",
        ],
    ),
    (
        "map",
        &["total_s", "items_per_s", "journal_events", "peak_rss_mib"],
    ),
    (
        "queue-fetch",
        &[
            "fill_s",
            "served_base_p50_ms",
            "served_loaded_p50_ms",
            "served_ratio_p50",
            "queue_base_p99_ms",
            "queue_loaded_p99_ms",
            "queue_ratio_p99",
        ],
    ),
    (
        "list",
        &[
            "fill_s",
            "first_page_p50_ms",
            "deep_page_p50_ms",
            "status_p50_ms",
            "name_p50_ms",
            "queue_p50_ms",
            "status_name_p50_ms",
            "created_range_p50_ms",
            "count_p99_ms",
        ],
    ),
    (
        "dag-chain",
        &[
            "ms_per_step",
            "total_s",
            "baseline_ms_per_activity",
            "dag_status_ms",
            "journal_events",
        ],
    ),
    (
        "dag-fan-out",
        &[
            "ms_per_step",
            "total_s",
            "baseline_ms_per_activity",
            "journal_events",
        ],
    ),
    (
        "dag-readiness",
        &[
            "chain_walk_ns_per_step_10",
            "wide_walk_ns_per_step_10",
            "layered_walk_ns_per_step_10",
            "chain_validate_ns_per_step_10",
            "chain_walk_flatness",
            "wide_walk_flatness",
            "layered_walk_flatness",
        ],
    ),
    (
        "dag-events",
        &[
            "dag_runs",
            "events",
            "produced_events_per_s",
            "live_delivered_events_per_s",
            "catch_up_events_per_s",
        ],
    ),
];

fn bench(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the benchmark binary runs")
}

/// Runs every workload on `store` with a tiny size and checks each JSON line.
fn every_workload_on(store: &str) {
    let n = N.to_string();
    let lease = LEASE_MS.to_string();
    let out = bench(&[
        "all",
        "--store",
        store,
        "--n",
        &n,
        "--min-sleep-ms",
        "100",
        "--max-sleep-ms",
        "300",
        "--turn-lease-ms",
        &lease,
        "--task-lease-ms",
        &lease,
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "duraflow-bench all --store {store} failed ({}):\nstderr:\n{stderr}\nstdout:\n{stdout}",
        out.status
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // Recovery does not apply to the memory store: `all` skips it and says so.
    let expected: Vec<_> = FIGURES
        .iter()
        .filter(|(w, _)| !(store == "memory" && *w == "recovery"))
        .collect();
    assert_eq!(
        lines.len(),
        expected.len(),
        "one result per workload: {stdout}"
    );
    for (line, (workload, figures)) in lines.iter().zip(expected) {
        check_result(line, workload, store, figures);
    }
    if store == "memory" {
        assert!(
            stderr.contains("recovery on memory skipped: not applicable"),
            "{stderr}"
        );
    }
}

fn check_result(line: &Value, workload: &str, store: &str, figures: &[&str]) {
    assert_eq!(line["workload"], workload, "{line}");
    assert_eq!(line["store"], store, "{line}");
    assert_eq!(line["n"], N, "{line}");
    assert_eq!(line["run"], 1, "{line}");
    assert_eq!(
        line["duraflow_version"],
        env!("CARGO_PKG_VERSION"),
        "{line}"
    );
    let commit = line["git_commit"].as_str().expect("git_commit is a string");
    assert!(!commit.is_empty(), "{line}");
    assert!(line["profile"].is_string(), "{line}");
    assert!(
        line["settings"].as_object().is_some_and(|s| !s.is_empty()),
        "settings: {line}"
    );
    assert_eq!(line["settings"]["store_backend"], store, "{line}");
    let got = line["figures"].as_object().expect("figures is an object");
    for key in figures {
        let value = got
            .get(*key)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{workload} on {store}: figure {key} missing: {line}"));
        assert!(
            value.is_finite() && value >= 0.0,
            "{workload} on {store}: {key} = {value}"
        );
    }
    match workload {
        "timers" => {
            assert_eq!(got["fired_early"], 0, "no timer fires early: {line}");
            assert_eq!(line["settings"]["max_sleep_ms"], 300, "{line}");
        }
        "throughput" => {
            let commits = &got["commits_per_workflow"];
            if store == "memory" {
                assert!(commits.is_null(), "{line}");
            } else {
                assert!(
                    commits.as_f64().is_some_and(|c| c > 0.0),
                    "commits are counted on {store}: {line}"
                );
            }
        }
        // The DAG layer's extra time per step is a difference of two timings: it may be
        // below 0 at this size, so it is only checked to be a number.
        "dag-chain" => {
            assert_eq!(got["steps"], N, "{line}");
            assert!(got["dag_extra_ms_per_step"].is_f64(), "{line}");
        }
        "dag-fan-out" => {
            assert_eq!(got["steps"], N + 2, "a root, n steps and a join: {line}");
            assert!(got["dag_extra_ms_per_step"].is_f64(), "{line}");
        }
        "dag-readiness" => {
            assert_eq!(got["sizes"], "2,10", "{line}");
            assert_eq!(got["chain_edges_10"], 9, "{line}");
            assert_eq!(got["wide_edges_10"], 16, "{line}");
        }
        "replay" => {
            // n = 10: workflows of 1 and 10 steps; two events per step, plus the start and
            // the wait.
            assert_eq!(got["journal_events_k1"], 4, "{line}");
            assert_eq!(got["journal_events_k10"], 22, "{line}");
            assert_eq!(line["settings"]["samples_per_size"], 5, "{line}");
        }
        "parked" => {
            assert_eq!(got["resume_samples"], N, "every workflow is woken: {line}");
            // Ten small workflows may fit in pages the store already had: the growth can be 0.
            let per_workflow = &got["db_bytes_per_workflow"];
            let size = &got["db_bytes_parked"];
            if store == "memory" {
                assert!(per_workflow.is_null() && size.is_null(), "{line}");
            } else {
                assert!(per_workflow.as_f64().is_some_and(|b| b >= 0.0), "{line}");
                assert!(size.as_u64().is_some_and(|b| b > 0), "{line}");
            }
        }
        "steps" => {
            let commits = &got["alo_concurrent_commits_per_step"];
            if store == "sqlite" {
                assert!(commits.as_f64().is_some_and(|c| c > 0.0), "{line}");
            } else {
                assert!(commits.is_null(), "counted on SQLite only: {line}");
            }
        }
        "map" => {
            // Four journal events per item (its context's start and end, its step's start and
            // result), plus the workflow's start and end and the batch's context.
            assert_eq!(got["journal_events"], 4 * N + 4, "{line}");
            assert_eq!(line["settings"]["max_concurrency"], 100, "{line}");
        }
        "queue-fetch" => {
            // n = 10: all ten on the loaded queues, and ten on the served queue (at most n).
            assert_eq!(got["pending_instances"], 2 * N, "{line}");
            assert_eq!(line["settings"]["queues"], 100, "{line}");
        }
        "list" => {
            assert_eq!(got["completed_instances"], N / 10, "{line}");
            assert_eq!(line["settings"]["page"], 100, "{line}");
        }
        "dag-events" => {
            // One run publishes 152 events, more than n.
            assert_eq!(got["dag_runs"], 1, "{line}");
            assert_eq!(got["events"], 152, "{line}");
        }
        "recovery" => {
            assert_eq!(got["workflows_completed"], N, "{line}");
            assert_eq!(got["activities_expected"], 4 * N, "{line}");
            let at_kill = got["activities_logged_at_kill"].as_u64().unwrap();
            assert!((2 * N..4 * N).contains(&at_kill), "killed half way: {line}");
            assert_eq!(line["settings"]["worker_turn_lease_ms"], LEASE_MS, "{line}");
            assert_eq!(line["settings"]["worker_task_lease_ms"], LEASE_MS, "{line}");
        }
        _ => {}
    }
}

#[test]
fn every_workload_on_memory() {
    every_workload_on("memory");
}

#[test]
fn every_workload_on_sqlite() {
    every_workload_on("sqlite");
}

#[test]
fn every_workload_on_postgres() {
    every_workload_on("postgres");
}

#[test]
fn a_single_workload_prints_a_table() {
    let out = bench(&["start-latency", "--store", "sqlite-normal", "--n", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("start-latency"), "{stdout}");
    assert!(stdout.contains("sqlite-normal"), "{stdout}");
    assert!(stdout.contains("p99_ms"), "{stdout}");
}

#[test]
fn recovery_is_not_applicable_to_the_memory_store() {
    let out = bench(&["recovery", "--store", "memory", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "no result for memory");
    assert!(stderr.contains("not applicable"), "{stderr}");
}

#[test]
fn the_recovery_worker_refuses_a_missing_store() {
    let out = bench(&[
        "recovery-worker",
        "--log",
        "/nonexistent/log",
        "--generation",
        "0",
        "--turn-lease-ms",
        "1000",
        "--task-lease-ms",
        "1000",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--sqlite"), "{stderr}");
}

#[test]
fn bad_arguments_are_refused() {
    let out = bench(&["throughput", "--n", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--n"));
    let out = bench(&["no-such-workload"]);
    assert!(!out.status.success());
    let out = bench(&["recovery", "--turn-lease-ms", "5"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--turn-lease-ms"));
}
