//! Child workflows: `child_started` makes the turn create the child instance (with a parent
//! link unless detached); an attached child's end comes back as a `child_result` message,
//! delivered as `child_completed` or `child_failed`. A detached child is done once started.

use super::{Transition, ABANDONED};

pub(super) const INITIAL: &str = "started";

pub(super) static TRANSITIONS: [Transition; 4] = [
    Transition::new(INITIAL, "child_completed", "completed"),
    Transition::new(INITIAL, "child_failed", "failed"),
    Transition::new(INITIAL, "detached", "detached"),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];
