//! Worker processes as the crash tests drive them: killed if a test fails while they run, and
//! waited on until their side-effect log reaches a length.

use std::process::Child;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A worker process, killed (SIGKILL) and reaped when dropped while still running, so that a
/// failing test leaves no worker behind.
pub struct Worker(pub Child);

impl Worker {
    /// Waits until `lines()` (the length of the worker's side-effect log) reaches `n`, or the
    /// worker exits; returns whether it is still running. Fails after `deadline`.
    pub fn wait_for_lines(
        &mut self,
        lines: impl Fn() -> usize,
        n: usize,
        deadline: Duration,
    ) -> bool {
        let started = Instant::now();
        loop {
            // A worker that cannot be polled any more is as good as gone.
            if !matches!(self.0.try_wait(), Ok(None)) {
                return false;
            }
            if lines() >= n {
                return true;
            }
            assert!(started.elapsed() < deadline, "the worker made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The number the environment variable `name` holds, or `default` when it is unset or not a
/// number.
pub fn env_number<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
