//! Queue-wide events: emitting one from outside the workflows.

use duraflow_core::{EmitOutcome, Payload};
use serde::Serialize;

use super::Client;
use crate::error::ClientError;

impl Client {
    /// Emits the queue-wide event `name` with `data` in `queue`: the first emit of a name in a
    /// queue stores it and wakes every workflow of that queue awaiting it
    /// (`ctx.await_event(name)`), returning [`EmitOutcome::Emitted`] with the number of awaits
    /// it answered; later emits change nothing and return [`EmitOutcome::AlreadyEmitted`]. An
    /// await that comes after the emit gets the stored data at once.
    ///
    /// This is not [`Client::raise_event`], which sends an event to one instance's
    /// `wait_for_event`. A queue or name that is empty, longer than
    /// [`duraflow_core::MAX_QUEUE_EVENT_NAME_LEN`] bytes or holds a NUL character is refused
    /// ([`ClientError::Store`] with `StoreError::Invalid`).
    pub async fn emit_event(
        &self,
        name: &str,
        data: &(impl Serialize + ?Sized),
        queue: &str,
    ) -> Result<EmitOutcome, ClientError> {
        let data = Payload::encode(data).map_err(|e| ClientError::Encode {
            what: format!("the data of queue event {name:?}"),
            message: e.0,
        })?;
        self.store
            .emit_event(queue, name, data, self.clock.now())
            .await
            .map_err(ClientError::Store)
    }
}
