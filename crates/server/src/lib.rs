//! The OpenAI-compatible HTTP API (chat, completions, models), health, Prometheus metrics and the
//! embedded web UI, over an engine handle. `app(state)` builds the router; `serve` runs it.
mod error;
mod handlers;
mod metrics;
mod types;
mod ui;

pub use error::ApiError;
pub use metrics::Metrics;

use autodidact_engine::{AdapterCache, EngineHandle};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// Largest request body accepted (a long chat history fits many times over).
pub const DEFAULT_BODY_LIMIT: usize = 4 << 20;

#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    /// The id clients pass as `model`.
    pub model_name: String,
    /// Required as `Authorization: Bearer …` on `/v1` routes when set.
    pub api_key: Option<String>,
    pub metrics: Arc<Metrics>,
    /// Unix seconds the server started (the model's `created`).
    pub started: u64,
    pub body_limit: usize,
    /// Where `BASE+NAME` adapters are found (and loaded on first use).
    pub adapters: Option<Arc<AdapterCache>>,
    /// Applied when a request names the plain base model.
    pub default_adapter: Option<String>,
}

impl AppState {
    pub fn new(engine: EngineHandle, model_name: String, api_key: Option<String>) -> Self {
        AppState {
            engine,
            model_name,
            api_key,
            metrics: Arc::new(Metrics::default()),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            body_limit: DEFAULT_BODY_LIMIT,
            adapters: None,
            default_adapter: None,
        }
    }
}

async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compare without an early exit, so response time says nothing about the key.
        let ok = given.is_some_and(|g| {
            g.len() == key.len()
                && g.bytes()
                    .zip(key.bytes())
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0
        });
        if !ok {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let r = next.run(req).await;
    state.metrics.count_request(&route, r.status().as_u16());
    r
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/chat/completions", post(handlers::chat))
        .route("/completions", post(handlers::completions))
        .route("/models", get(handlers::models))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .nest("/v1", v1)
        .route("/health", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .route("/", get(ui::index))
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(state.body_limit))
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
