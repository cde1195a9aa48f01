//! What the replay state does for child contexts: the recorded ends of contexts, passing over
//! the recorded body of a context replay does not run, and noting which wait inside a context
//! takes an external event.

use foldhash::HashMap;

use super::{Completion, RecordedEnd, Slot, State};
use crate::event::EventKind;
use crate::op_id::OpId;
use crate::time::Timestamp;

impl State {
    /// Records on a delivery about to be journaled (at `at`) what replay must know of it: the
    /// wait inside a child context that will take an external event (see
    /// `EventKind::EventRaised::taken_by`), a callback heartbeat's new deadline.
    pub(crate) fn stamp(&self, at: Timestamp, kind: &mut EventKind) {
        if let EventKind::CallbackHeartbeat { op, next_deadline } = kind {
            *next_deadline = self
                .callbacks
                .get(op)
                .and_then(|cb| cb.heartbeat_timeout)
                .map(|h| at.max(self.now).plus_ceil(h));
        }
        if let EventKind::EventRaised { name, taken_by, .. } = kind {
            *taken_by = self
                .event_waiters
                .get(name)
                .and_then(|q| q.front())
                .filter(|op| op.path().len() > 1)
                .cloned();
        }
    }

    /// The recorded end of the child context `op`, if the recorded journal has one.
    /// (With the end's journal position.)
    pub(crate) fn recorded_context_end(&mut self, op: &OpId) -> Option<RecordedEnd> {
        let recorded_len = self.recorded_len;
        let base = self.base;
        let journal = &self.journal;
        let ends = self.context_ends.get_or_insert_with(|| {
            let mut ends = HashMap::default();
            for (i, ev) in journal
                .iter()
                .enumerate()
                .take(recorded_len.saturating_sub(base))
            {
                match &ev.kind {
                    EventKind::ContextCompleted { op, output } => {
                        ends.insert(op.clone(), (base + i, Ok(output.clone())));
                    }
                    EventKind::ContextFailed { op, failure } => {
                        ends.insert(op.clone(), (base + i, Err(failure.as_ref().clone())));
                    }
                    _ => {}
                }
            }
            ends
        });
        ends.get(op).cloned()
    }

    /// Replay returns the recorded end of context `op` without running its body: pass over
    /// the body's recorded events from now on.
    pub(crate) fn skip_context(&mut self, op: &OpId) {
        self.skipped.insert(op.clone());
        self.skip_recorded();
    }

    /// Whether `op` is inside (or is the end of) a context replay skips.
    pub(super) fn skipped_scope_of(&self, op: &OpId) -> bool {
        let path = op.path();
        (1..path.len()).any(|n| self.skipped.contains(&OpId::from_path(&path[..n])))
    }

    /// Moves the replay cursor past recorded events of skipped contexts, with the effect each
    /// had on what the rest of the workflow sees: a wait inside takes a buffered event as it
    /// did when it ran, an event taken by a wait inside is taken, and the context's end closes
    /// the skip.
    pub(crate) fn skip_recorded(&mut self) {
        if self.skipped.is_empty() {
            return;
        }
        while self.pos < self.recorded_len {
            let kind = &self.event_at(self.pos).kind;
            let end_of_skipped = matches!(
                kind,
                EventKind::ContextCompleted { op, .. } | EventKind::ContextFailed { op, .. }
                    if self.skipped.contains(op)
            );
            let inside = match kind {
                EventKind::EventRaised {
                    taken_by: Some(op), ..
                } => self.skipped_scope_of(op),
                other => other.op().is_some_and(|op| self.skipped_scope_of(op)),
            };
            if !end_of_skipped && !inside {
                return;
            }
            let kind = kind.clone();
            self.pos += 1;
            match kind {
                EventKind::ContextCompleted { op, .. } | EventKind::ContextFailed { op, .. }
                    if end_of_skipped =>
                {
                    self.skipped.remove(&op);
                    // A context that returned early from replay waits for its end to be
                    // reached before handing its recorded result over.
                    if matches!(self.ops.slot(&op), Some(Slot::Waiting(_))) {
                        self.context_end_reached = true;
                        self.replayed_ends_untaken += 1;
                    }
                    self.complete(&op, Completion::Fired);
                }
                EventKind::EventWaitStarted { name, .. } => {
                    // The wait took a buffered event if there was one (else a later event
                    // records that it took it).
                    if let Some(q) = self.buffered_events.get_mut(&name) {
                        q.pop_front();
                    }
                }
                EventKind::EventRaised { .. } => self.events_seen += 1,
                _ => {}
            }
        }
    }
}
