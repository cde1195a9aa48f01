//! Shared by the queue worker and the multi-process queue test: three kinds of worker process
//! serve different queues with different registrations on one PostgreSQL schema.
//!
//! - `web` serves `default`: the workflow [`ORDER`] and the activity [`CHARGE`].
//! - `gpu` serves `gpu`: the activity [`RENDER`] only.
//! - `mail` serves [`EMAILS`]: the workflow [`SEND_EMAIL`] and the activity [`DELIVER`]. The
//!   queue is limited to [`EMAILS_CONCURRENCY`] running instances across all processes.
//!
//! An order charges (default queue), renders (gpu queue), and starts a `send-email` child on
//! the emails queue, whose result it returns. Each `send-email` logs a `begin <id>` line when
//! it starts and an `end <id>` line before it finishes, to one file shared by every process
//! (`O_APPEND`, one short write per line), so the file's order of lines is an order of events
//! across the processes: at no point may more than the limit be between their begin and end.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The order workflow (web).
pub const ORDER: &str = "order";
/// The charge activity (web).
pub const CHARGE: &str = "charge";
/// The render activity (gpu).
pub const RENDER: &str = "render";
/// The send-email workflow (mail).
pub const SEND_EMAIL: &str = "send-email";
/// The deliver activity (mail).
pub const DELIVER: &str = "deliver";
/// The queue of the GPU workers.
pub const GPU: &str = "gpu";
/// The queue of the mail workers.
pub const EMAILS: &str = "emails";
/// Running `send-email` instances allowed at once, across every process.
pub const EMAILS_CONCURRENCY: u32 = 2;

/// The id of order `i`.
pub fn order_id(i: usize) -> String {
    format!("order-{i}")
}

/// What order `i` returns.
pub fn expected_output(i: usize) -> String {
    format!("charged {i}, rendered {i}, mailed {i}")
}

/// Appends `line` to the shared log.
pub fn log_line(log: &Arc<Mutex<std::fs::File>>, line: &str) -> std::io::Result<()> {
    let mut file = log
        .lock()
        .map_err(|_| std::io::Error::other("the log's lock is poisoned"))?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// The most `send-email` instances between their `begin` and `end` lines at once, over the
/// log's lines in order, and how many ended; an `end` without a `begin`, or a `begin` logged
/// twice for one instance without an end, is an error.
pub fn max_overlap(lines: &str) -> Result<(usize, usize), String> {
    let mut open = std::collections::HashSet::new();
    let (mut max, mut ended) = (0, 0);
    for line in lines.lines() {
        match line.split_once(' ') {
            Some(("begin", id)) => {
                if !open.insert(id.to_owned()) {
                    return Err(format!("{id} began twice"));
                }
                max = max.max(open.len());
            }
            Some(("end", id)) => {
                if !open.remove(id) {
                    return Err(format!("{id} ended without beginning"));
                }
                ended += 1;
            }
            _ => return Err(format!("unreadable line {line:?}")),
        }
    }
    Ok((max, ended))
}
