//! `GET /metrics`: the store's gauges (instances by status, messages, tasks, callbacks, and
//! each queue's depths) in the Prometheus text format, read at each scrape. The server runs no
//! engine, so the engine's own counters are served by the processes that run engines (see
//! docs/METRICS.md). Behind the same bearer token as `/v1` when one is set.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Router};

use super::auth::{self, Auth};
use super::error::ApiError;
use super::AppState;

/// The OpenMetrics text format `prometheus-client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `/metrics` route.
pub(crate) fn routes(state: AppState, auth: Auth) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route_layer(middleware::from_fn_with_state(auth, auth::require_token))
        .with_state(state)
}

async fn scrape(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = state.client.store_metrics().await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}
