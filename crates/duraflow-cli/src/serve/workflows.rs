//! Which workflows the server may start: those an engine has announced on the queue.

use duraflow::Client;

use super::error::ApiError;

/// Checks that some engine serves workflow `name` on `queue`.
pub(crate) async fn check_served(
    _client: &Client,
    _name: &str,
    _queue: &str,
) -> Result<(), ApiError> {
    Ok(())
}

/// `GET /v1/workflows`: what engines have announced.
pub(crate) async fn list(
    axum::extract::State(_state): axum::extract::State<super::AppState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    Ok(axum::Json(serde_json::json!({ "registrations": [] })))
}
