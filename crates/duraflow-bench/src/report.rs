//! Results: named figures, one JSON line per result, or a table per workload.

use std::io::Write;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::stats;

/// Named values in the order they were added (serialized as a JSON object in that order), and
/// the correctness violations a run found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Figures {
    entries: Vec<(String, Value)>,
    violations: Vec<String>,
}

impl Figures {
    /// No figures.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `value` rounded to `decimals` places (non-finite values become null).
    pub(crate) fn num(&mut self, key: &str, value: f64, decimals: i32) -> &mut Self {
        let scale = 10f64.powi(decimals);
        let rounded = (value * scale).round() / scale;
        let value = serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number);
        self.entries.push((key.to_owned(), value));
        self
    }

    /// Adds a count.
    pub(crate) fn int(&mut self, key: &str, value: u64) -> &mut Self {
        self.entries.push((key.to_owned(), Value::from(value)));
        self
    }

    /// Adds a text.
    pub(crate) fn text(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.entries
            .push((key.to_owned(), Value::String(value.into())));
        self
    }

    /// Adds a flag.
    pub(crate) fn flag(&mut self, key: &str, value: bool) -> &mut Self {
        self.entries.push((key.to_owned(), Value::Bool(value)));
        self
    }

    /// Adds a value that was not measured (null).
    pub(crate) fn null(&mut self, key: &str) -> &mut Self {
        self.entries.push((key.to_owned(), Value::Null));
        self
    }

    /// Adds every entry of `other`.
    pub(crate) fn extend(&mut self, other: Figures) {
        self.entries.extend(other.entries);
        self.violations.extend(other.violations);
    }

    /// Records a correctness violation (the process exits with a failure at the end).
    pub(crate) fn violation(&mut self, message: impl Into<String>) {
        self.violations.push(message.into());
    }

    /// The violations recorded.
    pub(crate) fn violations(&self) -> Vec<String> {
        self.violations.clone()
    }

    /// The entries of a JSON object, in its order (a peer's figures).
    pub(crate) fn from_object(map: &serde_json::Map<String, Value>) -> Self {
        Figures {
            entries: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            violations: Vec::new(),
        }
    }

    /// The value of `key`, if present.
    fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl Serialize for Figures {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// What was measured: the build and the machine.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct BuildInfo {
    /// duraflow's version (`CARGO_PKG_VERSION`).
    pub(crate) duraflow_version: &'static str,
    /// `git rev-parse --short HEAD` of the source tree when the binary was built, or `unknown`.
    pub(crate) git_commit: String,
    /// Whether the source tree had uncommitted changes when the binary was built (null when
    /// unknown).
    pub(crate) git_dirty: Option<bool>,
    /// `release` or `debug`.
    pub(crate) profile: &'static str,
    /// Processors available to the process.
    pub(crate) nproc: usize,
    /// The median time of an `fdatasync` after appending a 4 KiB block to a file in the
    /// directory the SQLite stores' files go to (the temporary directory), in ms (null when it
    /// could not be measured): what the results that wait for syncs move with.
    pub(crate) disk_sync_append_ms: Option<f64>,
    /// The same after overwriting a block in place.
    pub(crate) disk_sync_overwrite_ms: Option<f64>,
}

impl BuildInfo {
    /// Reads the version, the git commit, the machine's processor count and its disk's sync
    /// time (about 40 ms of syncs).
    pub(crate) fn collect() -> Self {
        let (git_commit, git_dirty) = crate::system::git_commit();
        let sync = crate::system::disk_sync_ms(&std::env::temp_dir());
        let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
        BuildInfo {
            duraflow_version: env!("CARGO_PKG_VERSION"),
            git_commit,
            git_dirty,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            disk_sync_append_ms: sync.map(|(append, _)| round(append)),
            disk_sync_overwrite_ms: sync.map(|(_, overwrite)| round(overwrite)),
        }
    }
}

/// One result: a workload's figures on one store in one run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RunResult {
    /// The workload's name.
    pub(crate) workload: &'static str,
    /// The store's name.
    pub(crate) store: &'static str,
    /// The workload's size.
    pub(crate) n: u64,
    /// Which run this is (from 1).
    pub(crate) run: u32,
    /// How it ran: store durability, engine options, workload parameters.
    pub(crate) settings: Figures,
    /// What was measured.
    pub(crate) figures: Figures,
    /// The build and the machine.
    #[serde(flatten)]
    pub(crate) build: BuildInfo,
}

/// Where results go: JSON lines as they come, or a table at the end. The results are kept in
/// both cases, for the peer ratios.
pub(crate) struct Output {
    json: bool,
    results: Vec<RunResult>,
}

impl Output {
    /// An output writing JSON lines (`json`) or a table.
    pub(crate) fn new(json: bool) -> Self {
        Output {
            json,
            results: Vec::new(),
        }
    }

    /// Reports one result (printed at once as a JSON line, or kept for the table).
    pub(crate) fn push(&mut self, result: RunResult) {
        if self.json {
            match serde_json::to_string(&result) {
                Ok(line) => print_line(&line),
                Err(e) => eprintln!("duraflow-bench: cannot encode a result: {e}"),
            }
        }
        self.results.push(result);
    }

    /// Reports a peer's result: in JSON mode its own `line` is printed as it came (it has the
    /// peer's build information), and `result` is kept for the table and the ratios.
    pub(crate) fn push_peer(&mut self, result: RunResult, line: &str) {
        if self.json {
            print_line(line);
        }
        self.results.push(result);
    }

    /// Every result reported so far.
    pub(crate) fn results(&self) -> &[RunResult] {
        &self.results
    }

    /// Prints the table (nothing in JSON mode).
    pub(crate) fn finish(self) {
        if self.json || self.results.is_empty() {
            return;
        }
        let text = table(&self.results);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Writes one line to stdout at once.
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A measured time, or `unknown`.
fn shown(ms: Option<f64>) -> String {
    ms.map_or_else(|| "unknown".to_owned(), |ms| format!("{ms:.3}"))
}

/// A table per workload: a row per store (the median of its runs), a column per figure.
fn table(results: &[RunResult]) -> String {
    let mut text = String::new();
    if let Some(first) = results.first() {
        let b = &first.build;
        text.push_str(&format!(
            "duraflow {} (git {}{}), {} build, {} processors, disk sync {} ms after an append, {} \
             after an overwrite (p50)\n",
            b.duraflow_version,
            b.git_commit,
            if b.git_dirty == Some(true) {
                ", uncommitted changes"
            } else {
                ""
            },
            b.profile,
            b.nproc,
            shown(b.disk_sync_append_ms),
            shown(b.disk_sync_overwrite_ms),
        ));
    }
    let mut workloads: Vec<&str> = Vec::new();
    for r in results {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
    }
    for workload in workloads {
        let of_workload: Vec<&RunResult> =
            results.iter().filter(|r| r.workload == workload).collect();
        let mut keys: Vec<&str> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        for r in &of_workload {
            for (k, v) in &r.figures.entries {
                if v.is_string() {
                    let note = format!("{}: {k}: {}", r.store, v.as_str().unwrap_or_default());
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                } else if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
        let mut stores: Vec<&str> = Vec::new();
        for r in &of_workload {
            if !stores.contains(&r.store) {
                stores.push(r.store);
            }
        }
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["store".to_owned(), "n".to_owned(), "runs".to_owned()];
        header.extend(keys.iter().map(|k| (*k).to_owned()));
        rows.push(header);
        for store in stores {
            let runs: Vec<&&RunResult> = of_workload.iter().filter(|r| r.store == store).collect();
            let n = runs.first().map_or(0, |r| r.n);
            let mut row = vec![store.to_owned(), n.to_string(), runs.len().to_string()];
            for key in &keys {
                row.push(median_cell(runs.iter().map(|r| r.figures.get(key))));
            }
            rows.push(row);
        }
        text.push_str(&format!("\n{workload}\n"));
        text.push_str(&render(&rows));
        for note in notes {
            text.push_str(&format!("  note: {note}\n"));
        }
    }
    text
}

/// The median of the numbers among `values`, `yes`/`no` for flags, `-` when there are none.
fn median_cell<'a>(values: impl Iterator<Item = Option<&'a Value>>) -> String {
    let values: Vec<&Value> = values.flatten().collect();
    if let Some(Value::Bool(b)) = values.first() {
        return if *b { "yes".into() } else { "no".into() };
    }
    let mut numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
    if numbers.is_empty() {
        return "-".into();
    }
    numbers.sort_by(f64::total_cmp);
    let m = stats::median(&numbers);
    if m.fract() == 0.0 && m.abs() < 1e15 {
        format!("{m:.0}")
    } else if m.abs() >= 100.0 {
        format!("{m:.1}")
    } else {
        format!("{m:.3}")
    }
}

/// Left-aligned columns separated by two spaces.
pub(crate) fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let mut line = String::from("  ");
        for (c, cell) in row.iter().enumerate() {
            let width = widths.get(c).copied().unwrap_or(0);
            line.push_str(&format!("{cell:<width$}  "));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}
