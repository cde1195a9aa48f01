//! The duraflow store contract ([`Store`]), the in-memory store ([`MemoryStore`]), and the
//! conformance suite every store must pass ([`conformance`]).

pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod memory;
mod notify;
mod store;
mod types;

pub use error::{StoreError, StoreResult};
pub use memory::MemoryStore;
pub use notify::Notifier;
pub use store::Store;
pub use types::{
    validate_instance_id, CreateOutcome, InstanceInfo, InstanceStatus, LeaseToken, ListFilter,
    Message, MessageId, MessageKind, NewInstance, NewMessage, NewTask, NextDue, OpResult, Page,
    StoreStats, TaskCompletion, TaskId, TaskRelease, TaskWork, TurnCommit, TurnWork,
    MAX_INSTANCE_ID_LEN,
};
