//! Records a workflow publishes to the store's feed (see `WorkflowContext::publish`).

use crate::Payload;

/// A record a turn appends to the store's global, append-only feed, in the same transaction as
/// the turn, so that a record exists if and only if the transition it describes was committed.
///
/// `seq` numbers the records of one execution of an instance, from 1, in the order the
/// workflow published them; replay numbers them the same way. A store appends a record only
/// when its `(execution, seq)` comes after the last one it appended for the instance, so a
/// record re-derived by a replay (a turn retried after a lost lease, a run replayed cold after
/// a restart) is written once.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedRecord {
    /// What the record is about, for subscribers to filter on (by prefix), such as
    /// `duraflow.dag.step.completed`.
    pub topic: String,
    /// Its content.
    pub payload: Payload,
    /// Its number among the records of its instance's execution, from 1.
    pub seq: u64,
}
