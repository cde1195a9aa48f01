//! What the replay state does for callbacks: their deadlines, and what a timer of a callback's
//! operation means when it fires.

use super::State;
use crate::event::EventKind;
use crate::failure::Failure;
use crate::primitive::Primitive;
use crate::time::Timestamp;

/// When an open callback times out.
#[derive(Clone, Debug)]
pub(crate) struct CallbackDeadlines {
    pub(crate) name: String,
    pub(crate) timeout_at: Option<Timestamp>,
    pub(crate) heartbeat_timeout: Option<std::time::Duration>,
    /// When the last heartbeat (or the creation) was journaled.
    pub(crate) last_beat: Timestamp,
}

impl State {
    /// What a timer firing for a callback's operation means at `at`: the callback timed out
    /// (the event to journal instead), or the timer is stale (`None`: a heartbeat moved the
    /// deadline, or the callback is resolved) and is dropped. Other deliveries are kept as
    /// they are.
    pub(crate) fn interpret(&self, at: Timestamp, kind: EventKind) -> Option<EventKind> {
        let EventKind::TimerFired { op } = &kind else {
            return Some(kind);
        };
        if self.ops.machine(op).map(|(p, _)| p) != Some(Primitive::Callback) {
            return Some(kind);
        }
        let cb = self.callbacks.get(op)?;
        let at = at.max(self.now);
        let (code, message) = if cb.timeout_at.is_some_and(|t| at >= t) {
            (
                "callback_timed_out",
                format!("callback {:?} timed out", cb.name),
            )
        } else if let Some(h) = cb
            .heartbeat_timeout
            .filter(|h| at >= cb.last_beat.plus_ceil(*h))
        {
            (
                "callback_heartbeat_timed_out",
                format!("callback {:?} had no heartbeat for {h:?}", cb.name),
            )
        } else {
            return None;
        };
        Some(EventKind::CallbackFailed {
            op: op.clone(),
            failure: Box::new(
                Failure::new(crate::FailureKind::Timeout, message)
                    .with_code(Some(code.to_owned()))
                    .at(format!("callback {:?}", cb.name), op),
            ),
        })
    }
}
