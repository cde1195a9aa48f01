//! Results in duraflow-bench's shape: one JSON line each, or a table of medians.

use std::io::Write;

use serde_json::{Map, Number, Value};

/// Named figures in the order they were added.
pub type Figures = Map<String, Value>;

/// Adds `value` rounded to `decimals` places (non-finite values become null).
pub fn num(f: &mut Figures, key: &str, value: f64, decimals: i32) {
    let scale = 10f64.powi(decimals);
    let rounded = (value * scale).round() / scale;
    let value = Number::from_f64(rounded).map_or(Value::Null, Value::Number);
    f.insert(key.to_owned(), value);
}

/// What was measured: the build and the machine.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    /// The measured engine's name (`duroxide`, `dbos`): its version is reported as
    /// `<engine>_version`.
    engine: &'static str,
    /// The measured engine's version.
    engine_version: String,
    /// This peer's version (`CARGO_PKG_VERSION`).
    peer_version: &'static str,
    /// `git rev-parse --short HEAD` of the source tree, or `unknown`.
    git_commit: String,
    /// Whether the source tree had uncommitted changes (null when unknown).
    git_dirty: Option<bool>,
    /// `release` or `debug`.
    profile: &'static str,
    /// Processors available to the process.
    nproc: usize,
}

impl BuildInfo {
    /// The build of a peer measuring `engine` at `engine_version`, the peer's own version
    /// (its `CARGO_PKG_VERSION`), the git commit and the machine's processor count.
    pub fn collect(
        engine: &'static str,
        engine_version: String,
        peer_version: &'static str,
    ) -> Self {
        let (git_commit, git_dirty) = crate::system::git_commit();
        BuildInfo {
            engine,
            engine_version,
            peer_version,
            git_commit,
            git_dirty,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
        }
    }
}

/// One result: a workload's figures in one run.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The workload's name (duraflow-bench's).
    pub workload: &'static str,
    /// The peer's store (`duroxide-sqlite`, `dbos-postgres`).
    pub store: &'static str,
    /// The workload's size.
    pub n: u64,
    /// Which run this is (from 1).
    pub run: u32,
    /// How it ran: store durability, runtime options, workload parameters.
    pub settings: Figures,
    /// What was measured.
    pub figures: Figures,
    /// The build and the machine.
    pub build: BuildInfo,
}

impl RunResult {
    /// The result as a JSON object, in duraflow-bench's field order.
    pub fn to_json(&self) -> Value {
        let b = &self.build;
        let mut line = Map::new();
        line.insert("workload".into(), self.workload.into());
        line.insert("store".into(), self.store.into());
        line.insert("n".into(), self.n.into());
        line.insert("run".into(), self.run.into());
        line.insert("settings".into(), Value::Object(self.settings.clone()));
        line.insert("figures".into(), Value::Object(self.figures.clone()));
        line.insert(
            format!("{}_version", b.engine),
            b.engine_version.clone().into(),
        );
        line.insert("peer_version".into(), b.peer_version.into());
        line.insert("git_commit".into(), b.git_commit.clone().into());
        line.insert(
            "git_dirty".into(),
            b.git_dirty.map_or(Value::Null, Value::Bool),
        );
        line.insert("profile".into(), b.profile.into());
        line.insert("nproc".into(), b.nproc.into());
        Value::Object(line)
    }
}

/// Prints `result` as one JSON line on stdout.
pub fn print_line(result: &RunResult) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", result.to_json());
    let _ = out.flush();
}

/// Prints a table per workload: one row (the median of the runs), a column per figure; text
/// figures become notes under the table.
pub fn print_table(results: &[RunResult]) {
    let Some(first) = results.first() else {
        return;
    };
    let b = &first.build;
    let mut text = format!(
        "{} {} (peer {}, git {}{}), {} build, {} processors\n",
        b.engine,
        b.engine_version,
        b.peer_version,
        b.git_commit,
        if b.git_dirty == Some(true) {
            ", uncommitted changes"
        } else {
            ""
        },
        b.profile,
        b.nproc
    );
    let mut workloads: Vec<&str> = Vec::new();
    for r in results {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
    }
    for workload in workloads {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.workload == workload).collect();
        let mut keys: Vec<&str> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        for r in &runs {
            for (k, v) in &r.figures {
                if let Some(note) = v.as_str() {
                    let note = format!("{k}: {note}");
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                } else if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
        let mut header = vec!["store".to_owned(), "n".to_owned(), "runs".to_owned()];
        header.extend(keys.iter().map(|k| (*k).to_owned()));
        let mut row = vec![
            first.store.to_owned(),
            runs.first().map_or(0, |r| r.n).to_string(),
            runs.len().to_string(),
        ];
        for key in &keys {
            let flag = runs
                .iter()
                .find_map(|r| r.figures.get(*key).and_then(Value::as_bool));
            if let Some(flag) = flag {
                row.push(if flag { "yes".into() } else { "no".into() });
                continue;
            }
            let mut numbers: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.figures.get(*key).and_then(Value::as_f64))
                .collect();
            numbers.sort_by(f64::total_cmp);
            row.push(match median(&numbers) {
                Some(m) if m.fract() == 0.0 && m.abs() < 1e15 => format!("{m:.0}"),
                Some(m) if m.abs() >= 100.0 => format!("{m:.1}"),
                Some(m) => format!("{m:.3}"),
                None => "-".into(),
            });
        }
        text.push_str(&format!("\n{workload}\n"));
        text.push_str(&render(&[header, row]));
        for note in notes {
            text.push_str(&format!("  note: {note}\n"));
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The figures of a `start-latency` run as duraflow-bench reports them: the p50, p99, maximum
/// and mean of `latencies_ms` (in any order) and the run's `total` time in seconds.
pub fn latency_figures(mut latencies_ms: Vec<f64>, total: std::time::Duration) -> Figures {
    let mean = latencies_ms.iter().sum::<f64>() / latencies_ms.len().max(1) as f64;
    latencies_ms.sort_by(f64::total_cmp);
    let mut f = Figures::new();
    num(&mut f, "p50_ms", percentile(&latencies_ms, 50.0), 3);
    num(&mut f, "p99_ms", percentile(&latencies_ms, 99.0), 3);
    num(
        &mut f,
        "max_ms",
        latencies_ms.last().copied().unwrap_or(0.0),
        3,
    );
    num(&mut f, "mean_ms", mean, 3);
    num(&mut f, "total_s", total.as_secs_f64(), 3);
    f
}

/// The median of ascending `sorted`; `None` when empty.
pub fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    let upper = *sorted.get(n / 2)?;
    if n % 2 == 1 {
        Some(upper)
    } else {
        Some((sorted.get(n / 2 - 1)? + upper) / 2.0)
    }
}

/// The `p`th percentile (0–100) of ascending `sorted` by the nearest-rank method, as
/// duraflow-bench computes it; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().unwrap_or(0.0)
}

/// Left-aligned columns separated by two spaces.
fn render(rows: &[Vec<String>]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 10.0]), Some(3.0));
        assert_eq!(median(&[]), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn line_shape() {
        let mut figures = Figures::new();
        num(&mut figures, "workflows_per_s", 12.345_6, 1);
        let r = RunResult {
            workload: "throughput",
            store: "duroxide-sqlite",
            n: 5,
            run: 1,
            settings: Figures::new(),
            figures,
            build: BuildInfo::collect("duroxide", "1.2.3".into(), "0.1.0"),
        };
        let line = r.to_json();
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "workload",
                "store",
                "n",
                "run",
                "settings",
                "figures",
                "duroxide_version",
                "peer_version",
                "git_commit",
                "git_dirty",
                "profile",
                "nproc"
            ]
        );
        assert_eq!(line["figures"]["workflows_per_s"], 12.3);
    }
}
