//! The feed: a global, append-only log of records that turns publish, written atomically with
//! the turn that publishes them, read by subscribers from a durable cursor.
//!
//! - A [`TurnCommit`](crate::TurnCommit) carries its records in
//!   [`TurnCommit::feed`](crate::TurnCommit::feed); the store appends them in the same
//!   transaction, so a record exists if and only if its turn was committed (a refused commit
//!   appends none).
//! - Every record gets a store-assigned position, strictly increasing in commit order: once a
//!   reader has seen position `n`, no record at or below `n` appears later. This is what lets a
//!   subscriber keep a single cursor (see [`Store::read_feed`](crate::Store::read_feed)).
//! - A record is appended only when its `(execution, seq)` comes after the last one appended
//!   for its instance, so replays that derive a record again do not duplicate it.
//! - Subscribers save their cursor with
//!   [`Store::save_feed_cursor`](crate::Store::save_feed_cursor); it never moves backwards.
//! - Records are kept forever: there is no trimming yet.

pub use duraflow_core::FeedRecord;
use duraflow_core::{Payload, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// A record of the feed, as a store returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedEntry {
    /// Its position in the feed: strictly increasing in commit order, from 1.
    pub position: u64,
    /// The instance whose turn published it.
    pub instance_id: String,
    /// Its topic.
    pub topic: String,
    /// Its content.
    pub payload: Payload,
    /// When the turn that published it was committed (the commit's `now`).
    pub at: Timestamp,
}

/// The longest topic a store accepts, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// The most records one [`Store::read_feed`](crate::Store::read_feed) returns.
pub const MAX_FEED_READ: usize = 10_000;

/// Checks a topic: not empty, at most [`MAX_TOPIC_LEN`] bytes, no NUL character.
pub fn validate_topic(topic: &str) -> Result<(), StoreError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN || topic.contains('\0') {
        return Err(StoreError::Invalid(format!(
            "feed topic {topic:?} is not valid: a topic is 1 to {MAX_TOPIC_LEN} bytes with no \
             NUL character"
        )));
    }
    Ok(())
}

/// Checks a subscriber name: not empty, at most [`MAX_TOPIC_LEN`] bytes, no NUL character.
pub fn validate_subscriber(name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.len() > MAX_TOPIC_LEN || name.contains('\0') {
        return Err(StoreError::Invalid(format!(
            "subscriber name {name:?} is not valid: a name is 1 to {MAX_TOPIC_LEN} bytes, not \
             blank, with no NUL character"
        )));
    }
    Ok(())
}

/// The records of `feed` to append for an instance whose last appended record was `mark`
/// (`(execution, seq)`, `(0, 0)` for none), committed for `execution`: those after the mark,
/// and the new mark.
pub fn unseen(
    mark: (u32, u64),
    execution: u32,
    feed: &[FeedRecord],
) -> (Vec<&FeedRecord>, (u32, u64)) {
    let fresh: Vec<&FeedRecord> = feed.iter().filter(|r| (execution, r.seq) > mark).collect();
    let last = fresh
        .iter()
        .map(|r| (execution, r.seq))
        .max()
        .unwrap_or(mark);
    (fresh, last.max(mark))
}

/// The largest number of records a read returns for a `limit` (at least 1, at most
/// [`MAX_FEED_READ`]).
pub fn read_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_FEED_READ)
}
