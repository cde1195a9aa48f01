//! `--peer duroxide` and `--peer dbos`: the same workloads on another engine, run in the same
//! invocation, and the ratios of duraflow's figures to the peer's.
//!
//! Each peer is a separate crate under `bench/peers` that the workspace does not build:
//! `bench/peers/duroxide` (binary `duroxide-peer`: duroxide with its SQLite provider) and
//! `bench/peers/dbos` (binary `dbos-peer`: DBOS Transact for Rust on PostgreSQL). A peer's
//! binary is built on demand with
//! `cargo build --release --locked --manifest-path bench/peers/<peer>/Cargo.toml`, or taken from
//! `--peer-bin` (duroxide) or `--dbos-peer-bin`. After duraflow's stores have run a workload,
//! each peer runs it too, in a process of its own (`<peer> <workload> --n N --runs R --json`),
//! and its JSON lines join the results. At the end, every duraflow store's medians are compared
//! with those of every peer it is comparable with ([`comparable`]): [`ratios`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::{Config, StartStyle, Workload};
use crate::report::{self, BuildInfo, Figures, Output, RunResult};
use crate::stats;
use crate::Result;

/// A peer to compare with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PeerKind {
    /// duroxide with its SQLite provider as it comes: WAL, `synchronous=NORMAL` (store
    /// `duroxide-sqlite`).
    Duroxide,
    /// duroxide with `synchronous=FULL`, set by the peer on every connection of the provider's
    /// pool, as duroxide has no option for it (store `duroxide-sqlite-full`).
    DuroxideFull,
    /// DBOS Transact for Rust (crate `dbos`) on the PostgreSQL server of `--pg-url`, a fresh
    /// system database per run (store `dbos-postgres`); compared with the `postgres` store only.
    Dbos,
}

impl PeerKind {
    /// Every peer store name, as the peers report them.
    const STORES: [&'static str; 3] = ["duroxide-sqlite", "duroxide-sqlite-full", "dbos-postgres"];

    /// The store name the peer reports.
    fn store(self) -> &'static str {
        match self {
            PeerKind::Duroxide => Self::STORES[0],
            PeerKind::DuroxideFull => Self::STORES[1],
            PeerKind::Dbos => Self::STORES[2],
        }
    }

    /// The program that runs this kind.
    fn program(self) -> Program {
        match self {
            PeerKind::Duroxide | PeerKind::DuroxideFull => Program::Duroxide,
            PeerKind::Dbos => Program::Dbos,
        }
    }

    /// The peer's command-line arguments for this kind and `workload`.
    fn args(self, workload: Workload, config: &Config) -> Vec<String> {
        match self {
            PeerKind::Duroxide => Vec::new(),
            PeerKind::DuroxideFull => vec!["--synchronous".into(), "full".into()],
            PeerKind::Dbos => {
                let mut args = vec!["--pg-url".to_owned(), config.pg_url.clone()];
                if workload == Workload::Throughput {
                    args.extend(["--starts".to_owned(), config.starts.name().to_owned()]);
                }
                args
            }
        }
    }
}

/// A peer's program: a crate of its own under `bench/peers`, built into one binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Program {
    /// `bench/peers/duroxide`, binary `duroxide-peer`.
    Duroxide,
    /// `bench/peers/dbos`, binary `dbos-peer`.
    Dbos,
}

impl Program {
    /// The engine's name, in messages.
    fn engine(self) -> &'static str {
        match self {
            Program::Duroxide => "duroxide",
            Program::Dbos => "DBOS",
        }
    }

    /// The crate's directory under `bench/peers`.
    fn crate_dir(self) -> &'static str {
        match self {
            Program::Duroxide => "duroxide",
            Program::Dbos => "dbos",
        }
    }

    /// The binary's name.
    fn binary(self) -> &'static str {
        match self {
            Program::Duroxide => "duroxide-peer",
            Program::Dbos => "dbos-peer",
        }
    }

    /// The flag that names a binary built elsewhere.
    fn bin_flag(self) -> &'static str {
        match self {
            Program::Duroxide => "--peer-bin",
            Program::Dbos => "--dbos-peer-bin",
        }
    }

    /// The throughput workload's start styles the program has (`duroxide-peer` starts 64 at a
    /// time only; DBOS has no call that starts many workflows at once, so no `batch`).
    fn starts(self) -> &'static [StartStyle] {
        match self {
            Program::Duroxide => &[StartStyle::Concurrent],
            Program::Dbos => &[StartStyle::Concurrent, StartStyle::Loop],
        }
    }

    /// Why the program does not run `workload` as `config` asks, if it does not.
    fn skips(self, workload: Workload, config: &Config) -> Option<String> {
        if !matches!(
            workload,
            Workload::Throughput | Workload::Sequential | Workload::StartLatency | Workload::FanOut
        ) {
            return Some(format!(
                "the {} peer has no {} workload",
                self.engine(),
                workload.name()
            ));
        }
        if workload == Workload::Throughput && !self.starts().contains(&config.starts) {
            return Some(format!(
                "the {} peer has no --starts {} throughput",
                self.engine(),
                config.starts.name()
            ));
        }
        None
    }
}

/// Whether `store` is a peer's store (not one of duraflow's).
fn is_peer_store(store: &str) -> bool {
    PeerKind::STORES.contains(&store)
}

/// Whether duraflow's `store` is compared with the peer store `peer`: DBOS runs on PostgreSQL
/// only, so it is compared with the `postgres` store alone; duroxide with every store.
pub(crate) fn comparable(store: &str, peer: &str) -> bool {
    peer != PeerKind::Dbos.store() || store == "postgres"
}

/// The peers of this invocation and the binaries that run them.
pub(crate) struct Peers {
    kinds: Vec<PeerKind>,
    bins: Vec<(Program, PathBuf)>,
}

impl Peers {
    /// No peers when `kinds` is empty; otherwise, for each program the kinds need, the binary
    /// at `duroxide_bin` or `dbos_bin`, or else the one built from `bench/peers/<peer>` now.
    pub(crate) fn prepare(
        kinds: &[PeerKind],
        duroxide_bin: Option<&Path>,
        dbos_bin: Option<&Path>,
    ) -> Result<Peers> {
        let mut unique = Vec::new();
        for &k in kinds {
            if !unique.contains(&k) {
                unique.push(k);
            }
        }
        let mut bins: Vec<(Program, PathBuf)> = Vec::new();
        for kind in &unique {
            let program = kind.program();
            if bins.iter().any(|(p, _)| *p == program) {
                continue;
            }
            let given = match program {
                Program::Duroxide => duroxide_bin,
                Program::Dbos => dbos_bin,
            };
            let bin = match given {
                Some(path) if path.is_file() => path.to_owned(),
                Some(path) => {
                    return Err(format!(
                        "{} {}: no such file; build it with `cargo build --release \
                         --manifest-path bench/peers/{}/Cargo.toml`, or leave {} out to have \
                         it built",
                        program.bin_flag(),
                        path.display(),
                        program.crate_dir(),
                        program.bin_flag()
                    )
                    .into())
                }
                None => build_peer(program)?,
            };
            bins.push((program, bin));
        }
        Ok(Peers {
            kinds: unique,
            bins,
        })
    }

    /// Runs `workload` on every peer, `config.runs` times each with size `n`, and adds their
    /// results to `output`. A workload (or a start style) a peer does not have is skipped with
    /// a note on stderr.
    pub(crate) async fn run(
        &self,
        workload: Workload,
        n: u64,
        config: &Config,
        output: &mut Output,
        build: &BuildInfo,
    ) -> Result<()> {
        let mut failures = Vec::new();
        for &kind in &self.kinds {
            let program = kind.program();
            let Some(bin) = self
                .bins
                .iter()
                .find(|(p, _)| *p == program)
                .map(|(_, bin)| bin.clone())
            else {
                continue;
            };
            if let Some(why) = program.skips(workload, config) {
                eprintln!("duraflow-bench: {why}; skipped");
                continue;
            }
            let args = kind.args(workload, config);
            let runs = config.runs;
            let lines =
                tokio::task::spawn_blocking(move || run_peer(&bin, kind, workload, n, runs, &args))
                    .await
                    .map_err(|e| {
                        format!("the task running the {} peer failed: {e}", program.engine())
                    })?;
            let (lines, outcome) = match lines {
                Ok(ok) => ok,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            for (raw, line) in lines {
                match peer_result(&line, kind, build) {
                    Ok(result) => output.push_peer(result, &raw),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if let Err(e) = outcome {
                failures.push(e);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; ").into())
        }
    }
}

/// Builds `program` with cargo and returns the path of the binary.
fn build_peer(program: Program) -> Result<PathBuf> {
    let (engine, dir, binary) = (program.engine(), program.crate_dir(), program.binary());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../bench/peers/{dir}/Cargo.toml"))
        .canonicalize()
        .map_err(|e| {
            format!(
                "the {engine} peer's sources are not where this duraflow-bench was built from \
                 ({}/../../bench/peers/{dir}: {e}); pass {} PATH to a {binary} binary",
                env!("CARGO_MANIFEST_DIR"),
                program.bin_flag()
            )
        })?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "duraflow-bench: building the {engine} peer: cargo build --release --locked \
         --manifest-path {}",
        manifest.display()
    );
    let out = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} to build the {engine} peer: {e}; install a Rust toolchain, or \
                 pass {} PATH to a {binary} binary built elsewhere",
                Path::new(&cargo).display(),
                program.bin_flag()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "building the {engine} peer failed ({}); cargo's messages are above. Pass \
             {} PATH to use a binary built elsewhere",
            out.status,
            program.bin_flag()
        )
        .into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == binary)
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .ok_or_else(|| {
            format!("cargo built the {engine} peer but reported no {binary} executable").into()
        })
}

/// The peer's JSON lines for `workload` (as printed, and parsed), and whether it exited
/// successfully.
type PeerRun = (Vec<(String, Value)>, std::result::Result<(), String>);

/// Runs the peer binary once for `workload` and parses its stdout.
fn run_peer(
    bin: &Path,
    kind: PeerKind,
    workload: Workload,
    n: u64,
    runs: u32,
    args: &[String],
) -> Result<PeerRun> {
    let engine = kind.program().engine();
    let out = Command::new(bin)
        .arg(workload.name())
        .args(["--n", &n.to_string(), "--runs", &runs.to_string(), "--json"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run the {engine} peer {}: {e}", bin.display()))?;
    let mut lines = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| {
            format!("the {engine} peer printed a line that is not JSON ({e}): {line}")
        })?;
        lines.push((line.to_owned(), value));
    }
    let outcome = if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the {engine} peer ({}) failed on {} ({}); its messages are above",
            kind.store(),
            workload.name(),
            out.status
        ))
    };
    Ok((lines, outcome))
}

/// One of the peer's JSON lines as a result of this invocation (the table's build line stays
/// duraflow's; the JSON output prints the peer's own line, with its `duroxide_version` or
/// `dbos_version`).
fn peer_result(line: &Value, kind: PeerKind, build: &BuildInfo) -> Result<RunResult> {
    let engine = kind.program().engine();
    let bad = |what: &str| format!("the {engine} peer's result has no {what}: {line}");
    let workload = line["workload"].as_str().ok_or_else(|| bad("workload"))?;
    let workload = Workload::EVERY
        .into_iter()
        .find(|w| w.name() == workload)
        .ok_or_else(|| bad("known workload"))?;
    if line["store"] != kind.store() {
        return Err(bad(&format!("store {}", kind.store())).into());
    }
    let object = |key: &str| -> Result<Figures> {
        let map = line[key].as_object().ok_or_else(|| bad(key))?;
        Ok(Figures::from_object(map))
    };
    Ok(RunResult {
        workload: workload.name(),
        store: kind.store(),
        n: line["n"].as_u64().ok_or_else(|| bad("n"))?,
        run: line["run"]
            .as_u64()
            .and_then(|r| u32::try_from(r).ok())
            .ok_or_else(|| bad("run"))?,
        settings: object("settings")?,
        figures: object("figures")?,
        build: build.clone(),
    })
}

/// Whether a larger figure is better (a rate) or a smaller one (a time, a latency, memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// The figures compared for each workload, and which way is better.
fn compared(workload: &str) -> &'static [(&'static str, Better)] {
    use Better::{Higher, Lower};
    match workload {
        "throughput" => &[
            ("workflows_per_s", Higher),
            ("activities_per_s", Higher),
            ("elapsed_s", Lower),
        ],
        "sequential" => &[("activity_ms_per_op", Lower), ("step_ms_per_op", Lower)],
        "start-latency" => &[
            ("p50_ms", Lower),
            ("p99_ms", Lower),
            ("max_ms", Lower),
            ("mean_ms", Lower),
        ],
        "fan-out" => &[
            ("total_s", Lower),
            ("activities_per_s", Higher),
            ("peak_rss_mib", Lower),
            ("peak_rss_growth_mib", Lower),
        ],
        _ => &[],
    }
}

/// What [`ratios`] reads of one result.
#[derive(Clone, Debug)]
pub(crate) struct Measured<'a> {
    /// The workload's name.
    pub(crate) workload: &'a str,
    /// The store's name (duraflow's, or a peer's).
    pub(crate) store: &'a str,
    /// The workload's size.
    pub(crate) n: u64,
    /// The figures, as in the JSON line.
    pub(crate) figures: Map<String, Value>,
}

/// A duraflow store compared with a peer on one workload.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ratio {
    /// The workload's name.
    pub(crate) workload: String,
    /// duraflow's store.
    pub(crate) store: String,
    /// The peer's store.
    pub(crate) peer: String,
    /// The workload's size.
    pub(crate) n: u64,
    /// How many runs of each side the medians come from.
    pub(crate) runs: (usize, usize),
    /// Per compared figure: the ratio of the medians, oriented so that more than 1 means
    /// duraflow did better; `None` when either side lacks the figure or it is 0.
    pub(crate) ratios: Vec<(&'static str, Option<f64>)>,
}

/// The median of `key` over `results` (`None` when no result has it as a number).
fn median_of(results: &[&Measured<'_>], key: &str) -> Option<f64> {
    let values: Vec<f64> = results
        .iter()
        .filter_map(|m| m.figures.get(key).and_then(Value::as_f64))
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(stats::median(&stats::sorted(values)))
    }
}

/// Compares every duraflow store with every peer store it is [`comparable`] with, on every
/// workload of the same size that both ran: for each figure of [`compared`], the median of duraflow's runs over the median of
/// the peer's for rates, and the inverse for times, latencies and memory, so that more than 1
/// means duraflow did better. The order is that of first appearance in `results`.
pub(crate) fn ratios(results: &[Measured<'_>]) -> Vec<Ratio> {
    let mut groups: Vec<(&str, u64)> = Vec::new();
    for m in results {
        if !groups.contains(&(m.workload, m.n)) {
            groups.push((m.workload, m.n));
        }
    }
    let mut out = Vec::new();
    for (workload, n) in groups {
        let of_group: Vec<&Measured<'_>> = results
            .iter()
            .filter(|m| m.workload == workload && m.n == n)
            .collect();
        let mut stores: Vec<&str> = Vec::new();
        for m in &of_group {
            if !stores.contains(&m.store) {
                stores.push(m.store);
            }
        }
        let (peers, ours): (Vec<&str>, Vec<&str>) =
            stores.into_iter().partition(|s| is_peer_store(s));
        for &store in &ours {
            let our_runs: Vec<&Measured<'_>> = of_group
                .iter()
                .copied()
                .filter(|m| m.store == store)
                .collect();
            for &peer in peers.iter().filter(|p| comparable(store, p)) {
                let peer_runs: Vec<&Measured<'_>> = of_group
                    .iter()
                    .copied()
                    .filter(|m| m.store == peer)
                    .collect();
                let ratios = compared(workload)
                    .iter()
                    .map(|&(key, better)| {
                        let (a, b) = (median_of(&our_runs, key), median_of(&peer_runs, key));
                        let ratio = match (a, b, better) {
                            (Some(a), Some(b), Better::Higher) if b > 0.0 => Some(a / b),
                            (Some(a), Some(b), Better::Lower) if a > 0.0 => Some(b / a),
                            _ => None,
                        };
                        (key, ratio)
                    })
                    .collect();
                out.push(Ratio {
                    workload: workload.to_owned(),
                    store: store.to_owned(),
                    peer: peer.to_owned(),
                    n,
                    runs: (our_runs.len(), peer_runs.len()),
                    ratios,
                });
            }
        }
    }
    out
}

/// The ratios of the results of this invocation (none without peer results).
pub(crate) fn ratios_of(results: &[RunResult]) -> Vec<Ratio> {
    let measured: Vec<Measured<'_>> = results
        .iter()
        .map(|r| Measured {
            workload: r.workload,
            store: r.store,
            n: r.n,
            figures: match serde_json::to_value(&r.figures) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            },
        })
        .collect();
    ratios(&measured)
}

/// What the ratios mean, printed with them.
const RATIO_NOTE: &str = "duraflow's median over the peer's for rates, the peer's over \
                          duraflow's for times, latencies and memory: more than 1 means duraflow \
                          did better";

/// A ratio as a JSON line.
#[derive(Serialize)]
struct RatioLine<'a> {
    workload: &'a str,
    store: &'a str,
    peer: &'a str,
    n: u64,
    runs: usize,
    peer_runs: usize,
    ratios: Figures,
    ratio_note: &'static str,
}

/// Prints the ratios: one JSON line each with `json`, else a table per workload.
pub(crate) fn print_ratios(ratios: &[Ratio], json: bool) {
    if ratios.is_empty() {
        return;
    }
    let mut text = String::new();
    if json {
        for r in ratios {
            let mut values = Figures::new();
            for (key, ratio) in &r.ratios {
                match ratio {
                    Some(x) => values.num(key, *x, 3),
                    None => values.null(key),
                };
            }
            let line = RatioLine {
                workload: &r.workload,
                store: &r.store,
                peer: &r.peer,
                n: r.n,
                runs: r.runs.0,
                peer_runs: r.runs.1,
                ratios: values,
                ratio_note: RATIO_NOTE,
            };
            match serde_json::to_string(&line) {
                Ok(line) => text.push_str(&format!("{line}\n")),
                Err(e) => eprintln!("duraflow-bench: cannot encode a ratio: {e}"),
            }
        }
    } else {
        text.push_str(&format!("\nratios: {RATIO_NOTE}\n"));
        let mut workloads: Vec<&str> = Vec::new();
        for r in ratios {
            if !workloads.contains(&r.workload.as_str()) {
                workloads.push(&r.workload);
            }
        }
        for workload in workloads {
            let rows_of: Vec<&Ratio> = ratios.iter().filter(|r| r.workload == workload).collect();
            let mut header = vec!["store".to_owned(), "peer".to_owned(), "n".to_owned()];
            if let Some(first) = rows_of.first() {
                header.extend(first.ratios.iter().map(|(k, _)| (*k).to_owned()));
            }
            let mut rows = vec![header];
            for r in rows_of {
                let mut row = vec![r.store.clone(), r.peer.clone(), r.n.to_string()];
                row.extend(r.ratios.iter().map(|(_, ratio)| match ratio {
                    Some(x) if *x >= 10.0 => format!("{x:.1}"),
                    Some(x) => format!("{x:.2}"),
                    None => "-".to_owned(),
                }));
                rows.push(row);
            }
            text.push_str(&format!("\n{workload} (duraflow ÷ peer)\n"));
            text.push_str(&report::render(&rows));
        }
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn measured<'a>(workload: &'a str, store: &'a str, n: u64, figures: Value) -> Measured<'a> {
        Measured {
            workload,
            store,
            n,
            figures: figures.as_object().cloned().unwrap_or_default(),
        }
    }

    fn get(r: &Ratio, key: &str) -> Option<f64> {
        r.ratios
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| *v)
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn rates_divide_ours_by_theirs_and_times_theirs_by_ours() {
        let results = [
            measured(
                "throughput",
                "sqlite",
                1000,
                json!({"workflows_per_s": 1000.0, "activities_per_s": 3000.0, "elapsed_s": 1.0}),
            ),
            measured(
                "throughput",
                "duroxide-sqlite",
                1000,
                json!({"workflows_per_s": 50.0, "activities_per_s": 150.0, "elapsed_s": 20.0,
                       "commits_per_workflow": null}),
            ),
        ];
        let r = ratios(&results);
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!(
            (r.store.as_str(), r.peer.as_str(), r.n, r.runs),
            ("sqlite", "duroxide-sqlite", 1000, (1, 1))
        );
        assert!(close(get(r, "workflows_per_s"), 20.0));
        assert!(close(get(r, "activities_per_s"), 20.0));
        assert!(close(get(r, "elapsed_s"), 20.0));
    }

    #[test]
    fn medians_of_the_runs_are_compared() {
        let results = [
            measured("start-latency", "sqlite", 10, json!({"p50_ms": 1.0})),
            measured("start-latency", "sqlite", 10, json!({"p50_ms": 2.0})),
            measured("start-latency", "sqlite", 10, json!({"p50_ms": 9.0})),
            measured(
                "start-latency",
                "duroxide-sqlite",
                10,
                json!({"p50_ms": 40.0}),
            ),
            measured(
                "start-latency",
                "duroxide-sqlite",
                10,
                json!({"p50_ms": 80.0}),
            ),
            measured(
                "start-latency",
                "duroxide-sqlite",
                10,
                json!({"p50_ms": 100.0}),
            ),
        ];
        let r = ratios(&results);
        assert_eq!(r.len(), 1);
        // Median 80 ms against median 2 ms: duraflow 40 times better.
        assert!(close(get(&r[0], "p50_ms"), 40.0));
        assert_eq!(r[0].runs, (3, 3));
        // Figures neither side reported have no ratio.
        assert_eq!(get(&r[0], "p99_ms"), None);
    }

    #[test]
    fn a_worse_duraflow_gives_less_than_one() {
        let results = [
            measured(
                "fan-out",
                "postgres",
                100,
                json!({"total_s": 4.0, "activities_per_s": 25.0}),
            ),
            measured(
                "fan-out",
                "duroxide-sqlite",
                100,
                json!({"total_s": 1.0, "activities_per_s": 100.0}),
            ),
        ];
        let r = ratios(&results);
        assert!(close(get(&r[0], "total_s"), 0.25));
        assert!(close(get(&r[0], "activities_per_s"), 0.25));
    }

    #[test]
    fn missing_or_zero_figures_have_no_ratio() {
        let results = [
            measured(
                "sequential",
                "memory",
                5,
                json!({"activity_ms_per_op": 0.0, "step_ms_per_op": 0.01}),
            ),
            measured(
                "sequential",
                "duroxide-sqlite",
                5,
                json!({"activity_ms_per_op": 100.0, "step_ms_per_op": null}),
            ),
        ];
        let r = ratios(&results);
        assert_eq!(get(&r[0], "activity_ms_per_op"), None);
        assert_eq!(get(&r[0], "step_ms_per_op"), None);
    }

    #[test]
    fn every_store_meets_every_peer_of_the_same_workload_and_size() {
        let results = [
            measured(
                "throughput",
                "sqlite",
                1000,
                json!({"workflows_per_s": 100.0}),
            ),
            measured(
                "throughput",
                "sqlite-normal",
                1000,
                json!({"workflows_per_s": 200.0}),
            ),
            measured(
                "throughput",
                "duroxide-sqlite",
                1000,
                json!({"workflows_per_s": 10.0}),
            ),
            measured(
                "throughput",
                "duroxide-sqlite-full",
                1000,
                json!({"workflows_per_s": 5.0}),
            ),
            // Another size: paired only with its own size, and it has no peer.
            measured("throughput", "sqlite", 5, json!({"workflows_per_s": 1.0})),
            // A workload without a peer result: no ratio.
            measured("timers", "sqlite", 1000, json!({"lateness_p50_ms": 3.0})),
        ];
        let r = ratios(&results);
        let pairs: Vec<(&str, &str, Option<f64>)> = r
            .iter()
            .map(|r| (r.store.as_str(), r.peer.as_str(), get(r, "workflows_per_s")))
            .collect();
        assert_eq!(
            pairs,
            [
                ("sqlite", "duroxide-sqlite", Some(10.0)),
                ("sqlite", "duroxide-sqlite-full", Some(20.0)),
                ("sqlite-normal", "duroxide-sqlite", Some(20.0)),
                ("sqlite-normal", "duroxide-sqlite-full", Some(40.0)),
            ]
        );
    }

    #[test]
    fn dbos_is_compared_with_the_postgres_store_only() {
        let results = [
            measured("start-latency", "sqlite", 10, json!({"p50_ms": 1.0})),
            measured("start-latency", "postgres", 10, json!({"p50_ms": 2.0})),
            measured(
                "start-latency",
                "duroxide-sqlite",
                10,
                json!({"p50_ms": 80.0}),
            ),
            measured("start-latency", "dbos-postgres", 10, json!({"p50_ms": 5.0})),
        ];
        let pairs: Vec<(String, String, Option<f64>)> = ratios(&results)
            .iter()
            .map(|r| (r.store.clone(), r.peer.clone(), get(r, "p50_ms")))
            .collect();
        let pairs: Vec<(&str, &str, Option<f64>)> = pairs
            .iter()
            .map(|(a, b, x)| (a.as_str(), b.as_str(), *x))
            .collect();
        assert_eq!(
            pairs,
            [
                ("sqlite", "duroxide-sqlite", Some(80.0)),
                ("postgres", "duroxide-sqlite", Some(40.0)),
                ("postgres", "dbos-postgres", Some(2.5)),
            ]
        );
    }

    fn config(starts: StartStyle) -> Config {
        Config {
            n: None,
            json: true,
            runs: 1,
            count_commits: true,
            starts,
            min_sleep_ms: 1,
            max_sleep_ms: 2,
            seed: 0,
            turn_lease_ms: None,
            task_lease_ms: None,
            pg_url: "postgres://pg.invalid/db".into(),
        }
    }

    #[test]
    fn dbos_gets_the_server_and_the_start_style() {
        let loop_style = config(StartStyle::Loop);
        assert_eq!(
            PeerKind::Dbos.args(Workload::Throughput, &loop_style),
            ["--pg-url", "postgres://pg.invalid/db", "--starts", "loop"]
        );
        assert_eq!(
            PeerKind::Dbos.args(Workload::FanOut, &loop_style),
            ["--pg-url", "postgres://pg.invalid/db"]
        );
        assert!(PeerKind::Duroxide
            .args(Workload::Throughput, &loop_style)
            .is_empty());
    }

    #[test]
    fn a_start_style_a_peer_lacks_is_skipped() {
        let (concurrent, looped, batch) = (
            config(StartStyle::Concurrent),
            config(StartStyle::Loop),
            config(StartStyle::Batch),
        );
        assert_eq!(Program::Dbos.skips(Workload::Throughput, &concurrent), None);
        assert_eq!(Program::Dbos.skips(Workload::Throughput, &looped), None);
        assert!(Program::Dbos.skips(Workload::Throughput, &batch).is_some());
        assert_eq!(
            Program::Duroxide.skips(Workload::Throughput, &concurrent),
            None
        );
        assert!(Program::Duroxide
            .skips(Workload::Throughput, &looped)
            .is_some());
        // The start style matters to throughput alone.
        assert_eq!(Program::Duroxide.skips(Workload::Sequential, &looped), None);
        assert!(Program::Dbos.skips(Workload::Timers, &concurrent).is_some());
    }

    #[test]
    fn peer_lines_become_results() {
        let build = BuildInfo::collect();
        let line = json!({
            "workload": "fan-out", "store": "duroxide-sqlite", "n": 5, "run": 2,
            "settings": {"synchronous": "normal"},
            "figures": {"total_s": 0.25, "peak_reset_before_run": true},
            "duroxide_version": "0.1.32"
        });
        let r = peer_result(&line, PeerKind::Duroxide, &build).unwrap();
        assert_eq!(
            (r.workload, r.store, r.n, r.run),
            ("fan-out", "duroxide-sqlite", 5, 2)
        );
        assert_eq!(
            serde_json::to_value(&r.figures).unwrap(),
            json!({"total_s": 0.25, "peak_reset_before_run": true})
        );
        // A line from another peer kind than the one asked for is refused.
        assert!(peer_result(&line, PeerKind::DuroxideFull, &build).is_err());
        assert!(peer_result(&line, PeerKind::Dbos, &build).is_err());
        let line = json!({
            "workload": "sequential", "store": "dbos-postgres", "n": 5, "run": 1,
            "settings": {"max_connections": 10},
            "figures": {"activity_ms_per_op": 2.0, "step_ms_per_op": 2.0},
            "dbos_version": "0.5.0"
        });
        let r = peer_result(&line, PeerKind::Dbos, &build).unwrap();
        assert_eq!((r.workload, r.store), ("sequential", "dbos-postgres"));
    }
}
