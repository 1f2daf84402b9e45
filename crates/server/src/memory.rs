//! `/v1/memories` and `/v1/conversations`: a user's memory over HTTP (list, search, add, edit,
//! forget, history, export, import, wipe), and the memory service chat uses to recall before a
//! reply and learn after it. Every route opens exactly one user's database, named by the `user`
//! query parameter (or body field) and validated as a file name; without one, the server's owner.
use crate::error::ApiError;
use crate::request::JsonBody;
use crate::AppState;
use autodidact_memory::chat::{ChatMemory, FinishedTurn, Learned};
use autodidact_memory::{Export, Hit, Kind, Memory, MemoryError, NewMemory, UserMemory};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query as UrlQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

/// Open databases kept at once; past this the least recently opened is closed.
const MAX_OPEN: usize = 64;
/// Most results one list or search returns.
const MAX_LIMIT: usize = 1000;

/// The memories of every user of this server, one open database per user.
pub struct MemoryService {
    pub chat: ChatMemory,
    /// Whose memory a request without `user` reads: the OS user the server runs as.
    pub default_user: String,
    open: Mutex<Vec<(String, Arc<Mutex<UserMemory>>)>>,
}

impl MemoryService {
    pub fn new(chat: ChatMemory, default_user: String) -> Self {
        MemoryService {
            chat,
            default_user,
            open: Mutex::new(Vec::new()),
        }
    }

    fn handle(&self, user: &str) -> Result<Arc<Mutex<UserMemory>>, MemoryError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, h)) = open.iter().find(|(u, _)| u == user) {
            return Ok(h.clone());
        }
        let h = Arc::new(Mutex::new(self.chat.open(user)?));
        if open.len() >= MAX_OPEN {
            open.remove(0);
        }
        open.push((user.to_string(), h.clone()));
        Ok(h)
    }

    /// Runs `f` on `user`'s memory on a blocking thread (SQLite and the encoder block).
    pub async fn with_user<T: Send + 'static>(
        self: &Arc<Self>,
        user: Option<&str>,
        f: impl FnOnce(&ChatMemory, &mut UserMemory) -> Result<T, MemoryError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let user = user.unwrap_or(&self.default_user).to_string();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let h = this.handle(&user)?;
            let mut mem = h.lock().unwrap_or_else(|p| p.into_inner());
            f(&this.chat, &mut mem)
        })
        .await
        .unwrap_or_else(|e| {
            Err(MemoryError::BadInput {
                what: "memory task",
                message: e.to_string(),
            })
        })
        .map_err(api_error)
    }

    /// As `with_user` for reads: a user without a database gets `missing()` and none is made, so
    /// reads naming made-up users cannot fill the disk.
    pub async fn read_user<T: Send + 'static>(
        self: &Arc<Self>,
        user: Option<&str>,
        missing: impl FnOnce() -> Result<T, MemoryError> + Send + 'static,
        f: impl FnOnce(&ChatMemory, &mut UserMemory) -> Result<T, MemoryError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let who = user.unwrap_or(&self.default_user);
        if !autodidact_memory::user_exists(self.chat.dir(), who).map_err(api_error)? {
            return missing().map_err(api_error);
        }
        self.with_user(user, f).await
    }

    /// Memories for the prompt of `message` (the chat model's tokenizer counts their tokens).
    pub async fn recall(
        self: &Arc<Self>,
        state: &AppState,
        user: Option<&str>,
        message: String,
    ) -> Result<Vec<Hit>, ApiError> {
        let model = state.engine.model.clone();
        let n_ctx = state.engine.config.gen.n_ctx;
        self.read_user(
            user,
            || Ok(Vec::new()),
            move |chat, mem| {
                let count = |t: &str| model.tokenizer.encode(t, false, false).len();
                let mut c = chat.recall;
                c.token_budget = c.token_budget.min(n_ctx / 8);
                chat.recall_with(c, mem, &message, &count)
            },
        )
        .await
    }

    /// Stores a finished turn and learns from it, in the background: the reply is already out.
    pub fn learn_later(
        self: &Arc<Self>,
        user: Option<String>,
        conversation: Option<String>,
        said: String,
        reply: String,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let r = this
                .with_user(user.as_deref(), move |chat, mem| {
                    let turn = FinishedTurn {
                        conversation: conversation.as_deref(),
                        user: &said,
                        reply: &reply,
                    };
                    chat.learn(mem, &turn)
                })
                .await;
            match r {
                Ok(Learned {
                    applied, millis, ..
                }) => log::debug!("memory: {} changes in {millis:.1} ms", applied.len()),
                Err(e) => log::warn!("memory: learning from a turn failed: {}", e.message),
            }
        });
    }
}

/// The memory store's errors in the API's words; storage failures go to the log only.
pub fn api_error(e: MemoryError) -> ApiError {
    match e {
        MemoryError::InvalidUserId { .. } => ApiError::bad_request(e.to_string()).param("user"),
        MemoryError::NoSuchMemory { id } => {
            ApiError::bad_request(format!("no memory with id {id} for this user"))
                .status(StatusCode::NOT_FOUND)
                .code("memory_not_found")
        }
        MemoryError::NoSuchConversation { id } => {
            ApiError::bad_request(format!("no conversation with id {id} for this user"))
                .status(StatusCode::NOT_FOUND)
                .code("conversation_not_found")
        }
        MemoryError::BadKind { .. } => ApiError::bad_request(e.to_string()).param("kind"),
        MemoryError::EmptyText => ApiError::bad_request(e.to_string()).param("text"),
        MemoryError::BadConfidence { .. } => {
            ApiError::bad_request(e.to_string()).param("confidence")
        }
        MemoryError::Encrypted { .. }
        | MemoryError::NotEncrypted { .. }
        | MemoryError::WrongPassphrase { .. } => {
            log::warn!("memory store: {e}");
            ApiError::bad_request(
                "this user's memory does not open with this server's passphrase setting",
            )
            .status(StatusCode::FORBIDDEN)
            .code("memory_locked")
        }
        MemoryError::NotEmpty { .. }
        | MemoryError::Json { .. }
        | MemoryError::BadInput { .. }
        | MemoryError::BadEmbedding
        | MemoryError::DimMismatch { .. } => ApiError::bad_request(e.to_string()),
        other => {
            log::error!("memory store: {other}");
            ApiError {
                message: "the memory store failed; try again".into(),
                ..ApiError::internal("memory store failure (logged above)")
            }
        }
    }
}

fn service(state: &AppState) -> Result<&Arc<MemoryService>, ApiError> {
    state.memory.as_ref().ok_or_else(|| {
        ApiError::bad_request("memory is off on this server (it was started with --no-memory)")
            .status(StatusCode::NOT_FOUND)
            .code("memory_disabled")
    })
}

/// A memory as the API shows it, with its search score when it came from a search.
pub fn memory_json(m: &Memory, score: Option<f64>) -> Value {
    let mut v = json!({
        "id": m.id,
        "object": "memory",
        "text": m.text,
        "kind": m.kind,
        "subject": m.subject,
        "created": m.created,
        "updated": m.updated,
        "valid_from": m.valid_from,
        "valid_until": m.valid_until,
        "current": m.is_current(),
        "confidence": m.confidence,
        "superseded_by": m.superseded_by,
        "sources": m.sources.iter().map(|s| json!({"conversation": s.conversation, "turn": s.turn})).collect::<Vec<_>>(),
    });
    if let Some(s) = score {
        v["score"] = json!(s);
    }
    v
}

fn list_json(items: Vec<Value>) -> Response {
    Json(json!({"object": "list", "data": items})).into_response()
}

#[derive(Deserialize, Default)]
pub struct UserParams {
    user: Option<String>,
    /// Search text (list when absent).
    q: Option<String>,
    limit: Option<usize>,
    /// Closed (superseded or invalidated) memories too.
    all: Option<bool>,
    /// Required by wipe: there is no undo.
    confirm: Option<bool>,
}

/// Reads `user` from the body when the query did not give it; a conflict is refused.
fn user_of(params: &UserParams, body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let from_body = match body.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("`user` must be a string").param("user")),
    };
    match (&params.user, from_body) {
        (Some(a), Some(b)) if *a != b => Err(ApiError::bad_request(
            "the query's `user` and the body's `user` differ; give one",
        )
        .param("user")),
        (a, b) => Ok(a.clone().or(b)),
    }
}

fn text_field(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("`{key}` must be a string")).param(key)),
    }
}

fn kind_field(body: &Map<String, Value>) -> Result<Option<Kind>, ApiError> {
    text_field(body, "kind")?
        .map(|k| Kind::parse(&k).map_err(api_error))
        .transpose()
}

/// Routes that read nothing from a body refuse one: a `user` there would otherwise be ignored and
/// the request would act on the owner's memory instead.
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let b = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("could not read the request body"))?;
        if b.iter().all(u8::is_ascii_whitespace) {
            Ok(NoBody)
        } else {
            Err(ApiError::bad_request(
                "this route takes no body: give `user` and the rest in the query string",
            ))
        }
    }
}

type Reply = Result<Response, ApiError>;
type Params = Result<UrlQuery<UserParams>, QueryRejection>;

/// The query string, refused in the API's error shape when it does not parse.
fn params(p: Params) -> Result<UserParams, ApiError> {
    p.map(|UrlQuery(p)| p)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("`{id}` is not a memory id (a whole number)")))
}

fn done(r: Reply) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/memories[?q=…&limit=…&all=true]`: current memories, or a search.
pub async fn list(State(state): State<AppState>, p: Params, _: NoBody) -> Response {
    done(
        async {
            let p = params(p)?;
            list_inner(&state, p).await
        }
        .await,
    )
}

async fn list_inner(state: &AppState, p: UserParams) -> Reply {
    let svc = service(state)?;
    let all = p.all.unwrap_or(false);
    let limit = p
        .limit
        .unwrap_or(if p.q.is_some() { 10 } else { MAX_LIMIT });
    if limit == 0 || limit > MAX_LIMIT {
        return Err(
            ApiError::bad_request(format!("`limit` must be from 1 to {MAX_LIMIT}")).param("limit"),
        );
    }
    let items = match p.q.filter(|q| !q.trim().is_empty()) {
        Some(q) => {
            svc.read_user(
                p.user.as_deref(),
                || Ok(Vec::new()),
                move |chat, mem| {
                    let hits = chat.search(mem, &q, limit, all)?;
                    Ok(hits
                        .iter()
                        .map(|h| {
                            let mut v = memory_json(&h.memory, Some(h.score));
                            if let Some(c) = h.cosine {
                                v["cosine"] = json!(c);
                            }
                            v
                        })
                        .collect::<Vec<_>>())
                },
            )
            .await?
        }
        None => {
            svc.read_user(
                p.user.as_deref(),
                || Ok(Vec::new()),
                move |_, mem| {
                    Ok(mem
                        .list(all)?
                        .iter()
                        .take(limit)
                        .map(|m| memory_json(m, None))
                        .collect::<Vec<_>>())
                },
            )
            .await?
        }
    };
    Ok(list_json(items))
}

/// `POST /v1/memories {"text", "kind"?}`: remember, as add, reaffirm, update or supersede.
pub async fn add(
    State(state): State<AppState>,
    p: Params,
    body: Result<JsonBody, ApiError>,
) -> Response {
    done(
        async {
            let p = params(p)?;
            add_inner(&state, p, body).await
        }
        .await,
    )
}

async fn add_inner(state: &AppState, p: UserParams, body: Result<JsonBody, ApiError>) -> Reply {
    let svc = service(state)?;
    let body = body?.0;
    let user = user_of(&p, &body)?;
    let text = text_field(&body, "text")?
        .ok_or_else(|| ApiError::bad_request("`text` is required").param("text"))?;
    let kind = kind_field(&body)?.unwrap_or(Kind::Fact);
    let (applied, memory) = svc
        .with_user(user.as_deref(), move |chat, mem| {
            let a = chat.remember(mem, NewMemory::new(text, kind))?;
            let m = mem.get(a.id())?;
            Ok((a, m))
        })
        .await?;
    let mut v = memory_json(&memory, None);
    v["applied"] = json!(applied);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// Runs `f` on the memory or conversation with the path's id, in the user's database; `missing`
/// is the error when that user has none (nothing is created for a read).
async fn by_id<T: Send + 'static>(
    state: &AppState,
    id: &str,
    p: Params,
    missing: fn(i64) -> MemoryError,
    f: impl FnOnce(i64, &mut UserMemory) -> Result<T, MemoryError> + Send + 'static,
) -> Result<(i64, T), ApiError> {
    let svc = service(state)?;
    let p = params(p)?;
    let id = parse_id(id)?;
    let t = svc
        .read_user(
            p.user.as_deref(),
            move || Err(missing(id)),
            move |_, mem| f(id, mem),
        )
        .await?;
    Ok((id, t))
}

fn no_memory(id: i64) -> MemoryError {
    MemoryError::NoSuchMemory { id }
}

/// `GET /v1/memories/{id}`.
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Params,
    _: NoBody,
) -> Response {
    done(
        by_id(&state, &id, p, no_memory, |id, mem| mem.get(id))
            .await
            .map(|(_, m)| Json(memory_json(&m, None)).into_response()),
    )
}

/// `PATCH /v1/memories/{id} {"text", "kind"?}`: a correction; the old text stays in the history.
pub async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Params,
    body: Result<JsonBody, ApiError>,
) -> Response {
    done(
        async {
            let svc = service(&state)?;
            let p = params(p)?;
            let id = parse_id(&id)?;
            let body = body?.0;
            let user = user_of(&p, &body)?;
            let text = text_field(&body, "text")?
                .ok_or_else(|| ApiError::bad_request("`text` is required").param("text"))?;
            let kind = kind_field(&body)?;
            let m = svc
                .with_user(user.as_deref(), move |chat, mem| {
                    chat.edit(mem, id, &text, kind)?;
                    mem.get(id)
                })
                .await?;
            Ok(Json(memory_json(&m, None)).into_response())
        }
        .await,
    )
}

/// `DELETE /v1/memories/{id}`: forgotten from disk (text, vector, index rows, history text, and
/// the text of the turns it was learned from).
pub async fn forget(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Params,
    _: NoBody,
) -> Response {
    done(
        by_id(&state, &id, p, no_memory, |id, mem| mem.forget(id))
            .await
            .map(|(id, turns)| {
                Json(json!({
                    "id": id,
                    "object": "memory",
                    "deleted": true,
                    "source_turns_cleared": turns,
                }))
                .into_response()
            }),
    )
}

/// `GET /v1/memories/{id}/history`: every change to one memory.
pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Params,
    _: NoBody,
) -> Response {
    let got = by_id(&state, &id, p, no_memory, |id, mem| {
        mem.get(id)?;
        mem.history(Some(id))
    });
    done(
        got.await
            .map(|(_, h)| list_json(h.iter().map(|e| json!(e)).collect())),
    )
}

/// `GET /v1/memories/export`: everything, in the form `import` restores exactly.
pub async fn export(State(state): State<AppState>, p: Params, _: NoBody) -> Response {
    done(
        async {
            let svc = service(&state)?;
            let p = params(p)?;
            let e = svc
                .with_user(p.user.as_deref(), move |_, mem| mem.export())
                .await?;
            Ok(Json(json!(e)).into_response())
        }
        .await,
    )
}

/// Largest export `import` accepts: each memory carries its vector (about 8.5 KB as JSON for
/// 384 dimensions), so the chat body limit would refuse all but a dozen.
pub const IMPORT_LIMIT: usize = 256 << 20;

/// `POST /v1/memories/import` with an export as the body: into an empty memory only, checked as
/// a whole (format, ids, links) before anything is written.
pub async fn import(State(state): State<AppState>, p: Params, req: Request) -> Response {
    done(
        async {
            let svc = service(&state)?;
            let p = params(p)?;
            let json = req
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().starts_with("application/json"));
            if !json {
                return Err(ApiError::bad_request(
                    "send the export as JSON with `Content-Type: application/json`",
                )
                .status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
            }
            let body = Bytes::from_request(req, &())
                .await
                .map_err(|_| ApiError::too_large(IMPORT_LIMIT))?;
            let text = std::str::from_utf8(&body)
                .map_err(|_| ApiError::bad_request("the export is not UTF-8 text"))?;
            let e = Export::from_json(text).map_err(api_error)?;
            let counts = (e.memories.len(), e.conversations.len());
            svc.with_user(p.user.as_deref(), move |_, mem| mem.import(&e))
                .await?;
            Ok(Json(json!({"memories": counts.0, "conversations": counts.1})).into_response())
        }
        .await,
    )
}

/// `DELETE /v1/memories?confirm=true`: every memory and conversation of the user.
pub async fn wipe(State(state): State<AppState>, p: Params, _: NoBody) -> Response {
    done(
        async {
            let svc = service(&state)?;
            let p = params(p)?;
            if p.confirm != Some(true) {
                return Err(ApiError::bad_request(
                    "wiping deletes every memory of this user; add `?confirm=true`",
                )
                .param("confirm"));
            }
            let n = svc
                .read_user(p.user.as_deref(), || Ok(0), move |_, mem| mem.wipe())
                .await?;
            Ok(Json(json!({"deleted": n})).into_response())
        }
        .await,
    )
}

/// `GET /v1/conversations`: the stored conversations (what memories came from).
pub async fn conversations(State(state): State<AppState>, p: Params, _: NoBody) -> Response {
    done(
        async {
            let svc = service(&state)?;
            let p = params(p)?;
            let cs = svc
                .read_user(
                    p.user.as_deref(),
                    || Ok(Vec::new()),
                    move |_, mem| mem.conversations(),
                )
                .await?;
            Ok(list_json(cs.iter().map(|c| json!(c)).collect()))
        }
        .await,
    )
}

/// `DELETE /v1/conversations/{id}`: the conversation and every memory derived from it.
pub async fn forget_conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Params,
    _: NoBody,
) -> Response {
    let missing = |id| MemoryError::NoSuchConversation { id };
    let got = by_id(&state, &id, p, missing, |id, mem| {
        mem.forget_conversation(id)
    });
    done(got.await.map(|(id, n)| {
        Json(json!({"id": id, "object": "conversation", "deleted": true, "memories_deleted": n}))
            .into_response()
    }))
}

/// The memory fields of a chat response: which memories went into the prompt.
pub fn used_json(hits: &[Hit]) -> Value {
    Value::Array(
        hits.iter()
            .map(|h| json!({"id": h.memory.id, "text": h.memory.text, "kind": h.memory.kind, "score": h.score}))
            .collect(),
    )
}
