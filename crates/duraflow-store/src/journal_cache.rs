//! Warm journals: what a runtime already holds in memory, so that a fetch need not read it again.

use crate::types::LeaseToken;

/// The journals a caller keeps in memory between turns (warm instances).
///
/// A runtime that keeps a workflow's replayed state after committing a turn passes this to
/// [`crate::Store::fetch_turns`] (and to claims): for each instance it leases, the store asks
/// whether the caller still holds the journal exactly as its own last commit left it, naming
/// that commit by its lease token. When it does, the store skips reading the journal and
/// returns [`crate::Journal::Cached`]; otherwise it reads it in full, or leaves a long one for
/// the caller to read ([`crate::Journal::Unread`]). A store may always read the journal; a
/// caller must handle every answer.
///
/// Stores call it while they hold their own locks (the SQLite store on its writer thread), so
/// an implementation must be quick and must never call back into the store.
pub trait JournalCache: Send + Sync {
    /// Whether the caller holds the journal of `execution` of `instance_id` as committed by its
    /// own commit with `token` (the token of the turn that last committed to the instance).
    fn holds(&self, instance_id: &str, execution: u32, token: LeaseToken) -> bool;
}
