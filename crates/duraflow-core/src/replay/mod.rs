//! The replay machine: a journal and newly delivered events in, issued events and an outcome out.

mod run;
pub(crate) mod state;

pub use run::{check_replay, panic_message, Outcome, ReplayReport, WorkflowRun};
