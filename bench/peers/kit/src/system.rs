//! What a peer reads from the system: the process's memory (the same way as duraflow-bench)
//! and the source's git commit.

use std::process::Command;

/// A field of `/proc/self/status` in kB (`VmHWM`, `VmRSS`), if the system has it.
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Resets the process's peak resident set size (`VmHWM`) to its current size (Linux: write
/// `5` to `/proc/self/clear_refs`). Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `git rev-parse --short HEAD` of the source tree this binary was built from, and whether the
/// tree has uncommitted changes; `("unknown", None)` without git or outside a repository.
pub fn git_commit() -> (String, Option<bool>) {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])
        .map(|out| String::from_utf8_lossy(&out).trim().to_owned())
        .filter(|s| !s.is_empty());
    let Some(commit) = commit else {
        return ("unknown".into(), None);
    };
    let dirty = git(&["status", "--porcelain"]).map(|out| !out.is_empty());
    (commit, dirty)
}
