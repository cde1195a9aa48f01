//! `duraflow serve`: the HTTP/JSON API over a store, and the dashboard.
//!
//! Routes (see `openapi.rs` for the full description, served at `/openapi.json`):
//!
//! - `/healthz`, `/openapi.json`, and the dashboard at `/` (`dashboard.rs`) need no token;
//! - everything under `/v1` needs `Authorization: Bearer <token>` when the server has one
//!   (`auth.rs`), which it must whenever it listens on an address that is not loopback.
//!
//! The router is assembled in [`router`] from one `Router` per concern (`/metrics` is
//! `metrics.rs`'s). The worker protocol (`/v1/workers/{queue}/claim` and
//! `/v1/tasks/{id}/...`, `workers.rs`) lets workers in other languages run activity tasks.

mod auth;
mod callbacks;
mod dashboard;
mod error;
mod instances;
mod metrics;
mod openapi;
mod timeline;
mod workers;
mod workflows;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use duraflow::crates::runtime::Batcher;
use duraflow::crates::store::{Completed, TaskCompletion};
use duraflow::{Client, Store};

use self::auth::Auth;
use self::error::ApiError;
use crate::error::CliError;

/// The default limit on a request body, in bytes.
pub(crate) const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// What the API handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    /// A client on the store (no engine: the server runs no workflow code).
    pub(crate) client: Client,
    /// The store itself, for the worker protocol (which leases tasks as an engine does).
    pub(crate) store: Arc<dyn Store>,
    /// The attempts leased to workers in other languages.
    pub(crate) leases: Arc<workers::Leases>,
    /// The writer of those workers' completions, which group-commits them.
    pub(crate) completer: Batcher<TaskCompletion, Completed>,
    /// The body limit, for the messages that name it.
    pub(crate) max_body: usize,
    /// How often a waiting claim looks at the store.
    pub(crate) claim_poll: std::time::Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// How `serve` was asked to run.
#[derive(Debug)]
pub(crate) struct ServeOptions {
    /// Where to listen (`host:port`).
    pub(crate) listen: String,
    /// The token requests must present, if any.
    pub(crate) token: Option<String>,
    /// The body limit in bytes.
    pub(crate) max_body: usize,
    /// How often a waiting claim looks at the store.
    pub(crate) claim_poll: std::time::Duration,
}

/// The token from `--token`, else `DURAFLOW_TOKEN`; an empty one is refused.
pub(crate) fn token(flag: Option<String>) -> Result<Option<String>, CliError> {
    let (token, from) = match flag {
        Some(t) => (t, "--token"),
        None => match std::env::var("DURAFLOW_TOKEN") {
            Ok(t) => (t, "DURAFLOW_TOKEN"),
            Err(_) => return Ok(None),
        },
    };
    if token.trim().is_empty() {
        return Err(CliError::usage(format!(
            "{from} is empty; give a token (e.g. the output of `openssl rand -hex 32`), or \
             none at all to serve on loopback only"
        )));
    }
    Ok(Some(token))
}

/// The whole application.
pub(crate) fn router(state: AppState, auth: Auth) -> Router {
    let api = Router::new()
        .route("/instances", get(instances::list).post(instances::start))
        .route(
            "/instances/{id}",
            get(instances::status).delete(instances::purge),
        )
        .route("/instances/{id}/history", get(instances::history))
        .route("/instances/{id}/timeline", get(instances::timeline_of))
        .route("/instances/{id}/events/{name}", post(instances::raise))
        .route("/instances/{id}/cancel", post(instances::cancel))
        .route("/instances/{id}/terminate", post(instances::terminate))
        .route("/stats", get(instances::stats))
        .route("/workflows", get(workflows::list))
        .route("/callbacks/{token}/complete", post(callbacks::complete))
        .route("/callbacks/{token}/fail", post(callbacks::fail))
        .route("/workers/{queue}/claim", post(workers::claim))
        .route("/tasks/{id}/heartbeat", post(workers::heartbeat))
        .route("/tasks/{id}/complete", post(workers::complete))
        .route("/tasks/{id}/fail", post(workers::fail))
        .route("/tasks/{id}/release", post(workers::release))
        .route_layer(middleware::from_fn_with_state(
            auth.clone(),
            auth::require_token,
        ))
        .with_state(state.clone());
    Router::new()
        .nest("/v1", api)
        .merge(metrics::routes(state.clone(), auth))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "ok": true })) }),
        )
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .merge(dashboard::routes())
        .fallback(|request: Request| async move { ApiError::no_route(request.uri().path()) })
        .method_not_allowed_fallback(|request: Request| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "{} is not allowed on {}; GET /openapi.json lists the methods of each route",
                    request.method(),
                    request.uri().path()
                ),
            )
            .into_response()
        })
        .layer(DefaultBodyLimit::max(state.max_body))
}

/// Runs the server until Ctrl-C or SIGTERM.
pub(crate) async fn serve(store: Arc<dyn Store>, options: ServeOptions) -> Result<(), CliError> {
    let auth = Auth::new(options.token);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&options.listen)
        .await
        .map_err(|e| {
            CliError::usage(format!(
                "--listen {:?} is not an address to listen on ({e}); give HOST:PORT, e.g. \
                 127.0.0.1:8080",
                options.listen
            ))
        })?
        .collect();
    auth::check_exposure(&addrs, &auth).map_err(CliError::usage)?;
    let listener = tokio::net::TcpListener::bind(addrs.as_slice())
        .await
        .map_err(|e| {
            CliError::operational(format!(
                "cannot listen on {}: {e}; choose another port or stop what uses it",
                options.listen
            ))
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::operational(format!("cannot read the bound address: {e}")))?;
    let state = AppState {
        // A long poll of `GET /v1/instances/{id}` wakes on the store's notifications for its
        // instance, and looks at the store at least as often as a claim does besides, in case
        // one is missed (a process of an earlier build sends none the store can read).
        client: Client::new(store.clone()).with_wait_poll(options.claim_poll),
        completer: workers::completer(store.clone()),
        store,
        leases: workers::leases(),
        max_body: options.max_body,
        claim_poll: options.claim_poll,
    };
    let app = router(state, auth.clone());
    // The line tests and scripts read to find the port.
    eprintln!(
        "duraflow serve: listening on http://{bound} (dashboard at http://{bound}/, API under \
         /v1, token {})",
        if auth.required() {
            "required"
        } else {
            "not required"
        }
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| CliError::operational(format!("the server failed: {e}")))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
