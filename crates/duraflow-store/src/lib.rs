//! The duraflow store contract ([`Store`]), the in-memory store ([`MemoryStore`]), and the
//! conformance suite every store must pass ([`conformance`]).

pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod feed;
mod filter;
mod journal_cache;
pub mod management;
mod memory;
mod notify;
mod queue_config;
pub mod queue_events;
pub mod registry;
mod rules;
mod store;
mod types;
mod wake;

pub use error::{StoreError, StoreResult};
pub use feed::{FeedEntry, FeedRecord};
pub use filter::FetchFilter;
pub use journal_cache::JournalCache;
pub use management::{management_of, Management, QueueDepth};
pub use memory::MemoryStore;
pub use notify::{InstanceWatch, Notifier};
pub use queue_config::{
    admit_in_order, needs_admission, pending_scan, Admission, Candidate, QueueConfig, RateLimit,
    Verdict,
};
pub use queue_events::{validate_queue_event, EmitOutcome, NewAwait, NewEmit, StoredEvent};
pub use registry::{
    validate_registrations, Registered, RegisteredKind, Registration, MAX_REGISTERED_NAME_LEN,
};
pub use rules::{
    callback_outcome, callback_state, callback_token_taken, check_commit, check_direct_task,
    check_turn, holds_lease, journal_execution, CallbackState, FoundTask, FoundTurn,
};
pub use store::{Cache, IntoStore, Store};
pub use types::{
    validate_instance_id, CallbackResolution, CallbackStatus, CallbackTarget, Committed, Completed,
    CreateOutcome, DirectTurn, InstanceInfo, InstanceStatus, Journal, LeaseToken, ListCursor,
    ListFilter, ListOrder, Message, MessageId, MessageKind, NewCallback, NewInstance, NewMessage,
    NewTask, NextAttempt, NextDue, OpResult, Page, StoreStats, TaskClaim, TaskCompletion, TaskId,
    TaskRelease, TaskWork, TurnCommit, TurnWork, INLINE_JOURNAL, MAX_INSTANCE_ID_LEN,
};
pub use wake::{
    checkpoint_lease, commit_wakes_turns, instance_due_at, message_due_at, DueState, PostedResults,
    Wake,
};
