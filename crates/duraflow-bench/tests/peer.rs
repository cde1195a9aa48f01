//! The peers end to end. `duraflow-bench --peer duroxide` builds the peer crate
//! (`bench/peers/duroxide`, release, about 5 minutes from scratch on 2 cores), runs the four
//! workloads it shares with duraflow on the memory store and on duroxide with N = 5, and
//! reports the ratios. `duraflow-bench --peer dbos` does the same with `bench/peers/dbos` on the
//! PostgreSQL server of `DURAFLOW_TEST_POSTGRES_URL` (or the local default), against the
//! postgres store. Ignored by default, since they compile the peers and their dependencies:
//! `cargo test -p duraflow-bench --test peer -- --ignored`. No timing is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_duraflow-bench");

/// The workloads the peer has.
const SHARED: [&str; 4] = ["throughput", "sequential", "start-latency", "fan-out"];

#[test]
#[ignore = "builds duroxide (minutes); run with --ignored"]
fn duroxide_peer_runs_and_is_compared() {
    let out = Command::new(BIN)
        .args(["all", "--store", "memory", "--peer", "duroxide", "--n", "5"])
        .args(["--min-sleep-ms", "100", "--max-sleep-ms", "200", "--json"])
        .output()
        .expect("the benchmark binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "duraflow-bench --peer duroxide failed ({}):\nstderr:\n{stderr}\nstdout:\n{stdout}",
        out.status
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for workload in SHARED {
        let peer = lines
            .iter()
            .find(|l| l["workload"] == workload && l["store"] == "duroxide-sqlite")
            .unwrap_or_else(|| panic!("no duroxide result for {workload}: {stdout}"));
        assert_eq!(peer["n"], 5);
        assert!(peer["duroxide_version"].is_string(), "{peer}");
        assert_eq!(peer["settings"]["journal_mode"], "wal", "{peer}");
        assert!(peer["settings"]["synchronous"].is_string(), "{peer}");
        let ratio = lines
            .iter()
            .find(|l| {
                l["workload"] == workload
                    && l["store"] == "memory"
                    && l["peer"] == "duroxide-sqlite"
            })
            .unwrap_or_else(|| panic!("no ratio for {workload}: {stdout}"));
        let ratios = ratio["ratios"].as_object().expect("ratios is an object");
        assert!(!ratios.is_empty(), "{ratio}");
        // Each ratio is a positive number, or null where duroxide has no such figure.
        for (key, value) in ratios {
            assert!(
                value.is_null() || value.as_f64().is_some_and(|x| x > 0.0),
                "{workload} {key}: {value}"
            );
        }
    }
    // The peer has no timers workload: duraflow's result is there, no duroxide one.
    assert!(lines
        .iter()
        .any(|l| l["workload"] == "timers" && l["store"] == "memory"));
    assert!(!lines
        .iter()
        .any(|l| l["workload"] == "timers" && l.get("peer").is_some()));
}

#[test]
#[ignore = "builds DBOS (minutes) and needs PostgreSQL; run with --ignored"]
fn dbos_peer_runs_and_is_compared_with_postgres() {
    // The four shared workloads with the default start style, then throughput with the other
    // one. One invocation each (not `all`: the other workloads have no DBOS side).
    let runs = SHARED
        .iter()
        .map(|&w| (w, "concurrent"))
        .chain([("throughput", "loop")]);
    for (workload, starts) in runs {
        let out = Command::new(BIN)
            .args([
                workload, "--store", "postgres", "--store", "memory", "--peer", "dbos",
            ])
            .args(["--n", "5", "--starts", starts, "--json"])
            .output()
            .expect("the benchmark binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "duraflow-bench {workload} --peer dbos failed ({}):\nstderr:\n{stderr}\nstdout:\n{stdout}",
            out.status
        );
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let peer = lines
            .iter()
            .find(|l| l["workload"] == workload && l["store"] == "dbos-postgres")
            .unwrap_or_else(|| panic!("no DBOS result for {workload}: {stdout}"));
        assert_eq!(peer["n"], 5);
        assert!(peer["dbos_version"].is_string(), "{peer}");
        assert!(
            peer["settings"]["pg_synchronous_commit"].is_string(),
            "{peer}"
        );
        if workload == "throughput" {
            assert_eq!(peer["settings"]["starts"], starts, "{peer}");
        }
        let ratio = lines
            .iter()
            .find(|l| {
                l["workload"] == workload
                    && l["store"] == "postgres"
                    && l["peer"] == "dbos-postgres"
            })
            .unwrap_or_else(|| panic!("no ratio for {workload}: {stdout}"));
        for (key, value) in ratio["ratios"].as_object().expect("ratios is an object") {
            assert!(
                value.as_f64().is_some_and(|x| x > 0.0),
                "{workload} {key}: {value}"
            );
        }
        // DBOS is PostgreSQL's peer only: the memory store gets no ratio with it.
        assert!(!lines
            .iter()
            .any(|l| l["store"] == "memory" && l["peer"] == "dbos-postgres"));
    }
}
