//! Resolving callbacks: how an external party completes, fails or keeps alive an operation a
//! workflow handed it a token for.

use duraflow_core::{Failure, FailureKind, Payload};
use duraflow_store::{CallbackResolution, StoreError};
use serde::Serialize;

use super::Client;
use crate::error::ClientError;

impl Client {
    /// Completes the callback with `token` with `value`: the workflow waiting for it receives
    /// the value at its next turn.
    ///
    /// Fails with [`ClientError::CallbackNotFound`] when no open callback has this token
    /// (unknown, forged, or its workflow has finished), and [`ClientError::CallbackClosed`]
    /// when it was already completed or failed, or has timed out.
    pub async fn complete_callback(
        &self,
        token: &str,
        value: &(impl Serialize + ?Sized),
    ) -> Result<(), ClientError> {
        let value = Payload::encode(value).map_err(|e| ClientError::Encode {
            what: "the value completing a callback".to_owned(),
            message: e.0,
        })?;
        self.resolve(token, CallbackResolution::Complete(value))
            .await
    }

    /// Fails the callback with `token`: the workflow waiting for it receives an application
    /// failure carrying `code` (an error type the workflow can match on, such as
    /// `"RejectedError"`) and `message`, both verbatim. Errors as for
    /// [`Client::complete_callback`].
    pub async fn fail_callback(
        &self,
        token: &str,
        code: &str,
        message: &str,
    ) -> Result<(), ClientError> {
        let failure =
            Failure::new(FailureKind::Application, message).with_code(Some(code.to_owned()));
        self.resolve(token, CallbackResolution::Fail(failure)).await
    }

    /// Tells the workflow that the work behind the callback with `token` is still going on
    /// (for a callback that expects heartbeats); the callback stays open. Errors as for
    /// [`Client::complete_callback`].
    pub async fn heartbeat_callback(&self, token: &str) -> Result<(), ClientError> {
        self.resolve(token, CallbackResolution::Heartbeat).await
    }

    async fn resolve(
        &self,
        token: &str,
        resolution: CallbackResolution,
    ) -> Result<(), ClientError> {
        match self
            .store
            .resolve_callback(self.clock.now(), token, resolution)
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::CallbackNotFound) => Err(ClientError::CallbackNotFound),
            Err(StoreError::CallbackClosed { status }) => {
                Err(ClientError::CallbackClosed { status })
            }
            Err(other) => Err(ClientError::Store(other)),
        }
    }
}
