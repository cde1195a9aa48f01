//! The callback routes: an external party completes or fails the operation a workflow handed
//! it a token for (`ctx.callback(..)`), as `Client::complete_callback` and
//! `Client::fail_callback` do.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use duraflow::ClientError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{json_error, ApiError};
use super::AppState;

/// The body of `POST /v1/callbacks/{token}/complete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteRequest {
    #[serde(default)]
    value: Value,
}

/// The body of `POST /v1/callbacks/{token}/fail`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailRequest {
    #[serde(rename = "type")]
    error_type: String,
    message: String,
}

/// `POST /v1/callbacks/{token}/complete`: the waiting workflow receives `value`.
pub(crate) async fn complete(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Result<Json<CompleteRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body.map_err(|e| json_error(&e, state.max_body))?;
    let done = state.client.complete_callback(&token, &request.value).await;
    done.map_err(callback_error)?;
    Ok(Json(json!({ "resolved": true })))
}

/// `POST /v1/callbacks/{token}/fail`: the waiting workflow receives an application failure
/// with code `type` and `message`.
pub(crate) async fn fail(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Result<Json<FailRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body.map_err(|e| json_error(&e, state.max_body))?;
    let done = state
        .client
        .fail_callback(&token, &request.error_type, &request.message)
        .await;
    done.map_err(callback_error)?;
    Ok(Json(json!({ "resolved": true })))
}

fn callback_error(e: ClientError) -> ApiError {
    match e {
        ClientError::CallbackNotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            "callback_not_found",
            "no open callback has this token: it is unknown, or its workflow has finished",
        ),
        e @ ClientError::CallbackClosed { .. } => {
            ApiError::new(StatusCode::CONFLICT, "callback_closed", e.to_string())
        }
        other => ApiError::from(other),
    }
}
