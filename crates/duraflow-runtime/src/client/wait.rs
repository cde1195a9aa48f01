//! Waiting for an instance to finish.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::Duration;

use duraflow_core::{Failure, FailureKind, Payload};
use duraflow_store::{InstanceInfo, InstanceStatus, StoreError};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;

use super::Client;
use crate::error::ClientError;

/// A wait for an instance's result; optionally give it a timeout, then `.await` it.
#[must_use = "nothing happens until the wait is awaited"]
pub struct Wait<'a, T> {
    client: &'a Client,
    id: String,
    timeout: Option<Duration>,
    _output: PhantomData<fn() -> T>,
}

impl<T> Wait<'_, T> {
    /// Gives up after `timeout` of real time with [`ClientError::Timeout`] (the instance goes
    /// on running).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<'a, T: DeserializeOwned + 'a> IntoFuture for Wait<'a, T> {
    type Output = Result<T, ClientError>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        async move {
            let info = self.client.wait_finished(&self.id, self.timeout).await?;
            outcome_of::<T>(info)
        }
        .boxed()
    }
}

/// The typed result of a finished instance.
fn outcome_of<T: DeserializeOwned>(info: InstanceInfo) -> Result<T, ClientError> {
    let failure = || {
        info.failure
            .clone()
            .unwrap_or_else(|| Failure::new(FailureKind::Internal, "no failure recorded"))
    };
    match info.status {
        InstanceStatus::Completed => {
            let output = info.output.clone().unwrap_or_else(Payload::null);
            output.decode::<T>().map_err(|e| ClientError::Decode {
                id: info.id.clone(),
                message: e.to_string(),
            })
        }
        InstanceStatus::Failed => Err(ClientError::WorkflowFailed(failure())),
        InstanceStatus::Cancelled => Err(ClientError::Cancelled(failure())),
        InstanceStatus::Terminated => Err(ClientError::Terminated(failure())),
        InstanceStatus::Pending | InstanceStatus::Running => Err(ClientError::Store(
            StoreError::Other(format!("instance {:?} has not finished", info.id)),
        )),
    }
}

impl Client {
    /// Waits for the instance to finish (through any continue-as-new) and returns its output
    /// decoded as `T`, or its failure, cancellation or termination as an error.
    pub fn wait<T: DeserializeOwned>(&self, id: impl AsRef<str>) -> Wait<'_, T> {
        Wait {
            client: self,
            id: id.as_ref().to_owned(),
            timeout: None,
            _output: PhantomData,
        }
    }

    /// Waits for the instance to finish and returns its final state, whatever it is. On a
    /// store with in-process wakeups the wait is woken by this instance's changes alone
    /// (`Notifier::watch`), so many clients waiting for their own instances do not all read
    /// the store whenever one finishes; it also reads the instance at least every
    /// [`Client::with_wait_poll`], for changes made where no wakeup reaches it. When the commit
    /// that finished the instance handed its state over with the wakeup (the memory, SQLite and
    /// PostgreSQL stores do, for instances watched in their own process), that state is
    /// returned without reading the store again.
    pub async fn wait_finished(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<InstanceInfo, ClientError> {
        let started = tokio::time::Instant::now();
        let mut poll = Duration::from_millis(5).min(self.wait_poll);
        // Woken by this instance's changes only: waiters of other instances are not.
        let watch = self.store.notifier().map(|n| n.watch(id));
        // The state a finishing commit handed over with the wakeup, read instead of the store.
        let mut handed: Option<InstanceInfo> = None;
        loop {
            let notified = watch.as_ref().map(|w| w.notified());
            tokio::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                n.enable();
            }
            let seen = watch.as_ref().map_or(0, |w| w.changes());
            let info = match handed.take() {
                Some(info) => info,
                None => self.status(id).await?,
            };
            if info.status.is_terminal() {
                return Ok(info);
            }
            let remaining = match timeout {
                Some(t) => match t.checked_sub(started.elapsed()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => {
                        return Err(ClientError::Timeout {
                            id: id.to_owned(),
                            waited: t,
                        })
                    }
                },
                None => None,
            };
            let nap = remaining.map_or(poll, |r| r.min(poll));
            match notified.as_mut().as_pin_mut() {
                Some(n) => {
                    if tokio::time::timeout(nap, n).await.is_ok() {
                        handed = watch.as_ref().and_then(|w| w.finished_after(seen));
                    }
                }
                None => tokio::time::sleep(nap).await,
            }
            poll = (poll * 2).min(self.wait_poll);
        }
    }
}
