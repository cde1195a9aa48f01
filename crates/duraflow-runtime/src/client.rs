//! [`Client`]: start, signal, observe and clean up instances, and resolve callbacks.

mod callbacks;
mod queue_events;

use std::fmt;
use std::future::IntoFuture;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};
use std::time::Duration;

use duraflow_core::{Clock, Event, Failure, FailureKind, Payload, Workflow};
use duraflow_store::{
    CreateOutcome, InstanceInfo, InstanceStatus, IntoStore, ListFilter, MessageKind, NewInstance,
    NewMessage, Page, Store, StoreError,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::claimed::ClaimedTurns;
use crate::clock::SystemClock;
use crate::error::ClientError;

/// Starts, signals, observes and cleans up workflow instances.
///
/// Get one from [`crate::Engine::client`] (which also checks workflow names against the
/// engine), or build one on a store alone with [`Client::new`] to operate instances from a
/// process that runs no workflows. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    workflows: Option<Arc<Vec<String>>>,
    /// Where the engine this client belongs to (if any) runs the first turns of what it
    /// starts. Weak, so that a client kept after `Engine::shutdown` neither keeps the engine's
    /// writers alive nor starts work on it.
    local: Option<Weak<dyn ClaimedTurns>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("store", &self.store.backend())
            .finish()
    }
}

/// A started (or already existing) instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunHandle {
    /// The instance id.
    pub id: String,
    /// Whether the instance already existed, so this start did not create it.
    pub existed: bool,
}

impl AsRef<str> for RunHandle {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for RunHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// What a start does when the instance id is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IfExists {
    /// Return the existing instance (the default): starting is idempotent.
    #[default]
    ReturnExisting,
    /// Fail with [`ClientError::AlreadyExists`].
    Fail,
}

/// A start being prepared; `.await` it.
#[must_use = "nothing starts until the start is awaited"]
pub struct Start<'a> {
    client: &'a Client,
    name: String,
    input: Result<Payload, ClientError>,
    id: Option<String>,
    if_exists: IfExists,
    queue: Option<String>,
}

impl Start<'_> {
    /// The instance id (default: a new UUID).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The queue the instance's turns go to (default: [`duraflow_core::DEFAULT_QUEUE`]): an
    /// engine runs them only if it serves this queue and has registered the workflow; until
    /// one does, the instance stays pending. Its child workflows inherit the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// What to do if the id is taken (default: return the existing instance).
    pub fn if_exists(mut self, policy: IfExists) -> Self {
        self.if_exists = policy;
        self
    }
}

impl<'a> IntoFuture for Start<'a> {
    type Output = Result<RunHandle, ClientError>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        async move {
            if let Some(registered) = &self.client.workflows {
                if !registered.contains(&self.name) {
                    return Err(ClientError::UnknownWorkflow {
                        name: self.name,
                        registered: registered.as_ref().clone(),
                    });
                }
            }
            let input = self.input?;
            let id = self.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            duraflow_store::validate_instance_id(&id)?;
            let new = NewInstance {
                id: id.clone(),
                name: self.name.clone(),
                input,
                parent: None,
                queue: self
                    .queue
                    .unwrap_or_else(|| duraflow_core::DEFAULT_QUEUE.to_owned()),
                created_at: self.client.clock.now(),
            };
            // A client of a running engine with room for a turn takes the first turn along,
            // and the engine runs it at once instead of fetching it.
            let store = &self.client.store;
            let room = self.client.local.as_ref().and_then(|local| {
                let turns = local.upgrade()?;
                if !turns.serves(&new.queue, &new.name) {
                    return None;
                }
                let permit = turns.room_for_a_turn()?;
                Some((turns, permit))
            });
            let outcome = match room {
                Some((turns, permit)) => {
                    let (outcome, turn) = store
                        .create_instance_claiming(new, turns.turn_lease())
                        .await?;
                    if let Some(work) = turn {
                        turns.spawn_turn(work, permit);
                    }
                    outcome
                }
                None => store.create_instance(new).await?,
            };
            match outcome {
                CreateOutcome::Created => Ok(RunHandle { id, existed: false }),
                CreateOutcome::Existing(_) if self.if_exists == IfExists::Fail => {
                    Err(ClientError::AlreadyExists(id))
                }
                CreateOutcome::Existing(_) => Ok(RunHandle { id, existed: true }),
            }
        }
        .boxed()
    }
}

/// A start of a typed [`Workflow`] being prepared (see [`Client::start_typed`]); `.await` it
/// for a [`TypedRunHandle`].
#[must_use = "nothing starts until the start is awaited"]
pub struct TypedStart<'a, W> {
    start: Start<'a>,
    _workflow: PhantomData<fn() -> W>,
}

impl<'a, W> TypedStart<'a, W> {
    /// The instance id (default: a new UUID).
    pub fn id(self, id: impl Into<String>) -> Self {
        self.configure(|start| start.id(id))
    }

    /// What to do if the id is taken (default: return the existing instance).
    pub fn if_exists(self, policy: IfExists) -> Self {
        self.configure(|start| start.if_exists(policy))
    }

    /// Sets any option of the untyped [`Start`] underneath:
    /// `.configure(|start| start.id("order-42"))`.
    pub fn configure(mut self, f: impl FnOnce(Start<'a>) -> Start<'a>) -> Self {
        self.start = f(self.start);
        self
    }
}

impl<'a, W: Workflow> IntoFuture for TypedStart<'a, W> {
    type Output = Result<TypedRunHandle<W>, ClientError>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let client = self.start.client.clone();
        let start = self.start.into_future();
        async move {
            Ok(TypedRunHandle {
                handle: start.await?,
                client,
                _workflow: PhantomData,
            })
        }
        .boxed()
    }
}

/// A started (or already existing) instance of the typed [`Workflow`] `W`, with the client
/// that started it: [`TypedRunHandle::wait`] yields a `W::Output`. It dereferences to the
/// untyped [`RunHandle`] (`run.id`, `run.existed`) and works wherever an instance id does.
pub struct TypedRunHandle<W> {
    handle: RunHandle,
    client: Client,
    _workflow: PhantomData<fn() -> W>,
}

impl<W: Workflow> TypedRunHandle<W> {
    /// Waits for the instance to finish and returns its output as a `W::Output` (see
    /// [`Client::wait`]; give it a timeout with [`Wait::timeout`]).
    pub fn wait(&self) -> Wait<'_, W::Output> {
        self.client.wait(&self.handle.id)
    }
}

impl<W> TypedRunHandle<W> {
    /// The untyped handle.
    pub fn handle(&self) -> &RunHandle {
        &self.handle
    }

    /// The untyped handle, dropping the type and the client.
    pub fn into_handle(self) -> RunHandle {
        self.handle
    }
}

impl<W> std::ops::Deref for TypedRunHandle<W> {
    type Target = RunHandle;

    fn deref(&self) -> &RunHandle {
        &self.handle
    }
}

impl<W> Clone for TypedRunHandle<W> {
    fn clone(&self) -> Self {
        TypedRunHandle {
            handle: self.handle.clone(),
            client: self.client.clone(),
            _workflow: PhantomData,
        }
    }
}

impl<W> fmt::Debug for TypedRunHandle<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedRunHandle")
            .field("id", &self.handle.id)
            .field("existed", &self.handle.existed)
            .field("workflow", &std::any::type_name::<W>())
            .finish()
    }
}

impl<W> AsRef<str> for TypedRunHandle<W> {
    fn as_ref(&self) -> &str {
        &self.handle.id
    }
}

impl<W> fmt::Display for TypedRunHandle<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.handle.id)
    }
}

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
    /// A client on `store` alone (a store, or one shared as `Arc<dyn Store>`, as
    /// [`crate::EngineBuilder::store`] takes it), using the system clock. It does not check
    /// workflow names.
    pub fn new(store: impl IntoStore) -> Self {
        Client {
            store: store.into_store(),
            clock: Arc::new(SystemClock),
            workflows: None,
            local: None,
        }
    }

    pub(crate) fn for_engine(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        workflows: Arc<Vec<String>>,
        local: Weak<dyn ClaimedTurns>,
    ) -> Self {
        Client {
            store,
            clock,
            workflows: Some(workflows),
            local: Some(local),
        }
    }

    /// Starts the workflow registered as `name` with `input`. Set an id with `.id(..)`;
    /// starting an id that exists returns the existing instance unless told otherwise.
    pub fn start(&self, name: &str, input: &(impl Serialize + ?Sized)) -> Start<'_> {
        Start {
            client: self,
            name: name.to_owned(),
            input: Payload::encode(input).map_err(|e| ClientError::Encode {
                what: format!("the input of workflow {name:?}"),
                message: e.0,
            }),
            id: None,
            if_exists: IfExists::default(),
            queue: None,
        }
    }

    /// Starts a typed [`Workflow`]: the input's type is checked at compile time, and the
    /// returned [`TypedRunHandle`] waits for a `W::Output` with no annotation. Set the id and
    /// the other start options on the returned [`TypedStart`] as on a [`Start`].
    ///
    /// ```no_run
    /// # use duraflow_core::{Workflow, WorkflowContext, WorkflowError};
    /// # use duraflow_runtime::Client;
    /// struct Double;
    ///
    /// impl Workflow for Double {
    ///     const NAME: &'static str = "double";
    ///     type Input = u64;
    ///     type Output = u64;
    ///
    ///     async fn run(&self, _ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    ///         Ok(2 * n)
    ///     }
    /// }
    ///
    /// # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let run = client.start_typed::<Double>(&21).id("double-21").await?;
    /// let answer = run.wait().await?; // a u64
    /// assert_eq!(answer, 42);
    /// # Ok(()) }
    /// ```
    pub fn start_typed<W: Workflow>(&self, input: &W::Input) -> TypedStart<'_, W> {
        TypedStart {
            start: self.start(W::NAME, input),
            _workflow: PhantomData,
        }
    }

    /// Raises the external event `name` with `data` on an instance. It is buffered until the
    /// workflow waits for it.
    pub async fn raise_event(
        &self,
        id: impl AsRef<str>,
        name: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<(), ClientError> {
        let data = Payload::encode(data).map_err(|e| ClientError::Encode {
            what: format!("the data of event {name:?}"),
            message: e.0,
        })?;
        self.send(
            id.as_ref(),
            MessageKind::Event {
                name: name.to_owned(),
                data,
            },
        )
        .await
    }

    /// Requests cancellation: the instance ends as cancelled at its next turn, its running
    /// activities are told to stop, and its attached children are cancelled too.
    pub async fn cancel(&self, id: impl AsRef<str>, reason: &str) -> Result<(), ClientError> {
        self.send(
            id.as_ref(),
            MessageKind::Cancel {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// Terminates the instance without running any more of its code (it works even when the
    /// code is gone or no longer matches the journal); attached children are terminated too.
    pub async fn terminate(&self, id: impl AsRef<str>, reason: &str) -> Result<(), ClientError> {
        self.send(
            id.as_ref(),
            MessageKind::Terminate {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    async fn send(&self, id: &str, kind: MessageKind) -> Result<(), ClientError> {
        let message = NewMessage {
            instance_id: id.to_owned(),
            kind,
            visible_at: self.clock.now(),
        };
        self.store.send(message).await.map_err(|e| match e {
            StoreError::NotFound(_) => ClientError::NotFound(id.to_owned()),
            StoreError::InstanceFinished { id, status } => {
                ClientError::InstanceFinished { id, status }
            }
            other => ClientError::Store(other),
        })
    }

    /// The instance's status, input, output or failure.
    pub async fn status(&self, id: impl AsRef<str>) -> Result<InstanceInfo, ClientError> {
        let id = id.as_ref();
        self.store
            .instance(id)
            .await?
            .ok_or_else(|| ClientError::NotFound(id.to_owned()))
    }

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

    /// Waits for the instance to finish and returns its final state, whatever it is.
    pub async fn wait_finished(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<InstanceInfo, ClientError> {
        let started = tokio::time::Instant::now();
        let mut poll = Duration::from_millis(5);
        loop {
            let notified = self.store.notifier().map(|n| n.instances.notified());
            tokio::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                n.enable();
            }
            let info = self.status(id).await?;
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
                    let _ = tokio::time::timeout(nap, n).await;
                }
                None => tokio::time::sleep(nap).await,
            }
            poll = (poll * 2).min(Duration::from_millis(500));
        }
    }

    /// The journal of an execution (the current one when `None`).
    pub async fn history(
        &self,
        id: impl AsRef<str>,
        execution: Option<u32>,
    ) -> Result<Vec<Event>, ClientError> {
        let id = id.as_ref();
        self.store
            .journal(id, execution)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => ClientError::NotFound(id.to_owned()),
                other => ClientError::Store(other),
            })
    }

    /// Lists instances, filtered by status and name, a page at a time.
    pub async fn list(&self, filter: ListFilter) -> Result<Page, ClientError> {
        Ok(self.store.list(filter).await?)
    }

    /// How many instances there are in each status, counted by the store (no paging through
    /// [`Client::list`]): every status, in the order of [`InstanceStatus::ALL`].
    pub async fn count_by_status(&self) -> Result<Vec<(InstanceStatus, u64)>, ClientError> {
        let counted = self.store.stats().await?.instances;
        Ok(InstanceStatus::ALL
            .into_iter()
            .map(|status| {
                let n = counted
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                (status, n)
            })
            .collect())
    }

    /// Deletes a finished instance and its history: every execution's journal, its inbox and
    /// its tasks. An unknown id is [`ClientError::NotFound`], like every other call on one; an
    /// instance still running is refused with [`ClientError::InstanceRunning`] (cancel or
    /// terminate it first).
    pub async fn purge(&self, id: impl AsRef<str>) -> Result<(), ClientError> {
        let id = id.as_ref();
        match self.store.purge(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ClientError::NotFound(id.to_owned())),
            Err(StoreError::InstanceRunning(_)) => Err(ClientError::InstanceRunning(id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }
}
