//! Publishing records to the store's feed.

use serde::Serialize;

use super::WorkflowContext;
use crate::error::WorkflowError;
use crate::feed::FeedRecord;
use crate::payload::Payload;
use crate::replay::state::lock;

impl WorkflowContext {
    /// Publishes `payload` under `topic` to the store's feed, for subscribers (see
    /// `Client::subscribe` in `duraflow-runtime`). Nothing is journaled: the record is
    /// appended by the commit of the turn that runs this code live, past the journal's end, in
    /// the same transaction, so it exists if and only if that turn was committed. Replayed
    /// code publishes nothing, and a record that a replay derives again (the code between the
    /// journal's last event and its end runs again when a run is replayed cold) is numbered as
    /// before and not appended twice. Fails only when `payload` cannot be serialized.
    pub fn publish(
        &self,
        topic: &str,
        payload: &(impl Serialize + ?Sized),
    ) -> Result<(), WorkflowError> {
        let payload = Payload::encode(payload).map_err(|e| {
            WorkflowError::application(format!("cannot publish to topic {topic:?}: {e}"))
        })?;
        let mut s = lock(&self.state);
        s.publish_seq += 1;
        if s.live && !s.is_replaying() {
            let seq = s.publish_seq;
            s.feed.push(FeedRecord {
                topic: topic.to_owned(),
                payload,
                seq,
            });
        }
        Ok(())
    }
}
