//! Which workflows the server may start: those an engine has announced on the queue (the
//! store's registry, `duraflow_store::registry`). The server runs no workflow code, so the
//! registry is how it knows a name; a start of a name no engine serves on the queue would
//! otherwise wait, pending, for an engine that never comes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use duraflow::{Client, RegisteredKind};
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;

/// Checks that some engine serves workflow `name` on `queue`: 404 `workflow_not_found`
/// otherwise, naming the queues it is served on, or the workflows served on this queue.
pub(crate) async fn check_served(client: &Client, name: &str, queue: &str) -> Result<(), ApiError> {
    let workflows: Vec<_> = client
        .registrations()
        .await?
        .into_iter()
        .map(|r| r.registration)
        .filter(|r| r.kind == RegisteredKind::Workflow)
        .collect();
    if workflows.iter().any(|r| r.name == name && r.queue == queue) {
        return Ok(());
    }
    let elsewhere: Vec<&str> = workflows
        .iter()
        .filter(|r| r.name == name)
        .map(|r| r.queue.as_str())
        .collect();
    let message = if elsewhere.is_empty() {
        let here: Vec<&str> = workflows
            .iter()
            .filter(|r| r.queue == queue)
            .map(|r| r.name.as_str())
            .collect();
        format!(
            "no engine has registered a workflow named {name:?} on queue {queue:?} (workflows \
             served there: {}); check the name, or start an engine that registers it \
             (GET /v1/workflows lists what engines serve)",
            if here.is_empty() {
                "none".to_owned()
            } else {
                here.join(", ")
            }
        )
    } else {
        format!(
            "workflow {name:?} is served on queue(s) {}, not on {queue:?}; pass \"queue\" in \
             the start request",
            elsewhere.join(", ")
        )
    };
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "workflow_not_found",
        message,
    ))
}

/// `GET /v1/workflows`: what engines have announced, workflows first.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let registrations = state.client.registrations().await?;
    Ok(Json(json!({ "registrations": registrations })))
}
