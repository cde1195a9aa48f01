//! Child workflows: `child_started` makes the turn create the child instance (with a parent
//! link unless detached); an attached child's end comes back as a `child_result` message,
//! delivered as `child_completed` or `child_failed`. A detached child is done once started.
//! The workflow may give up on an attached child (`child_cancelled`, an `invoke` that timed
//! out): the child is sent a cancellation and its result is refused.

use super::{Transition, ABANDONED};

pub(super) const INITIAL: &str = "started";

pub(super) static TRANSITIONS: [Transition; 5] = [
    Transition::new(INITIAL, "child_completed", "completed"),
    Transition::new(INITIAL, "child_failed", "failed"),
    Transition::new(INITIAL, "detached", "detached"),
    Transition::new(INITIAL, "child_cancelled", "cancelled"),
    Transition::new(INITIAL, ABANDONED, ABANDONED),
];
