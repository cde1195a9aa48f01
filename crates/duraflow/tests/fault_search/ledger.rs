//! What the search did to the instances, to check against what the store shows at the end.

use crate::harness::shapes::Shape;

/// An event the search raised.
#[derive(Clone, Debug)]
pub(crate) struct Raised {
    /// The instance it was raised on.
    pub(crate) instance: String,
    /// The event's data: a number no other event of the run carries.
    pub(crate) seq: u64,
    /// `Ok` when `raise_event` accepted it, else the error its sender got.
    pub(crate) outcome: Result<(), String>,
}

/// Everything the search asked of the clients.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Instances whose start was accepted, with their shapes.
    pub(crate) started: Vec<(String, Shape)>,
    /// Every event raised, accepted or refused.
    pub(crate) raised: Vec<Raised>,
    next_seq: u64,
    next_id: u64,
}

impl Ledger {
    /// The data for the next event: unique within the run.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// A number for the next instance id: unique within the run.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}
