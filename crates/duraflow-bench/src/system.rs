//! What the benchmark reads from the system: the process's memory and the source's git commit.

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
