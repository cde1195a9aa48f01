//! Records the git commit the benchmark binary is built from, and whether the tree had
//! uncommitted changes then, so that a binary copied aside and run later (the way two builds
//! are compared, interleaved) reports its own source rather than what the tree holds when it
//! runs.

use std::path::Path;
use std::process::Command;

/// The trimmed output of `git -C dir args`, if git ran and succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let commit = git(dir, &["rev-parse", "--short", "HEAD"]).filter(|c| !c.is_empty());
    let dirty = commit
        .as_ref()
        .and_then(|_| git(dir, &["status", "--porcelain"]))
        .map(|status| !status.is_empty());
    println!(
        "cargo:rustc-env=DURAFLOW_BENCH_GIT_COMMIT={}",
        commit.unwrap_or_default()
    );
    let dirty = match dirty {
        Some(true) => "true",
        Some(false) => "false",
        None => "",
    };
    println!("cargo:rustc-env=DURAFLOW_BENCH_GIT_DIRTY={dirty}");
    // Run again when HEAD moves or the index changes, and when any source of the workspace
    // changes (an edit makes the tree dirty).
    if let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/index");
        if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git_dir}/{branch}");
        }
    }
    if let Some(workspace) = dir.parent().and_then(Path::parent) {
        for part in ["crates", "Cargo.toml", "Cargo.lock"] {
            println!("cargo:rerun-if-changed={}", workspace.join(part).display());
        }
    }
}
