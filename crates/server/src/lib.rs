//! The OpenAI-compatible HTTP API (chat, completions, models), users' memories, health, Prometheus
//! metrics and the embedded web UI, over an engine handle. `app(state)` builds the router; `serve` runs it.
//!
//! ```no_run
//! use autodidact_engine::{EngineConfig, EngineHandle};
//! use autodidact_model::Model;
//! use autodidact_server::AppState;
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let model = Arc::new(Model::load("gemma3-270m.gguf")?);
//! let engine = EngineHandle::spawn(model, EngineConfig::default())?;
//! let state = AppState::new(engine, "gemma3-270m".into(), None);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! autodidact_server::serve(listener, state, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
mod error;
mod guard;
mod handlers;
pub mod improve;
mod log_sink;
pub mod memory;
mod metrics;
mod prompt;
mod request;
mod types;
mod ui;

pub use error::ApiError;
pub use guard::AllowedHosts;
pub use handlers::DROPPED_HEADER;
pub use log_sink::log_to_stderr;
pub use metrics::Metrics;

use autodidact_engine::{AdapterCache, EngineHandle};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use std::sync::Arc;

/// The default body limit for a context of `n_ctx` tokens: room for a context's worth of text at
/// 16 bytes a token (English runs near 4; JSON escapes of non-ASCII text near 12), plus 64 KiB
/// for the rest of the request. Reading, parsing and tokenizing cost time linear in the body, so
/// this bounds the work one request can cause.
pub fn default_body_limit(n_ctx: usize) -> usize {
    n_ctx.saturating_mul(16).saturating_add(64 << 10)
}

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
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The `Host` names requests may use.
    pub allowed_hosts: AllowedHosts,
    /// Drop the oldest turns of chats that do not fit, unless a request says
    /// `"truncation": "disabled"`.
    pub truncate_history: bool,
    /// Most input bytes one token stands for (see `prompt.rs`).
    pub max_token_bytes: usize,
    /// Where `BASE+NAME` adapters are found (and loaded on first use).
    pub adapters: Option<Arc<AdapterCache>>,
    /// Applied when a request names the plain base model.
    pub default_adapter: Option<String>,
    /// Users' memories: recalled into chat prompts, learned from after replies, and served under
    /// `/v1/memories`. `None` turns memory off.
    pub memory: Option<Arc<memory::MemoryService>>,
    /// The self-improvement registry: served under `/v1/improve`, and followed by chat when
    /// `default_adapter` is unset. `None` serves neither.
    pub improve: improve::Improve,
}

impl AppState {
    pub fn new(engine: EngineHandle, model_name: String, api_key: Option<String>) -> Self {
        let body_limit = default_body_limit(engine.config.gen.n_ctx);
        let max_token_bytes = prompt::max_token_bytes(&engine.model.tokenizer);
        AppState {
            engine,
            model_name,
            api_key,
            metrics: Arc::new(Metrics::default()),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            body_limit,
            allowed_hosts: AllowedHosts::default(),
            truncate_history: false,
            max_token_bytes,
            adapters: None,
            default_adapter: None,
            memory: None,
            improve: None,
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
        .route(
            "/memories",
            get(memory::list).post(memory::add).delete(memory::wipe),
        )
        .route("/memories/export", get(memory::export))
        .route(
            "/memories/import",
            post(memory::import).layer(DefaultBodyLimit::max(memory::IMPORT_LIMIT)),
        )
        .route(
            "/memories/{id}",
            get(memory::get_one)
                .patch(memory::edit)
                .delete(memory::forget),
        )
        .route("/memories/{id}/history", get(memory::history))
        .route("/conversations", get(memory::conversations))
        .route("/conversations/{id}", delete(memory::forget_conversation))
        .route("/improve", get(improve::index))
        .route("/improve/runs/{id}", get(improve::run))
        .route("/improve/runs/{id}/plots/{file}", get(improve::plot))
        .route("/improve/rollback", post(improve::rollback))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .nest("/v1", v1)
        .route("/health", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .route("/", get(ui::index))
        .route("/improve", get(ui::improvement))
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::check_origin,
        ))
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
