//! Starting instances: [`Start`] and its typed form, and the handles they return.

use std::fmt;
use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::Duration;

use duraflow_core::{CancellationPolicy, InstanceOptions, Payload, RetryPolicy, Workflow};
use duraflow_store::{CreateOutcome, NewInstance};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Serialize;

use super::{Client, Wait};
use crate::error::ClientError;

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
    delay: Option<Duration>,
    options: InstanceOptions,
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

    /// Its priority in its queue: due work of higher priority is taken first, FIFO among
    /// equals (default 0; negative is lower).
    pub fn priority(mut self, priority: i32) -> Self {
        self.options.priority = priority;
        self
    }

    /// Its concurrency key: among the instances of its queue that share a key, no more run at
    /// once than the queue's per-key limit allows (see `QueueConfig`).
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.options.concurrency_key = Some(key.into());
        self
    }

    /// Adds a header: string metadata the workflow reads with `ctx.headers()` and status shows
    /// (`InstanceInfo::options`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.headers.insert(name.into(), value.into());
        self
    }

    /// Adds headers (see [`Start::header`]).
    pub fn headers<K: Into<String>, V: Into<String>>(
        mut self,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.options
            .headers
            .extend(headers.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Starts its first turn no earlier than `delay` from now (the instance exists, pending,
    /// from now on).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Retries the whole workflow when it fails with a retryable error: after the policy's
    /// backoff, a new attempt runs the code again from the start, and every operation that
    /// completed in an earlier attempt returns its recorded result (`ctx.attempt()` tells
    /// which attempt runs).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = Some(policy);
        self
    }

    /// Cancels the instance automatically if it has not started within the policy's
    /// `max_pending`, or still runs after its `max_duration`.
    pub fn cancellation(mut self, policy: CancellationPolicy) -> Self {
        self.options.cancellation = Some(policy);
        self
    }
}

impl<'a> Start<'a> {
    /// Checks the start and builds the instance it creates (a new UUID if no id was set).
    fn prepare(self) -> Result<(&'a Client, NewInstance, IfExists), ClientError> {
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
        let now = self.client.clock.now();
        duraflow_store::validate_instance_id(&id)?;
        let new = NewInstance {
            id,
            name: self.name,
            input,
            parent: None,
            queue: self
                .queue
                .unwrap_or_else(|| duraflow_core::DEFAULT_QUEUE.to_owned()),
            created_at: now,
            start_at: self.delay.map(|d| now.plus(d)),
            options: self.options,
        };
        Ok((self.client, new, self.if_exists))
    }
}

impl<'a> IntoFuture for Start<'a> {
    type Output = Result<RunHandle, ClientError>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        async move {
            let (client, new, if_exists) = self.prepare()?;
            let id = new.id.clone();
            // A client of a running engine with room for a turn takes the first turn along,
            // and the engine runs it at once instead of fetching it.
            let store = &client.store;
            let room = client
                .room_for_a_turn()
                .filter(|(turns, _)| turns.serves(&new.queue, &new.name));
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
                CreateOutcome::Existing(_) if if_exists == IfExists::Fail => {
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

impl Client {
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
            delay: None,
            options: InstanceOptions::default(),
        }
    }

    /// Starts many instances in one write: every start is checked first (an unknown
    /// workflow, an input that did not encode or an invalid id fails the call before anything
    /// is written), then the store creates them together, in one transaction on SQLite and in
    /// shared statements of up to 128 on PostgreSQL, so a batch costs about one commit where a
    /// loop of awaited starts costs one each. The handles come back in the order given.
    ///
    /// Each start keeps its own options (id, queue, priority, delay, ...); all of them are
    /// written through this client's store, whichever client built them. A start whose id is
    /// taken returns the existing instance (`existed`), as [`Client::start`] does; if one that
    /// asked for [`IfExists::Fail`] finds its id taken, the call returns
    /// [`ClientError::AlreadyExists`] for it, and the batch's other instances were created
    /// (starting is idempotent, so the same batch can be sent again).
    ///
    /// ```no_run
    /// # use duraflow_runtime::Client;
    /// # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let orders = [17_u64, 18, 19];
    /// let runs = client
    ///     .start_many(
    ///         orders
    ///             .iter()
    ///             .map(|n| client.start("ship", n).id(format!("order-{n}"))),
    ///     )
    ///     .await?;
    /// assert_eq!(runs.len(), 3);
    /// # Ok(()) }
    /// ```
    pub async fn start_many<'a>(
        &'a self,
        starts: impl IntoIterator<Item = Start<'a>>,
    ) -> Result<Vec<RunHandle>, ClientError> {
        let mut batch = Vec::new();
        let mut policies = Vec::new();
        for start in starts {
            let (_, new, if_exists) = start.prepare()?;
            batch.push(new);
            policies.push(if_exists);
        }
        let ids: Vec<String> = batch.iter().map(|new| new.id.clone()).collect();
        // A client of a running engine takes along the first turns of the instances that
        // engine serves, as many as it has room for, and the engine runs them at once.
        let local = self.local.as_ref().and_then(|local| local.upgrade());
        let mut permits = Vec::new();
        let mut claim = vec![false; batch.len()];
        if let Some(turns) = &local {
            for (i, new) in batch.iter().enumerate() {
                if !turns.serves(&new.queue, &new.name) {
                    continue;
                }
                match turns.room_for_a_turn() {
                    Some(permit) => {
                        permits.push(permit);
                        claim[i] = true;
                    }
                    None => break,
                }
            }
        }
        let outcomes = match &local {
            Some(turns) if !permits.is_empty() => {
                let created = self
                    .store
                    .create_instances_claiming(batch, claim, turns.turn_lease())
                    .await?;
                let mut outcomes = Vec::with_capacity(created.len());
                for (outcome, turn) in created {
                    if let (Some(work), Some(permit)) = (turn, permits.pop()) {
                        turns.clone().spawn_turn(work, permit);
                    }
                    outcomes.push(outcome);
                }
                outcomes
            }
            _ => self.store.create_instances(batch).await?,
        };
        let mut handles = Vec::with_capacity(ids.len());
        let mut refused = None;
        for ((id, outcome), if_exists) in ids.into_iter().zip(outcomes).zip(policies) {
            let existed = matches!(outcome, CreateOutcome::Existing(_));
            if existed && if_exists == IfExists::Fail && refused.is_none() {
                refused = Some(id.clone());
            }
            handles.push(RunHandle { id, existed });
        }
        match refused {
            Some(id) => Err(ClientError::AlreadyExists(id)),
            None => Ok(handles),
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
        let start = self.start(W::NAME, input);
        TypedStart {
            start: match W::QUEUE {
                Some(queue) => start.queue(queue),
                None => start,
            },
            _workflow: PhantomData,
        }
    }
}
