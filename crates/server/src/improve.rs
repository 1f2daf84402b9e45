//! `/v1/improve`: the assistant's self-improvement as the browser sees it — the current self and
//! its lineage, runs with their reports and plots, and rollback — and the current self that chat
//! follows: a request naming the plain base model is answered by whichever version the registry
//! says is current *now*, so an `improve` promotion or a rollback reaches a running server.
use crate::error::ApiError;
use crate::request::JsonBody;
use crate::AppState;
use autodidact_improve::plot::PLOT_FILES;
use autodidact_improve::report::{ensure_report, RunReport};
use autodidact_improve::{current_self, CurrentSelf, ImproveError, Paths, Registry};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where the improvement registry lives, and whether chat follows its current self.
pub struct SelfImprovement {
    pub home: PathBuf,
    /// Answer plain-base requests with the current self (off under `--base` or `--adapter`).
    pub follow: bool,
    /// The current self as last read, with the registry files' stamp it was read under: chat
    /// requests read the registry only after it changed.
    seen: Mutex<Option<(Stamp, Option<CurrentSelf>)>>,
}

/// Modification times and lengths of the registry and its write-ahead log.
type Stamp = [Option<(SystemTime, u64)>; 2];

impl SelfImprovement {
    pub fn new(home: PathBuf, follow: bool) -> Self {
        SelfImprovement {
            home,
            follow,
            seen: Mutex::new(None),
        }
    }

    fn stamp(&self) -> Stamp {
        let db = Paths::new(&self.home).registry();
        let mut wal = db.clone().into_os_string();
        wal.push("-wal");
        let of = |p: &std::path::Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        [of(&db), of(std::path::Path::new(&wal))]
    }

    /// The adapter of the current self, when chat follows it and it was trained on `base`.
    pub fn current_adapter(&self, base: &str) -> Option<String> {
        if !self.follow {
            return None;
        }
        let stamp = self.stamp();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let current = match &*seen {
            Some((s, c)) if *s == stamp => c.clone(),
            _ => match current_self(&self.home) {
                Ok(c) => {
                    *seen = Some((stamp, c.clone()));
                    c
                }
                Err(e) => {
                    log::error!("reading the current self: {e}");
                    None
                }
            },
        };
        current.filter(|c| c.base_model == base).map(|c| c.adapter)
    }
}

fn api_error(e: ImproveError) -> ApiError {
    match e {
        ImproveError::UnknownRun(run) => {
            ApiError::bad_request(format!("no run `{run}` (see GET /v1/improve)"))
                .status(StatusCode::NOT_FOUND)
        }
        e @ (ImproveError::UnknownVersion(_) | ImproveError::NoRollback(_)) => {
            ApiError::bad_request(e.to_string()).param("to")
        }
        // The server's machine lacks something, not the request: 503, as for a missing part.
        ImproveError::NoFont { .. } => {
            ApiError::bad_request("this machine has no TrueType font to draw plots with")
                .status(StatusCode::SERVICE_UNAVAILABLE)
        }
        other => ApiError::internal(&other.to_string()),
    }
}

async fn with_home<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(PathBuf) -> Result<T, ImproveError> + Send + 'static,
) -> Result<T, ApiError> {
    let Some(imp) = &state.improve else {
        return Err(
            ApiError::bad_request("self-improvement is not served by this server")
                .status(StatusCode::NOT_FOUND),
        );
    };
    let home = imp.home.clone();
    tokio::task::spawn_blocking(move || f(home))
        .await
        .map_err(|e| ApiError::internal(&e.to_string()))?
        .map_err(api_error)
}

fn reply(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn overview(home: PathBuf) -> Result<Value, ImproveError> {
    let Some(reg) = Registry::open_existing(&Paths::new(&home).registry())? else {
        return Ok(json!({"object": "improvement", "current": null, "versions": [], "runs": []}));
    };
    let current = reg.current()?;
    let versions = reg.adapters()?;
    let mut runs = Vec::new();
    for r in reg.runs()? {
        let rounds = reg.rounds(&r.id)?.len();
        runs.push(
            json!({"id": r.id, "created": r.created, "model": r.model, "skills": r.skills,
                         "status": r.status, "summary": r.summary, "rounds": rounds}),
        );
    }
    Ok(json!({"object": "improvement", "current": current, "versions": versions, "runs": runs}))
}

/// `GET /v1/improve`: the current self, every version with its lineage and status, the runs.
pub async fn index(State(state): State<AppState>) -> Response {
    let following = state.improve.as_ref().is_some_and(|i| i.follow);
    reply(with_home(&state, overview).await.map(|mut v| {
        v["following"] = following.into();
        v
    }))
}

/// `GET /v1/improve/runs/{id}`: a run's report as data.
pub async fn run(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    reply(
        with_home(&state, move |home| {
            let reg = Registry::open_existing(&Paths::new(&home).registry())?;
            let r = match reg {
                Some(reg) => RunReport::load(&reg, &id)?,
                None => None,
            };
            let r = r.ok_or(ImproveError::UnknownRun(id))?;
            let mut v = serde_json::to_value(r).unwrap_or_default();
            // The guard text's file name only: the folder is the operator's, not the page's.
            let guard = &mut v["run"]["config"]["guard_text"];
            if let Some(p) = guard.as_str() {
                let name = std::path::Path::new(p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                *guard = name.into();
            }
            Ok(v)
        })
        .await,
    )
}

/// `GET /v1/improve/runs/{id}/plots/{file}`: one of a run's PNG plots, redrawn when the registry
/// has changed since they were drawn (a run in progress).
pub async fn plot(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    if !PLOT_FILES.contains(&file.as_str()) {
        return ApiError::bad_request(format!(
            "no plot `{file}`; plots are {}",
            PLOT_FILES.join(", ")
        ))
        .status(StatusCode::NOT_FOUND)
        .into_response();
    }
    let got = with_home(&state, move |home| {
        let dir = ensure_report(&home, &id)?.ok_or(ImproveError::UnknownRun(id))?;
        let path = dir.join(&file);
        std::fs::read(&path).map_err(|e| match e.kind() {
            // The report was drawn without plots: this machine has no font to draw them.
            std::io::ErrorKind::NotFound => ImproveError::NoFont { tried: Vec::new() },
            _ => ImproveError::Io { path, source: e },
        })
    })
    .await;
    match got {
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            png,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/improve/rollback` with `{"to": VERSION}` (0: the base model) or `{}` (the version
/// before): returns to an earlier promoted self, which chat follows from the next request.
pub async fn rollback(State(state): State<AppState>, JsonBody(body): JsonBody) -> Response {
    let to = match body.get("to") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(n),
            _ => {
                return ApiError::bad_request("`to` must be a version number (0: the base model)")
                    .param("to")
                    .into_response()
            }
        },
    };
    if let Some(k) = body.keys().find(|k| k.as_str() != "to") {
        return ApiError::bad_request(format!("unknown field `{k}`; rollback takes only `to`"))
            .param(k.clone())
            .into_response();
    }
    let got = with_home(&state, move |home| {
        let Some(mut reg) = Registry::open_existing(&Paths::new(&home).registry())? else {
            return Err(ImproveError::NoRollback(
                "the current self is the base model (no version was ever promoted)".into(),
            ));
        };
        let now = reg.rollback(to)?;
        let adapter = match now {
            Some(v) => reg.adapter(v)?.map(|a| a.name),
            None => None,
        };
        Ok(json!({"object": "improvement.rollback", "current": now, "adapter": adapter}))
    })
    .await;
    reply(got)
}

/// Shared handle for the app state.
pub type Improve = Option<Arc<SelfImprovement>>;
