//! The worker protocol: workers in other languages claim activity tasks on a queue over HTTP,
//! heartbeat, and complete, fail or hand back each one with the lease token of its claim
//! (`docs/WORKER_PROTOCOL.md`).
//!
//! The server is the worker's engine in all but running the code: it leases tasks from the
//! store with the same fencing, refuses to hand out a task that must not run, and turns a
//! failure into a retry or a final failure with the runtime's own decisions
//! (`duraflow::crates::runtime::outcome`), so a task behaves the same whichever language runs
//! it. What it needs of a claim to decide (the task's retry policy and deadlines) it keeps in
//! memory ([`Leases`]) until the attempt ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use duraflow::crates::runtime::outcome::{self, AttemptOutcome};
use duraflow::crates::runtime::{BatchWrite, Batcher};
use duraflow::crates::store::{
    Completed, LeaseToken, OpResult, TaskCompletion, TaskId, TaskRelease, TaskWork,
};
use duraflow::{
    ActivityError, FetchFilter, Payload, RegisteredKind, Registration, Store, StoreError, Timestamp,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{json_error, ApiError};
use super::AppState;

/// The longest a claim may wait for tasks.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);
/// The most tasks one claim may take.
pub(crate) const MAX_CLAIM: u32 = 100;
/// The lease a claim takes when it asks for none.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The shortest and longest lease a claim may ask for.
const LEASE_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(600));
/// How often the activity names a worker claims for are announced again.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);

/// What the server remembers of the attempts it leased: what deciding their failures needs.
/// An entry lives until its attempt reports, or until a claim finds its lease long expired.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    attempts: Mutex<HashMap<i64, Leased>>,
    announced: Mutex<HashMap<(String, String), Instant>>,
}

#[derive(Clone, Debug)]
struct Leased {
    work: TaskWork,
    /// How long each heartbeat extends the lease.
    lease: Duration,
    /// When the attempt runs out of time (its timeout, or the schedule-to-close deadline).
    deadline: Option<Timestamp>,
    /// Whether `deadline` is the schedule-to-close one.
    closes: bool,
    started: Timestamp,
}

impl Leases {
    fn get(&self, id: i64, token: LeaseToken) -> Option<Leased> {
        let attempts = self.attempts.lock().ok()?;
        attempts.get(&id).filter(|l| l.work.token == token).cloned()
    }

    fn forget(&self, id: i64) {
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.remove(&id);
        }
    }

    fn remember(&self, leased: Vec<Leased>, now: Timestamp) {
        if leased.is_empty() {
            return;
        }
        if let Ok(mut attempts) = self.attempts.lock() {
            // A lease expired a while ago belongs to a worker that is gone.
            attempts.retain(|_, l| l.work.lease_until.plus(Duration::from_secs(60)) > now);
            for l in leased {
                attempts.insert(l.work.id.0, l);
            }
        }
    }

    /// Records that a heartbeat extended the lease of task `id` (under `token`) to `until`, so
    /// that a task heartbeating past its first lease is not forgotten as gone.
    fn extend(&self, id: i64, token: LeaseToken, until: Timestamp) {
        if let Ok(mut attempts) = self.attempts.lock() {
            if let Some(l) = attempts.get_mut(&id).filter(|l| l.work.token == token) {
                l.work.lease_until = until;
            }
        }
    }

    /// The names of `registrations` not announced within [`ANNOUNCE_EVERY`], marked announced.
    fn due_announcements(&self, registrations: Vec<Registration>) -> Vec<Registration> {
        let Ok(mut announced) = self.announced.lock() else {
            return registrations;
        };
        let now = Instant::now();
        registrations
            .into_iter()
            .filter(|r| {
                let key = (r.queue.clone(), r.name.clone());
                match announced.get(&key) {
                    Some(at) if now.duration_since(*at) < ANNOUNCE_EVERY => false,
                    _ => {
                        announced.insert(key, now);
                        true
                    }
                }
            })
            .collect()
    }
}

/// The body of `POST /v1/workers/{queue}/claim`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimRequest {
    /// Who claims, for diagnostics.
    worker: String,
    /// The activity names the worker runs.
    activities: Vec<String>,
    #[serde(default = "one")]
    max: u32,
    #[serde(default)]
    wait_ms: u64,
    lease_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// `POST /v1/workers/{queue}/claim`: leases up to `max` tasks of the named activities on the
/// queue, waiting up to `wait_ms` for one to become visible.
pub(crate) async fn claim(
    State(state): State<AppState>,
    queue: Result<Path<String>, PathRejection>,
    body: Result<Json<ClaimRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(queue) = queue.map_err(|e| ApiError::invalid(e.body_text()))?;
    let Json(request) = body.map_err(|e| json_error(&e, state.max_body))?;
    let (wait, lease) = check_claim(&request)?;
    let registrations: Vec<Registration> = request
        .activities
        .iter()
        .map(|name| Registration::new(RegisteredKind::Activity, queue.clone(), name.clone()))
        .collect();
    duraflow::crates::store::validate_registrations(&registrations)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let due = state.leases.due_announcements(registrations);
    if !due.is_empty() {
        if let Err(e) = state.store.announce(due, Timestamp::now_system()).await {
            state.leases.announced.lock().map(|mut a| a.clear()).ok();
            return Err(ApiError::store(e));
        }
    }
    let filter = FetchFilter::queues([queue.clone()]).names(request.activities.iter().cloned());
    let until = tokio::time::Instant::now() + wait;
    loop {
        let notified = state.store.notifier().map(|n| n.tasks.notified());
        tokio::pin!(notified);
        if let Some(n) = notified.as_mut().as_pin_mut() {
            n.enable();
        }
        let now = Timestamp::now_system();
        let max = request.max as usize;
        let work = state
            .store
            .fetch_tasks(&filter, now, max, lease)
            .await
            .map_err(ApiError::store)?;
        let tasks = runnable(&state, work, lease, now).await?;
        if !tasks.is_empty() {
            return Ok(Json(json!({ "tasks": tasks })));
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(Json(json!({ "tasks": [] })));
        }
        // A look at the store every `--claim-poll-ms`, sooner on a wakeup: the store's notifier
        // hears other processes' commits (PostgreSQL's notifications; SQLite's writer looks
        // for them every few milliseconds while the file is shared).
        let nap = tokio::time::sleep(left.min(state.claim_poll));
        match notified.as_pin_mut() {
            Some(n) => {
                tokio::select! {
                    () = n => {}
                    () = nap => {}
                }
            }
            None => nap.await,
        }
    }
}

fn check_claim(request: &ClaimRequest) -> Result<(Duration, Duration), ApiError> {
    if request.worker.is_empty() || request.worker.len() > 200 {
        return Err(ApiError::invalid(
            "\"worker\" must name the worker in 1 to 200 bytes (such as host-pid)",
        ));
    }
    if request.activities.is_empty() {
        return Err(ApiError::invalid(
            "\"activities\" must list at least one activity name the worker runs",
        ));
    }
    if request.max == 0 || request.max > MAX_CLAIM {
        return Err(ApiError::invalid(format!(
            "\"max\" must be 1 to {MAX_CLAIM}, not {}",
            request.max
        )));
    }
    let wait = Duration::from_millis(request.wait_ms);
    if wait > MAX_WAIT {
        return Err(ApiError::invalid(format!(
            "\"wait_ms\" must be at most {}, not {}; claim again after an empty answer",
            MAX_WAIT.as_millis(),
            request.wait_ms
        )));
    }
    let lease = match request.lease_ms {
        Some(ms) => check_lease(ms)?,
        None => DEFAULT_LEASE,
    };
    Ok((wait, lease))
}

/// A `lease_ms` within [`LEASE_RANGE`], as a duration.
fn check_lease(ms: u64) -> Result<Duration, ApiError> {
    let lease = Duration::from_millis(ms);
    if lease < LEASE_RANGE.0 || lease > LEASE_RANGE.1 {
        return Err(ApiError::invalid(format!(
            "\"lease_ms\" must be {} to {}, not {ms}",
            LEASE_RANGE.0.as_millis(),
            LEASE_RANGE.1.as_millis()
        )));
    }
    Ok(lease)
}

/// The leased tasks that may run, as JSON; the others are completed with their failure, as
/// the engine's worker does (see `outcome::refuse_to_run`). A task with a heartbeat timeout
/// shorter than the claim's lease gets its lease shortened to it, so that a worker that stops
/// heartbeating loses the task after that timeout.
async fn runnable(
    state: &AppState,
    work: Vec<TaskWork>,
    lease: Duration,
    now: Timestamp,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    let mut leased = Vec::new();
    for mut task in work {
        if let Some(failure) = outcome::refuse_to_run(&task, now, lease) {
            let _ = finish(state, &task.id, task.token, OpResult::Err(failure)).await;
            continue;
        }
        let lease = task
            .options
            .heartbeat_timeout
            .map_or(lease, |t| t.min(lease).max(Duration::from_millis(100)));
        if lease < task.lease_until.since(now) {
            match state
                .store
                .renew_task(task.id, task.token, now, lease, None)
                .await
            {
                Ok(until) => task.lease_until = until,
                Err(_) => continue,
            }
        }
        let (deadline, close_by) = outcome::attempt_deadlines(&task, now);
        out.push(task_json(&task, lease, deadline)?);
        leased.push(Leased {
            lease,
            deadline,
            closes: deadline.is_some() && deadline == close_by,
            started: now,
            work: task,
        });
    }
    state.leases.remember(leased, now);
    Ok(out)
}

fn task_json(
    task: &TaskWork,
    lease: Duration,
    deadline: Option<Timestamp>,
) -> Result<Value, ApiError> {
    let input = json_of(&task.input)?;
    let details = task.heartbeat_details.as_ref().map(json_of).transpose()?;
    Ok(json!({
        "id": task.id.0,
        "token": task.token.0.to_string(),
        "name": task.name,
        "instance_id": task.instance_id,
        "execution": task.execution,
        "op": task.op.to_string(),
        "attempt": task.attempt,
        "max_attempts": task.options.retry.max_attempts,
        "input": input,
        "heartbeat_details": details,
        "last_failure": task.last_failure,
        "scheduled_at": task.scheduled_at.as_millis(),
        "lease_until": task.lease_until.as_millis(),
        "lease_ms": u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        "deadline": deadline.map(Timestamp::as_millis),
    }))
}

fn json_of(payload: &Payload) -> Result<Value, ApiError> {
    serde_json::from_str(payload.as_json())
        .map_err(|e| ApiError::store(format!("a stored payload is not JSON: {e}")))
}

/// The path of the task routes: the task's id.
fn task_id(path: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    path.map(|Path(id)| id).map_err(|e| {
        ApiError::invalid(format!(
            "the task id in the path must be the number a claim returned ({})",
            e.body_text()
        ))
    })
}

fn lease_token(token: &str) -> Result<LeaseToken, ApiError> {
    token.parse::<i64>().map(LeaseToken).map_err(|_| {
        ApiError::invalid(format!(
            "\"token\" must be the lease token a claim returned, not {token:?}"
        ))
    })
}

/// A report's body: it carries the claim's lease token.
pub(crate) trait Report {
    /// The lease token, as the claim gave it.
    fn token(&self) -> &str;
}

/// The task id, the lease token and the body of a report, or the 400 (413, 415) it deserves.
fn report<T: Report>(
    state: &AppState,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<T>, JsonRejection>,
) -> Result<(i64, LeaseToken, T), ApiError> {
    let id = task_id(path)?;
    let Json(request) = body.map_err(|e| json_error(&e, state.max_body))?;
    let token = lease_token(request.token())?;
    Ok((id, token, request))
}

/// The task is not known to the store.
fn task_not_found(id: i64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "task_not_found",
        format!(
            "no task {id}: it never existed, or it was deleted because its instance finished \
             or was cancelled; stop working on it"
        ),
    )
}

/// What a write with a task's lease token answers when the store refuses it.
fn lease_error(id: i64, e: StoreError) -> ApiError {
    match e {
        StoreError::LeaseLost { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "lease_lost",
            format!(
                "the lease token is not task {id}'s current lease: the lease expired and the \
                 task was claimed again (or it was already reported); this result was not \
                 recorded, stop working on the task"
            ),
        ),
        StoreError::NotFound(_) => task_not_found(id),
        StoreError::Invalid(message) => ApiError::invalid(message),
        other => ApiError::store(other),
    }
}

async fn finish(
    state: &AppState,
    id: &TaskId,
    token: LeaseToken,
    result: OpResult,
) -> Result<(), ApiError> {
    let completion = TaskCompletion {
        id: *id,
        token,
        result,
        claim_turn: None,
    };
    let written = state.completer.submit(completion).await;
    if !matches!(&written, Err(e) if e.is_transient()) {
        state.leases.forget(id.0);
    }
    written.map(|_| ()).map_err(|e| lease_error(id.0, e))
}

/// Applies the decision about a failed attempt: a retry releases the task, a final failure
/// completes it. The answer says which.
async fn apply(
    state: &AppState,
    id: i64,
    token: LeaseToken,
    decided: AttemptOutcome,
) -> Result<Value, ApiError> {
    match decided {
        AttemptOutcome::Retry(release) => {
            let retry_at = match &release {
                TaskRelease::Retry { visible_at, .. } => Some(visible_at.as_millis()),
                TaskRelease::HandBack => None,
            };
            state
                .store
                .release_task(TaskId(id), token, release)
                .await
                .map_err(|e| lease_error(id, e))?;
            state.leases.forget(id);
            Ok(json!({ "outcome": "retry", "retry_at": retry_at }))
        }
        AttemptOutcome::Fail(failure) => {
            finish(state, &TaskId(id), token, OpResult::Err(failure)).await?;
            Ok(json!({ "outcome": "failed" }))
        }
    }
}

/// The attempt's deadline has passed at `now`: the decision its timeout makes.
fn timed_out(leased: &Leased, now: Timestamp) -> Option<AttemptOutcome> {
    let deadline = leased.deadline?;
    (now >= deadline).then(|| {
        outcome::after_timeout(
            &leased.work,
            now,
            deadline.since(leased.started),
            leased.closes,
            fastrand::f64(),
        )
    })
}

/// The body of `POST /v1/tasks/{id}/heartbeat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatRequest {
    token: String,
    details: Option<Value>,
    /// The lease to extend to (the claim's `lease_ms`); the claim's lease when this server
    /// remembers it, else the default, when not given.
    lease_ms: Option<u64>,
}

impl Report for HeartbeatRequest {
    fn token(&self) -> &str {
        &self.token
    }
}

/// `POST /v1/tasks/{id}/heartbeat`: extends the lease and records the details; says when the
/// attempt should stop (its task was cancelled with its instance, or it ran out of time).
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<HeartbeatRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, token, request) = report(&state, path, body)?;
    let details = request
        .details
        .as_ref()
        .map(Payload::encode)
        .transpose()
        .map_err(|e| ApiError::invalid(format!("\"details\" cannot be stored: {e}")))?;
    let leased = state.leases.get(id, token);
    let now = Timestamp::now_system();
    if let Some(decided) = leased.as_ref().and_then(|l| timed_out(l, now)) {
        apply(&state, id, token, decided).await?;
        return Ok(Json(json!({ "cancelled": true, "reason": "timed_out" })));
    }
    let lease = match request.lease_ms {
        Some(ms) => check_lease(ms)?,
        None => leased.as_ref().map_or(DEFAULT_LEASE, |l| l.lease),
    };
    match state
        .store
        .renew_task(TaskId(id), token, now, lease, details)
        .await
    {
        Ok(until) => {
            state.leases.extend(id, token, until);
            Ok(Json(json!({
            "cancelled": false,
                "lease_until": until.as_millis(),
            })))
        }
        // A task this server leased under this token is gone: its instance finished or was
        // cancelled.
        Err(StoreError::NotFound(_)) if leased.is_some() => {
            state.leases.forget(id);
            Ok(Json(
                json!({ "cancelled": true, "reason": "instance_finished" }),
            ))
        }
        Err(e) => Err(lease_error(id, e)),
    }
}

/// The body of `POST /v1/tasks/{id}/complete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteRequest {
    token: String,
    #[serde(default)]
    output: Value,
}

impl Report for CompleteRequest {
    fn token(&self) -> &str {
        &self.token
    }
}

/// `POST /v1/tasks/{id}/complete`: records the activity's output, once; a stale token is
/// refused (409 `lease_lost`) and changes nothing.
pub(crate) async fn complete(
    State(state): State<AppState>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<CompleteRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, token, request) = report(&state, path, body)?;
    // An output that arrives after the attempt's deadline is not the result: the attempt
    // timed out, as it would have in the engine's own worker.
    let now = Timestamp::now_system();
    if let Some(decided) = state.leases.get(id, token).and_then(|l| timed_out(&l, now)) {
        let answer = apply(&state, id, token, decided).await?;
        return Ok(Json(json!({ "recorded": false, "timed_out": answer })));
    }
    let output = Payload::encode(&request.output)
        .map_err(|e| ApiError::invalid(format!("\"output\" cannot be stored: {e}")))?;
    finish(&state, &TaskId(id), token, OpResult::Ok(output)).await?;
    Ok(Json(json!({ "recorded": true })))
}

/// The body of `POST /v1/tasks/{id}/fail`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailRequest {
    token: String,
    message: String,
    #[serde(default = "yes")]
    retryable: bool,
    #[serde(rename = "type")]
    error_type: Option<String>,
    retry_after_ms: Option<u64>,
}

impl Report for FailRequest {
    fn token(&self) -> &str {
        &self.token
    }
}

fn yes() -> bool {
    true
}

/// `POST /v1/tasks/{id}/fail`: the attempt failed; the task's retry policy decides between
/// another attempt and a final failure, as for an activity in the engine.
pub(crate) async fn fail(
    State(state): State<AppState>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<FailRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, token, request) = report(&state, path, body)?;
    let mut error = if request.retryable {
        ActivityError::retryable(&request.message)
    } else {
        ActivityError::terminal(&request.message)
    };
    if let Some(code) = request.error_type {
        error = error.with_code(code);
    }
    if let Some(ms) = request.retry_after_ms {
        error = error.retry_after(Duration::from_millis(ms));
    }
    let Some(leased) = state.leases.get(id, token) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "lease_unknown",
            format!(
                "this server did not lease task {id} under that token (it was claimed from \
                 another server process, or this one restarted): its retry policy is not \
                 known here, so the failure is not recorded; the lease will expire and the \
                 task will be attempted again"
            ),
        ));
    };
    let now = Timestamp::now_system();
    let decided = timed_out(&leased, now).unwrap_or_else(|| {
        outcome::after_failure(&leased.work, now, &error, None, fastrand::f64())
    });
    Ok(Json(apply(&state, id, token, decided).await?))
}

/// The body of `POST /v1/tasks/{id}/release`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseRequest {
    token: String,
}

impl Report for ReleaseRequest {
    fn token(&self) -> &str {
        &self.token
    }
}

/// `POST /v1/tasks/{id}/release`: hands the task back without a result (a worker shutting
/// down): the attempt does not count and the task is visible again at once.
pub(crate) async fn release(
    State(state): State<AppState>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<ReleaseRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, token, _) = report(&state, path, body)?;
    state
        .store
        .release_task(TaskId(id), token, TaskRelease::HandBack)
        .await
        .map_err(|e| lease_error(id, e))?;
    state.leases.forget(id);
    Ok(Json(json!({ "released": true })))
}

/// Shared state for the worker routes.
pub(crate) fn leases() -> Arc<Leases> {
    Arc::new(Leases::default())
}

/// The most completions written together.
const COMPLETION_BATCH: usize = 128;

/// The writer of the workers' completions: the completions reported while one write is in
/// flight share the next (group commit, as the engine's own completions do), so a hundred
/// workers' reports are a few store writes rather than a hundred.
pub(crate) fn completer(store: Arc<dyn Store>) -> Batcher<TaskCompletion, Completed> {
    let write: BatchWrite<TaskCompletion, Completed> = Arc::new(move |batch| {
        let store = store.clone();
        Box::pin(async move {
            // The completions of workers feed no turn of this process: no filter, no claim.
            let filter = FetchFilter::queues(Vec::<String>::new());
            store
                .complete_tasks(&filter, Timestamp::now_system(), batch, None)
                .await
        })
    });
    Batcher::spawn(COMPLETION_BATCH, write).0
}
