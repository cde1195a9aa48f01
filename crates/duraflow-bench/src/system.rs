//! What the benchmark reads from the system: the process's memory, the source's git commit and
//! the disk's sync time.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

/// A field of `/proc/self/status` in kB (`VmHWM`, `VmRSS`), if the system has it.
pub(crate) fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Resets the process's peak resident set size (`VmHWM`) to its current size (Linux: write
/// `5` to `/proc/self/clear_refs`). Returns whether it worked.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `git rev-parse --short HEAD` of the source tree this binary was built from, and whether the
/// tree had uncommitted changes, both as they were when it was built (`build.rs`): a binary
/// copied aside and run later reports its own source. `("unknown", None)` for a build outside
/// a repository or without git.
pub(crate) fn git_commit() -> (String, Option<bool>) {
    let commit = env!("DURAFLOW_BENCH_GIT_COMMIT");
    if commit.is_empty() {
        return ("unknown".into(), None);
    }
    let dirty = match env!("DURAFLOW_BENCH_GIT_DIRTY") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    (commit.to_owned(), dirty)
}

/// How long the disk under `dir` takes to sync a small write, in milliseconds (the median of
/// [`SYNC_SAMPLES`] `fdatasync`s): after appending a 4 KiB block to a file (its size changes, so
/// the file system journals it too), and after overwriting the file's first block (as SQLite's
/// write-ahead log mostly does, once restarted). `None` when the file cannot be written or
/// synced. Results that wait for syncs (start-to-result, sequential steps) move with these.
pub(crate) fn disk_sync_ms(dir: &Path) -> Option<(f64, f64)> {
    let mut file = tempfile::tempfile_in(dir).ok()?;
    let appended = median_sync_ms(&mut file, SeekFrom::End(0))?;
    let overwritten = median_sync_ms(&mut file, SeekFrom::Start(0))?;
    Some((appended, overwritten))
}

/// The median time of [`SYNC_SAMPLES`] `fdatasync`s of `file`, each after writing a 4 KiB
/// block at `at`.
fn median_sync_ms(file: &mut std::fs::File, at: SeekFrom) -> Option<f64> {
    let block = [0x5a_u8; 4096];
    let mut samples = Vec::with_capacity(SYNC_SAMPLES);
    for _ in 0..SYNC_SAMPLES {
        file.seek(at).ok()?;
        file.write_all(&block).ok()?;
        let started = Instant::now();
        file.sync_data().ok()?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    Some(samples[samples.len() / 2])
}

/// How many syncs [`disk_sync_ms`] times of each kind.
const SYNC_SAMPLES: usize = 100;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn the_disk_sync_time_is_measured_in_a_writable_directory_only() {
        let dir = tempfile::tempdir().unwrap();
        let (append, overwrite) = disk_sync_ms(dir.path()).unwrap();
        assert!(append > 0.0 && overwrite > 0.0, "{append} {overwrite}");
        assert_eq!(disk_sync_ms(&dir.path().join("missing")), None);
    }
}
