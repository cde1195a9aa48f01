//! Callbacks: an operation an external party completes by presenting an unguessable token.

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::op::take_completion;
use super::WorkflowContext;
use crate::error::WorkflowError;
use crate::event::EventKind;
use crate::op_id::OpId;
use crate::replay::state::{lock, CallbackDeadlines, Completion, Slot};

/// A callback (see [`WorkflowContext::callback`]). It is opened (its token made and journaled)
/// the first time [`Callback::token`] is called or it is awaited; awaiting it waits for the
/// external party's value. A completion that arrives before the workflow awaits is kept.
#[must_use = "a callback does nothing unless its token is handed out and it is awaited"]
pub struct Callback<T> {
    ctx: WorkflowContext,
    name: String,
    timeout: Option<Duration>,
    heartbeat_timeout: Option<Duration>,
    opened: Mutex<Option<Result<Opened, WorkflowError>>>,
    finished: bool,
    _output: PhantomData<fn() -> T>,
}

/// An opened callback's operation and token.
#[derive(Clone)]
struct Opened {
    op: OpId,
    token: String,
}

/// A fresh token: 192 bits from the operating system's secure random source, never from the
/// workflow's deterministic random numbers.
fn fresh_token() -> Result<String, WorkflowError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| {
        WorkflowError::application(format!(
            "cannot make a callback token: the system's random source failed: {e}"
        ))
    })?;
    let mut token = String::with_capacity(5 + 48);
    token.push_str("dfcb_");
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    Ok(token)
}

impl<T> Callback<T> {
    pub(super) fn new(ctx: WorkflowContext, name: &str) -> Self {
        Callback {
            ctx,
            name: name.to_owned(),
            timeout: None,
            heartbeat_timeout: None,
            opened: Mutex::new(None),
            finished: false,
            _output: PhantomData,
        }
    }

    /// Fails the callback (kind `timeout`, code `callback_timed_out`) if it is not completed
    /// within `limit` of being opened; its token is refused from then on.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Fails the callback (kind `timeout`, code `callback_heartbeat_timed_out`) if `limit`
    /// passes without a completion or a heartbeat (`Client::heartbeat_callback`).
    pub fn heartbeat_timeout(mut self, limit: Duration) -> Self {
        self.heartbeat_timeout = Some(limit);
        self
    }

    /// The callback's token, opening the callback if it is not yet open. Hand it to the
    /// external party; it alone identifies this instance, execution and operation. The same on
    /// every replay (it is read back from the journal).
    pub fn token(&self) -> String {
        match self.open() {
            Some(Ok(o)) => o.token,
            _ => String::new(),
        }
    }

    /// Opens the callback once: journals `callback_created` with a fresh token (or, on replay,
    /// takes the recorded one) and registers the operation, so that a completion arriving before
    /// the workflow awaits is kept. `None` while the run cannot go on (nondeterminism); an
    /// error when no token could be made (awaiting the callback returns it).
    fn open(&self) -> Option<Result<Opened, WorkflowError>> {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = opened.as_ref() {
            return Some(o.clone());
        }
        let mut s = lock(&self.ctx.state);
        if s.nondeterminism.is_some() || s.continue_as_new.is_some() {
            return None;
        }
        s.skip_recorded();
        let replaying = s.is_replaying();
        let token = if replaying {
            String::new()
        } else {
            match fresh_token() {
                Ok(t) => t,
                Err(e) => {
                    *opened = Some(Err(e.clone()));
                    return Some(Err(e));
                }
            }
        };
        let op = s.next_op_id(self.ctx.scope.as_ref());
        let start = s.timer_start();
        let ev = EventKind::CallbackCreated {
            op: op.clone(),
            name: self.name.clone(),
            token,
            timeout_at: self.timeout.map(|t| start.plus_ceil(t)),
            heartbeat_timeout: self.heartbeat_timeout,
        };
        if !s.issue(Cow::Owned(ev)) {
            return None;
        }
        let recorded = s.event_at(s.pos - 1).clone();
        let EventKind::CallbackCreated {
            token,
            timeout_at,
            heartbeat_timeout,
            ..
        } = recorded.kind
        else {
            return None;
        };
        s.callbacks.insert(
            op.clone(),
            CallbackDeadlines {
                name: self.name.clone(),
                timeout_at,
                heartbeat_timeout,
                last_beat: recorded.at,
            },
        );
        s.ops.set_slot(&op, Slot::Waiting(None));
        let o = Opened { op, token };
        *opened = Some(Ok(o.clone()));
        Some(Ok(o))
    }
}

/// The future of an awaited [`Callback`].
#[must_use = "a callback's value arrives only when awaited"]
pub struct CallbackFuture<T> {
    callback: Callback<T>,
}

impl<T: DeserializeOwned> IntoFuture for Callback<T> {
    type Output = Result<T, WorkflowError>;
    type IntoFuture = CallbackFuture<T>;

    fn into_future(self) -> CallbackFuture<T> {
        CallbackFuture { callback: self }
    }
}

impl<T: DeserializeOwned> Future for CallbackFuture<T> {
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let cb = &mut self.get_mut().callback;
        if cb.finished {
            return Poll::Pending;
        }
        let op = match cb.open() {
            None => return Poll::Pending,
            Some(Err(e)) => {
                cb.finished = true;
                return Poll::Ready(Err(e));
            }
            Some(Ok(Opened { op, .. })) => op,
        };
        let completion = {
            let mut s = lock(&cb.ctx.state);
            if s.nondeterminism.is_some() || s.continue_as_new.is_some() {
                return Poll::Pending;
            }
            match take_completion(&mut s, &op, cx) {
                Some(c) => c,
                None => return Poll::Pending,
            }
        };
        cb.finished = true;
        Poll::Ready(match completion {
            Completion::Ok(p) => p.decode::<T>().map_err(|e| {
                WorkflowError::Payload(format!(
                    "callback {:?} (op {op}) received a value the workflow cannot decode: {e}",
                    cb.name
                ))
            }),
            Completion::Err(failure) => Err(WorkflowError::Callback(failure)),
            _ => Err(WorkflowError::Payload(format!(
                "callback {:?} (op {op}) received a completion of another kind",
                cb.name
            ))),
        })
    }
}

impl<T> Drop for Callback<T> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let opened = self
            .opened
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(Ok(Opened { op, .. })) = opened {
            let mut s = lock(&self.ctx.state);
            s.callbacks.remove(&op);
            s.abandon(&op);
        }
    }
}
