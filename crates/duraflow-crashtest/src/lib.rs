//! Shared by the crash worker and the crash test: the workload and the side-effect log format.
//!
//! Every workflow `wf-<i>` runs [`ACTIVITIES`] activities in sequence; each activity appends one
//! line to the side-effect log before returning, so the log records every execution, including
//! those whose result was lost in a crash.

use serde::{Deserialize, Serialize};

/// Activities per workflow.
pub const ACTIVITIES: u64 = 4;

/// The input of one activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// What this activity adds to the total.
    pub index: u64,
    /// The running total so far.
    pub total: u64,
}

/// The id of workflow `i`.
pub fn workflow_id(i: usize) -> String {
    format!("wf-{i}")
}

/// What workflow `wf-<i>` returns: the sum of `i * 10 + index` over its activities.
pub fn expected_output(i: usize) -> u64 {
    (0..ACTIVITIES).map(|index| i as u64 * 10 + index).sum()
}

/// One line of the side-effect log: which process generation ran which activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The worker process's generation (0 for the first start).
    pub generation: u32,
    /// The instance.
    pub instance: String,
    /// The operation id.
    pub op: String,
    /// The attempt number the engine gave it.
    pub attempt: u32,
}

impl LogLine {
    /// The line as written.
    pub fn render(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.generation, self.instance, self.op, self.attempt
        )
    }

    /// Parses a written line; `None` for a torn or malformed one.
    pub fn parse(line: &str) -> Option<LogLine> {
        let mut parts = line.split_whitespace();
        let line = LogLine {
            generation: parts.next()?.parse().ok()?,
            instance: parts.next()?.to_owned(),
            op: parts.next()?.to_owned(),
            attempt: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(line)
    }
}
