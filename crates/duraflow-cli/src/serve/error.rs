//! Errors of the HTTP API: a status, a stable code and a message that says what to do,
//! written as `{"error": {"code": "...", "message": "..."}}`.
//!
//! The codes are part of the API (clients branch on them; messages may change):
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `malformed_json` | the body is not JSON |
//! | 400 | `invalid_request` | the body or the query is JSON of the wrong shape, or a value is out of range |
//! | 401 | `unauthorized` | no bearer token, or the wrong one |
//! | 404 | `instance_not_found` | no instance with that id (or no such execution of it) |
//! | 404 | `workflow_not_found` | no engine has announced the workflow on that queue |
//! | 404 | `execution_not_found` | history of an execution the instance does not have |
//! | 404 | `task_not_found` | no activity task with that id (never created, or deleted with its finished instance) |
//! | 404 | `callback_not_found` | no open callback with that token |
//! | 404 | `route_not_found` | no such route |
//! | 405 | `method_not_allowed` | the route exists, the method does not |
//! | 409 | `instance_exists` | a start with `if_exists: "fail"` found the id taken |
//! | 409 | `instance_finished` | raise, cancel or terminate on a finished instance |
//! | 409 | `instance_running` | purge of an instance that has not finished |
//! | 409 | `lease_lost` | a task report with a lease token that is no longer the task's lease (nothing changes) |
//! | 409 | `lease_unknown` | a failure reported to a server process that did not lease the task |
//! | 409 | `callback_closed` | the callback was already completed, failed or timed out |
//! | 413 | `body_too_large` | the body is over the server's limit (`--max-body`) |
//! | 415 | `unsupported_media_type` | a JSON body without `Content-Type: application/json` |
//! | 503 | `store_unavailable` | the store failed; retry later |

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use duraflow::ClientError;
use serde_json::json;

/// An API error: what the response's status, code and message are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A request of the wrong shape (400 `invalid_request`).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// No instance with `id` (404 `instance_not_found`).
    pub(crate) fn instance_not_found(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "instance_not_found",
            format!("no instance with id {id:?}; GET /v1/instances lists the instances there are"),
        )
    }

    /// The token is missing or wrong (401 `unauthorized`).
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// The body is over the limit (413 `body_too_large`).
    pub(crate) fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is larger than this server's limit of {limit} bytes; send \
                 less, or start the server with a larger --max-body"
            ),
        )
    }

    /// No such route (404 `route_not_found`).
    pub(crate) fn no_route(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            format!("no route {path:?}; GET /openapi.json describes the routes there are"),
        )
    }

    /// The store failed (503 `store_unavailable`).
    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the store failed: {e}; check that the database is reachable and retry"),
        )
    }

    /// The body of a response with this error.
    pub(crate) fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"duraflow\""),
            );
        }
        response
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::NotFound(id) => ApiError::instance_not_found(&id),
            ClientError::AlreadyExists(id) => ApiError::new(
                StatusCode::CONFLICT,
                "instance_exists",
                format!(
                    "an instance with id {id:?} already exists; choose another id, or start \
                     with if_exists \"return_existing\" to get the existing one"
                ),
            ),
            ClientError::InstanceFinished { id, status } => ApiError::new(
                StatusCode::CONFLICT,
                "instance_finished",
                format!(
                    "instance {id:?} has already finished ({status}) and takes no more events, \
                     cancellations or terminations"
                ),
            ),
            ClientError::InstanceRunning(id) => ApiError::new(
                StatusCode::CONFLICT,
                "instance_running",
                format!(
                    "instance {id:?} has not finished and cannot be purged; cancel or \
                     terminate it first, or wait for it to finish"
                ),
            ),
            ClientError::Store(duraflow::StoreError::Invalid(message)) => {
                ApiError::invalid(message)
            }
            ClientError::Store(e) => ApiError::store(e),
            other => ApiError::invalid(other.to_string()),
        }
    }
}

/// A body that could not be read: over the limit (413) or cut off (400).
pub(crate) fn body_error(e: &BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(limit)
    } else {
        ApiError::invalid(format!("the request body could not be read: {e}"))
    }
}

/// A JSON body that could not be taken.
pub(crate) fn json_error(e: &JsonRejection, limit: usize) -> ApiError {
    match e {
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!(
                "the request body is not valid JSON ({}); send a JSON object",
                e.body_text()
            ),
        ),
        JsonRejection::JsonDataError(e) => ApiError::invalid(format!(
            "the request body does not have the expected fields ({}); GET /openapi.json \
             describes it",
            e.body_text()
        )),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with the header Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) => body_error(e, limit),
        other => ApiError::invalid(other.body_text()),
    }
}

/// A query string that could not be taken.
pub(crate) fn query_error(e: &QueryRejection) -> ApiError {
    ApiError::invalid(format!(
        "the query string is not valid ({}); GET /openapi.json describes the parameters",
        e.body_text()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_keep_their_codes() {
        let e = ApiError::from(ClientError::NotFound("x".into()));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::NOT_FOUND, "instance_not_found")
        );
        let e = ApiError::from(ClientError::InstanceRunning("x".into()));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::CONFLICT, "instance_running")
        );
        assert_eq!(e.body()["error"]["code"], "instance_running");
    }
}
