//! Child contexts: a named scope whose body's operations take ids inside it
//! (`context_started` → body → `context_completed` / `context_failed`). The body's result is
//! journaled as one unit: when replay meets a context whose end is recorded, it returns the
//! recorded result at once (`replayed_end`) and skips the body's events without running it.
//! Map items and parallel branches are child contexts.

use super::{Transition, ABANDONED};

pub(super) const INITIAL: &str = "running";

/// The pseudo-event of a context whose recorded end replay returns without running its body.
pub(crate) const REPLAYED_END: &str = "replayed_end";

pub(super) static TRANSITIONS: [Transition; 4] = [
    Transition::new(INITIAL, "context_completed", "completed"),
    Transition::new(INITIAL, "context_failed", "failed"),
    Transition::new(INITIAL, REPLAYED_END, "completed"),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];
