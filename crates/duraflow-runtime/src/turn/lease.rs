//! Keeping a turn's lease while it runs: renewed every third of the lease, and at once when the
//! workflow heartbeats, so that steps that run longer than the lease keep their turn.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use duraflow_store::{LeaseToken, StoreError};
use tokio::sync::Notify;
use tracing::debug;

use crate::shared::Shared;

/// Renews one turn's lease.
pub(super) struct Renewer<'a> {
    shared: &'a Shared,
    instance_id: String,
    token: LeaseToken,
    heartbeats: Arc<Notify>,
    /// Whether the turn holds its lease: a direct turn holds none until its first checkpoint
    /// takes it, and nothing is renewed before.
    held: AtomicBool,
}

impl<'a> Renewer<'a> {
    /// Renews the lease of a turn that holds it with `token`, or (`held` false, a direct turn)
    /// will once [`Renewer::hold`] says so.
    pub(super) fn new(
        shared: &'a Shared,
        instance_id: &str,
        token: LeaseToken,
        held: bool,
    ) -> Self {
        Renewer {
            shared,
            instance_id: instance_id.to_owned(),
            token,
            heartbeats: Arc::new(Notify::new()),
            held: AtomicBool::new(held),
        }
    }

    /// The turn holds its lease now (a direct turn's checkpoint took it).
    pub(super) fn hold(&self) {
        self.held.store(true, Ordering::Release);
    }

    /// The hook a workflow's heartbeat calls: renew now.
    pub(super) fn heartbeat(&self) -> Arc<dyn Fn() + Send + Sync> {
        let heartbeats = self.heartbeats.clone();
        Arc::new(move || heartbeats.notify_one())
    }

    /// Runs `work`, renewing the lease until it is done.
    pub(super) async fn during<F: Future>(&self, work: F) -> F::Output {
        tokio::select! {
            biased;
            out = work => out,
            never = self.renew_forever() => match never {},
        }
    }

    async fn renew_forever(&self) -> Infallible {
        let lease = self.shared.options.turn_lease;
        let clock = &self.shared.clock;
        loop {
            let next = clock.now().plus(lease / 3);
            tokio::select! {
                _ = clock.sleep_until(next) => {}
                _ = self.heartbeats.notified() => {}
            }
            if !self.held.load(Ordering::Acquire) {
                continue;
            }
            let renewed = self
                .shared
                .store
                .renew_turn(&self.instance_id, self.token, clock.now(), lease)
                .await;
            match renewed {
                Ok(_) => {}
                // The turn is void; its commit will be refused. Nothing left to renew.
                Err(e @ (StoreError::LeaseLost { .. } | StoreError::NotFound(_))) => {
                    debug!(instance_id = %self.instance_id, error = %e, "turn lease not renewed");
                    return std::future::pending().await;
                }
                Err(e) => {
                    debug!(instance_id = %self.instance_id, error = %e, "renewing the turn lease failed; retrying");
                }
            }
        }
    }
}
