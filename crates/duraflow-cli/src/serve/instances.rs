//! The instance routes: start, list, status, history, timeline, raise, cancel, terminate,
//! purge, and the counts by status.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use duraflow::{ClientError, EventKind, IfExists, InstanceStatus, ListFilter};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{body_error, json_error, query_error, ApiError};
use super::timeline::timeline;
use super::workflows;
use super::AppState;

/// The body of `POST /v1/instances`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRequest {
    workflow: String,
    #[serde(default)]
    input: Value,
    id: Option<String>,
    queue: Option<String>,
    #[serde(default)]
    if_exists: IfExistsField,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum IfExistsField {
    #[default]
    ReturnExisting,
    Fail,
}

/// `POST /v1/instances`: starts a workflow; 201 when created, 200 when the id existed.
pub(crate) async fn start(
    State(state): State<AppState>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| json_error(&e, state.max_body))?;
    let queue = request
        .queue
        .clone()
        .unwrap_or_else(|| duraflow::DEFAULT_QUEUE.to_owned());
    workflows::check_served(&state.client, &request.workflow, &queue).await?;
    let mut start = state
        .client
        .start(&request.workflow, &request.input)
        .queue(queue)
        .if_exists(match request.if_exists {
            IfExistsField::ReturnExisting => IfExists::ReturnExisting,
            IfExistsField::Fail => IfExists::Fail,
        });
    if let Some(id) = request.id {
        start = start.id(id);
    }
    let run = start.await?;
    let status = if run.existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({ "id": run.id, "existed": run.existed })),
    )
        .into_response())
}

/// The query of `GET /v1/instances`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Statuses, comma-separated.
    status: Option<String>,
    name: Option<String>,
    queue: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/instances`: a page of instances, ordered by id.
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| query_error(&e))?;
    let mut statuses = Vec::new();
    for s in query.status.iter().flat_map(|s| s.split(',')) {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        statuses.push(s.parse::<InstanceStatus>().map_err(|_| {
            ApiError::invalid(format!(
                "unknown status {s:?}: use pending, running, completed, failed, cancelled or \
                 terminated, several separated by commas"
            ))
        })?);
    }
    let empty_is_none = |s: Option<String>| s.filter(|s| !s.is_empty());
    let page = state
        .client
        .list(ListFilter {
            statuses,
            name: empty_is_none(query.name),
            queue: empty_is_none(query.queue),
            limit: query.limit.unwrap_or(100),
            after: empty_is_none(query.cursor),
            ..ListFilter::default()
        })
        .await?;
    Ok(Json(
        json!({ "instances": page.instances, "next": page.next }),
    ))
}

/// The query of `GET /v1/instances/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusQuery {
    /// Wait up to this many milliseconds for the instance to finish before answering.
    wait_ms: Option<u64>,
}

/// The longest `wait_ms` of `GET /v1/instances/{id}`.
pub(crate) const MAX_WAIT_MS: u64 = 60_000;

/// `GET /v1/instances/{id}`: its status, input, output or failure, version, journal length
/// and last event time, parent and children. With `wait_ms`, it first waits up to that long
/// for the instance to finish, and answers as soon as it has (a long poll: a client waiting
/// for a result makes one request where it polled every few milliseconds).
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| query_error(&e))?;
    if let Some(ms) = query.wait_ms {
        if ms > MAX_WAIT_MS {
            return Err(ApiError::invalid(format!(
                "wait_ms is {ms}, more than a request may wait ({MAX_WAIT_MS}); ask for at \
                 most {MAX_WAIT_MS}, and ask again while the answer's status is not finished"
            )));
        }
        match state
            .client
            .wait_finished(&id, Some(std::time::Duration::from_millis(ms)))
            .await
        {
            Ok(_) | Err(ClientError::Timeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let info = state.client.describe(&id).await?;
    let journal = state.client.history(&id, None).await?;
    let children: Vec<Value> = journal
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::ChildStarted {
                instance_id,
                name,
                detached,
                ..
            } => Some(json!({ "id": instance_id, "name": name, "detached": detached })),
            _ => None,
        })
        .collect();
    let waiting = info.waiting_for();
    let mut value = serde_json::to_value(&info)
        .map_err(|e| ApiError::store(format!("cannot write the instance as JSON: {e}")))?;
    if let Value::Object(fields) = &mut value {
        fields.insert("children".to_owned(), Value::Array(children));
        fields.insert("waiting_for".to_owned(), json!(waiting));
    }
    Ok(Json(value))
}

/// The query of the history and timeline routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecutionQuery {
    execution: Option<u32>,
}

/// An execution's journal, with a clear error for an execution that does not exist.
async fn journal(
    state: &AppState,
    id: &str,
    query: Result<Query<ExecutionQuery>, QueryRejection>,
) -> Result<(u32, Vec<duraflow::Event>), ApiError> {
    let Query(query) = query.map_err(|e| query_error(&e))?;
    let info = state.client.status(id).await?;
    let execution = query.execution.unwrap_or(info.execution);
    match state.client.history(id, Some(execution)).await {
        Ok(events) => Ok((execution, events)),
        Err(ClientError::NotFound(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "execution_not_found",
            format!(
                "instance {id:?} has no execution {execution}: it has executions 1 to {}",
                info.execution
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/instances/{id}/history`: an execution's journal, each event with its index.
pub(crate) async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<ExecutionQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (execution, events) = journal(&state, &id, query).await?;
    let events = crate::output::events_json(&events);
    Ok(Json(
        json!({ "id": id, "execution": execution, "events": events }),
    ))
}

/// `GET /v1/instances/{id}/timeline`: an execution's journal as operations.
pub(crate) async fn timeline_of(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<ExecutionQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (execution, events) = journal(&state, &id, query).await?;
    let timeline = timeline(&events);
    Ok(Json(json!({
        "id": id,
        "execution": execution,
        "operations": timeline.operations,
        "marks": timeline.marks,
    })))
}

/// `POST /v1/instances/{id}/events/{name}`: raises an event; the body is its data (any JSON;
/// an empty body is `null`).
pub(crate) async fn raise(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| body_error(&e, state.max_body))?;
    let data: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!(
                    "the event data is not valid JSON ({e}); send any JSON value, e.g. \
                     {{\"approved\": true}}, or an empty body for null"
                ),
            )
        })?
    };
    state.client.raise_event(&id, &name, &data).await?;
    Ok(accepted(json!({ "id": id, "raised": name })))
}

/// The optional body of cancel and terminate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

fn reason(
    body: Result<Bytes, BytesRejection>,
    state: &AppState,
    default: &str,
) -> Result<String, ApiError> {
    let body = body.map_err(|e| body_error(&e, state.max_body))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(default.to_owned());
    }
    let parsed: ReasonBody = serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "malformed_json"
        } else {
            "invalid_request"
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("the body must be empty or {{\"reason\": \"...\"}} ({e})"),
        )
    })?;
    Ok(parsed.reason.unwrap_or_else(|| default.to_owned()))
}

fn accepted(body: Value) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Whether an end request cancels or terminates.
#[derive(Clone, Copy)]
enum End {
    Cancel,
    Terminate,
}

/// Sends a cancellation or a termination, with the body's reason or the default one.
async fn end(
    state: AppState,
    id: String,
    body: Result<Bytes, BytesRejection>,
    how: End,
) -> Result<Response, ApiError> {
    let (default, field) = match how {
        End::Cancel => ("cancelled through duraflow serve", "cancel_requested"),
        End::Terminate => ("terminated through duraflow serve", "terminate_requested"),
    };
    let reason = reason(body, &state, default)?;
    match how {
        End::Cancel => state.client.cancel(&id, &reason).await?,
        End::Terminate => state.client.terminate(&id, &reason).await?,
    }
    Ok(accepted(json!({ "id": id, field: true, "reason": reason })))
}

/// `POST /v1/instances/{id}/cancel`: requests cancellation (body `{"reason": ..}`, optional).
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    end(state, id, body, End::Cancel).await
}

/// `POST /v1/instances/{id}/terminate`: terminates without running more of its code.
pub(crate) async fn terminate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    end(state, id, body, End::Terminate).await
}

/// `DELETE /v1/instances/{id}`: purges a finished instance and its history.
pub(crate) async fn purge(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.client.purge(&id).await?;
    Ok(Json(json!({ "id": id, "purged": true })))
}

/// `GET /v1/stats`: how many instances there are in each status.
pub(crate) async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let counts = state.client.count_by_status().await?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let by_status: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(status, n)| (status.to_string(), json!(n)))
        .collect();
    Ok(Json(json!({ "instances": by_status, "total": total })))
}
