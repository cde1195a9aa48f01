//! What the peer reads from the system: the process's memory (the same way as duraflow-bench),
//! the source's git commit and the version of dbos it was built with.

use std::process::Command;

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
/// tree has uncommitted changes; `("unknown", None)` without git or outside a repository.
pub(crate) fn git_commit() -> (String, Option<bool>) {
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

/// The version of the `dbos` crate this binary was built with, read from the peer's
/// `Cargo.lock` (which `--locked` builds keep as committed); `unknown` if it is not there.
pub(crate) fn dbos_version() -> &'static str {
    locked_version(include_str!("../Cargo.lock"), "dbos").unwrap_or("unknown")
}

/// The version of `package` in the text of a `Cargo.lock`.
fn locked_version<'a>(lock: &'a str, package: &str) -> Option<&'a str> {
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name_line {
            let version = lines.next()?.trim();
            return version
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_locked_version_is_read() {
        let lock = "[[package]]\nname = \"dbos-macros\"\nversion = \"9.9.9\"\n\n\
                    [[package]]\nname = \"dbos\"\nversion = \"0.5.0\"\n";
        assert_eq!(locked_version(lock, "dbos"), Some("0.5.0"));
        assert_eq!(locked_version(lock, "tokio"), None);
        assert_ne!(dbos_version(), "unknown");
    }
}
