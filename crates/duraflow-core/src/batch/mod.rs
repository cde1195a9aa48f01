//! The decision logic of map and parallel batches, without any I/O.
//!
//! A batch runs a number of items (map) or branches (parallel), at most `max_concurrency` at a
//! time, and stops as soon as its [`CompletionConfig`] says so. This module decides; the
//! workflow context drives:
//!
//! - [`CompletionConfig`] says when a batch may stop early: enough successes
//!   (`min_successful`), or too many failures (`tolerated_failure_count`,
//!   `tolerated_failure_percentage`);
//! - [`BatchTracker`] is the state machine of one batch: which item to start next (strictly in
//!   index order, never more than `max_concurrency` running), what an item's outcome changes,
//!   and when (and why: [`CompletionReason`]) the batch is decided;
//! - [`BatchResult`] is what a batch returns: every item's [`ItemStatus`], its result or
//!   [`Failure`](crate::Failure), the completion reason and the counts;
//! - [`ItemBatcher`] splits a list of serialized items into consecutive batches of bounded
//!   length and size.
//!
//! Driving a batch from a future looks like this:
//!
//! ```
//! use duraflow_core::batch::{BatchTracker, CompletionConfig, CompletionReason, ItemOutcome};
//!
//! let config = CompletionConfig::min_successful(2);
//! let mut tracker = BatchTracker::new(4, Some(1), &config)?;
//! while let Some(index) = tracker.next_to_start() {
//!     // ... run item `index` (here: every item succeeds) ...
//!     tracker.record(index, ItemOutcome::Succeeded)?;
//! }
//! assert_eq!(tracker.decision(), Some(CompletionReason::MinSuccessfulReached));
//! assert_eq!(tracker.started_count(), 2); // items 2 and 3 never started
//! assert!(tracker.running().is_empty()); // nothing to cancel
//! # Ok::<(), duraflow_core::batch::BatchError>(())
//! ```

mod batcher;
mod completion;
mod result;
mod tracker;

pub use batcher::ItemBatcher;
pub use completion::{CompletionConfig, CompletionReason};
pub use result::{BatchItem, BatchResult, BatchStatus, ItemStatus};
pub use tracker::{BatchTracker, ItemOutcome};

/// Why a batch's configuration or a call on a [`BatchTracker`] was refused.
///
/// Configuration errors ([`InvalidMaxConcurrency`](BatchError::InvalidMaxConcurrency) and the
/// others named `Invalid…`) are meant to be raised before the batch records anything (R11).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// `max_concurrency` was 0; it must be at least 1, or `None` for no limit.
    #[error("invalid max_concurrency 0: it must be at least 1, or unset for no limit")]
    InvalidMaxConcurrency,
    /// `min_successful` was 0; it must be at least 1, or unset.
    #[error("invalid min_successful 0: it must be at least 1, or unset")]
    InvalidMinSuccessful,
    /// `tolerated_failure_percentage` was NaN or outside `0..=100`.
    #[error("invalid tolerated_failure_percentage {0}: it must be a number from 0 to 100")]
    InvalidToleratedFailurePercentage(f64),
    /// An [`ItemBatcher`]'s `max_items` was 0; it must be at least 1, or `None` for no limit.
    #[error("invalid max_items 0: a batch must be allowed at least 1 item, or unset for no limit")]
    InvalidMaxItems,
    /// An [`ItemBatcher`]'s `max_bytes` was 0; it must be at least 1, or `None` for no limit.
    #[error("invalid max_bytes 0: a batch must be allowed at least 1 byte, or unset for no limit")]
    InvalidMaxBytes,
    /// An outcome was recorded for an index the batch does not have.
    #[error("item {index} is out of range: the batch has {total} item(s)")]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// How many items the batch has.
        total: usize,
    },
    /// An outcome was recorded for an item that is not running: it was never started, or its
    /// outcome was already recorded.
    #[error("item {index} is not running: it was never started or has already finished")]
    NotRunning {
        /// The index given.
        index: usize,
    },
    /// An outcome was recorded after the batch was decided; the items still running when it
    /// was decided are cancelled, and their outcomes no longer count.
    #[error(
        "item {index} finished after the batch was decided ({reason}); its outcome is ignored"
    )]
    AlreadyDecided {
        /// The index given.
        index: usize,
        /// How the batch had been decided.
        reason: CompletionReason,
    },
}
