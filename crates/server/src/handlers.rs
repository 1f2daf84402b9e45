//! Route handlers: chat and raw completions (whole or streamed as server-sent events), models,
//! health and metrics. Every request becomes `n` engine sequences whose events arrive on one
//! channel; dropping the channel (a client that went away) cancels them in the engine.
use crate::error::ApiError;
use crate::memory;
use crate::prompt::{self, Budget};
use crate::request::JsonBody;
use crate::types::{
    ChatMessage, ChatRequest, ChoiceLogprobs, CompletionRequest, SamplingFields, TokenLogprob,
    TopLogprob, Usage,
};
use crate::AppState;
use autodidact_engine::json_grammar::JsonGrammar;
use autodidact_engine::{
    Completion, EngineError, Event, EventSink, FinishReason, Request, Sampled, SamplingParams,
};
use autodidact_memory::chat::with_memories;
use autodidact_model::{LoraAdapter, Model};
use autodidact_store::StoreError;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Most choices one request may ask for.
const MAX_N: u32 = 16;
const MAX_TOP_LOGPROBS: u32 = 20;
/// OpenAI's range for `frequency_penalty` and `presence_penalty`.
const MAX_PENALTY: f32 = 2.0;
/// Response header: how many of the oldest messages truncation left out.
pub const DROPPED_HEADER: &str = "x-autodidact-dropped-messages";

struct ChanSink {
    tx: mpsc::UnboundedSender<(usize, Event)>,
    index: usize,
}

impl EventSink for ChanSink {
    fn send(&mut self, event: Event) -> bool {
        self.tx.send((self.index, event)).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_id(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{nanos:x}")
}

/// The adapter a request asks for: `"model": "BASE+NAME"` or an `adapter` field.
fn check_model(
    state: &AppState,
    model: &str,
    adapter: Option<&str>,
) -> Result<Option<Arc<LoraAdapter>>, ApiError> {
    let not_found = |what: String| {
        ApiError::bad_request(what)
            .status(StatusCode::NOT_FOUND)
            .param("model")
            .code("model_not_found")
    };
    let named = if model == state.model_name {
        None
    } else if let Some(name) = model
        .strip_prefix(state.model_name.as_str())
        .and_then(|r| r.strip_prefix('+'))
    {
        Some(name)
    } else {
        return Err(not_found(format!(
            "model `{model}` does not exist; this server serves `{}` and its adapters \
             as `{}+NAME` (see GET /v1/models)",
            state.model_name, state.model_name
        )));
    };
    let name = match (named, adapter) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(format!(
                "the model names adapter `{a}` but the adapter field says `{b}`"
            ))
            .param("adapter"))
        }
        (a, b) => a
            .or(b)
            .map(String::from)
            .or_else(|| state.default_adapter.clone()),
    };
    let Some(name) = name else {
        // The plain base name: the current self of `improve`, when this server follows it.
        let Some(current) = state
            .improve
            .as_ref()
            .and_then(|i| i.current_adapter(&state.model_name))
        else {
            return Ok(None);
        };
        return Ok(follow(state, &current));
    };
    let name = name.as_str();
    let Some(store) = &state.adapters else {
        return Err(not_found(format!(
            "adapter `{name}` does not exist: this server has no adapter store"
        )));
    };
    match store.get(name, &state.engine.model.config) {
        Ok(a) => Ok(Some(a)),
        Err(EngineError::Store(StoreError::UnknownAdapter(_) | StoreError::BadName { .. })) => {
            Err(not_found(format!(
                "adapter `{name}` does not exist (see GET /v1/models)"
            )))
        }
        Err(EngineError::Store(StoreError::BaseMismatch { .. })) => Err(ApiError::bad_request(
            format!("adapter `{name}` was trained on a different base model than this one"),
        )
        .param("model")),
        Err(EngineError::Model(e)) => {
            // The detail (a path, a shape) is for the operator's log, not the client.
            log::warn!("adapter {name:?} could not be loaded: {e}");
            Err(
                ApiError::bad_request(format!("adapter `{name}` does not fit this model's shapes"))
                    .param("model"),
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// The current self's weights, or the base (said in the log) when they cannot be used here —
/// removed from the store, or trained on another build of the model: a request that named no
/// adapter is not refused for the registry's sake, as start-up does not refuse it either.
fn follow(state: &AppState, name: &str) -> Option<Arc<LoraAdapter>> {
    let store = state.adapters.as_ref()?;
    match store.get(name, &state.engine.model.config) {
        Ok(a) => Some(a),
        Err(e) => {
            log::warn!("the current self {name:?} cannot be used, answering as the base: {e}");
            None
        }
    }
}

/// Turns the request's sampling fields into engine parameters for a prompt of `prompt_len`.
fn sampling(
    f: &SamplingFields,
    n_ctx: usize,
    prompt_len: usize,
    top_logprobs: Option<usize>,
) -> Result<(SamplingParams, usize), ApiError> {
    let n = f.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return Err(ApiError::bad_request(format!("n must be between 1 and {MAX_N}")).param("n"));
    }
    if f.max_tokens == Some(0) {
        return Err(ApiError::bad_request("max_tokens must be at least 1").param("max_tokens"));
    }
    for (name, v) in [
        ("frequency_penalty", f.frequency_penalty),
        ("presence_penalty", f.presence_penalty),
    ] {
        if v.is_some_and(|v| !(-MAX_PENALTY..=MAX_PENALTY).contains(&v)) {
            return Err(ApiError::bad_request(format!(
                "{name} must be between -{MAX_PENALTY} and {MAX_PENALTY}"
            ))
            .param(name));
        }
    }
    if prompt_len >= n_ctx {
        return Err(ApiError::bad_request(format!(
            "the prompt is {prompt_len} tokens but the context holds {n_ctx}; shorten it"
        ))
        .param("messages")
        .code("context_length_exceeded"));
    }
    let room = n_ctx - prompt_len;
    let max_tokens = match f.max_tokens {
        Some(m) if m as usize > room => {
            return Err(ApiError::bad_request(format!(
                "max_tokens is {m} but only {room} tokens remain in the context of {n_ctx} after the \
                 {prompt_len}-token prompt; lower max_tokens or shorten the prompt"
            ))
            .param("max_tokens"));
        }
        Some(m) => m as usize,
        None => room,
    };
    let d = SamplingParams::default();
    let p = SamplingParams {
        temperature: f.temperature.unwrap_or(d.temperature),
        top_p: f.top_p.unwrap_or(d.top_p),
        top_k: f.top_k.map(|k| k as usize).unwrap_or(d.top_k),
        min_p: f.min_p.unwrap_or(d.min_p),
        repeat_penalty: f.repeat_penalty.unwrap_or(d.repeat_penalty),
        frequency_penalty: f.frequency_penalty.unwrap_or(d.frequency_penalty),
        presence_penalty: f.presence_penalty.unwrap_or(d.presence_penalty),
        seed: f.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        }),
        max_tokens,
        stop: f.stop.clone(),
        top_logprobs,
        ignore_eos: f.ignore_eos,
        ..d
    };
    p.validate().map_err(ApiError::from)?;
    Ok((p, n as usize))
}

/// Refuses a request for more sequences than the engine ever holds at once (running and
/// queued): retrying could never help, so it is the request that must change.
fn check_capacity(state: &AppState, f: &SamplingFields, prompts: usize) -> Result<(), ApiError> {
    let n = f.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return Err(ApiError::bad_request(format!("n must be between 1 and {MAX_N}")).param("n"));
    }
    let count = n as usize * prompts;
    let c = state.engine.config;
    let most = c.max_active.max(1) + c.max_queued;
    if count > most {
        return Err(ApiError::bad_request(format!(
            "this request needs {count} sequences (prompts × n) but the server runs and queues \
             at most {most} at once; lower n or send fewer prompts"
        ))
        .param("n"));
    }
    Ok(())
}

/// Submits `n` sequences (seeds `seed, seed+1, …`) and returns their shared event channel.
fn submit(
    state: &AppState,
    prompts: Vec<Vec<u32>>,
    params: SamplingParams,
    n: usize,
    (json, adapter): (Option<Arc<JsonGrammar>>, Option<Arc<LoraAdapter>>),
) -> Result<mpsc::UnboundedReceiver<(usize, Event)>, ApiError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut index = 0;
    for prompt in prompts {
        for k in 0..n {
            let req = Request {
                prompt: prompt.clone(),
                params: SamplingParams {
                    seed: params.seed.wrapping_add(k as u64),
                    ..params.clone()
                },
                json: json.clone(),
                adapter: adapter.clone(),
            };
            let sink = ChanSink {
                tx: tx.clone(),
                index,
            };
            state.engine.submit(req, Box::new(sink))?;
            index += 1;
        }
    }
    Ok(rx)
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

fn token_logprob(m: &Model, s: &Sampled) -> TokenLogprob {
    let piece = |id: u32| {
        let b = m.tokenizer.token_bytes(id, true);
        (String::from_utf8_lossy(&b).into_owned(), b)
    };
    let (token, bytes) = piece(s.token);
    TokenLogprob {
        token,
        // Always present: this is only called for requests that asked for logprobs.
        logprob: s.logprob.unwrap_or(f32::NAN),
        bytes,
        top_logprobs: s
            .top
            .iter()
            .map(|t| {
                let (token, bytes) = piece(t.id);
                TopLogprob {
                    token,
                    logprob: t.logprob,
                    bytes,
                }
            })
            .collect(),
    }
}

/// Usage of `done`, the `n` choices of each of several prompts in any order.
fn usage(done: &[Completion], n: usize) -> Usage {
    // Choices of one prompt share it: count each distinct prompt once, as OpenAI does for `n`.
    let prompt_tokens = done.iter().map(|c| c.prompt_tokens).sum::<usize>() / n.max(1);
    let completion_tokens: usize = done.iter().map(|c| c.tokens.len()).sum();
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens_details: crate::types::PromptDetails {
            cached_tokens: done.first().map(|c| c.cached_tokens).unwrap_or(0),
        },
    }
}

/// Collects every sequence's completion, timing tokens for the metrics.
async fn collect(
    state: &AppState,
    mut rx: mpsc::UnboundedReceiver<(usize, Event)>,
    count: usize,
) -> Result<Vec<Completion>, ApiError> {
    let start = Instant::now();
    let mut last = vec![None::<Instant>; count];
    let mut done: Vec<Option<Completion>> = vec![None; count];
    let mut left = count;
    while left > 0 {
        match rx.recv().await {
            Some((i, Event::Token { .. })) => state.metrics.observe_token(&mut last[i], start),
            Some((i, Event::Done(c))) => {
                done[i] = Some(c);
                left -= 1;
            }
            Some((_, Event::Failed(e))) => return Err(ApiError::internal(&e)),
            None => return Err(ApiError::internal("the engine dropped a request")),
        }
    }
    Ok(done.into_iter().flatten().collect())
}

pub async fn chat(State(state): State<AppState>, body: Result<JsonBody, ApiError>) -> Response {
    match chat_inner(state, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(
    state: AppState,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let req = ChatRequest::from_json(&body?.0)?;
    let adapter = check_model(&state, &req.model, req.sampling.adapter.as_deref())?;
    let json = match &req.response_format {
        None => None,
        Some(rf) => match rf.kind.as_str() {
            "text" => None,
            "json_object" => Some(JsonGrammar::object()),
            "json_schema" => {
                let schema = rf.schema.as_ref().ok_or_else(|| {
                    ApiError::bad_request("response_format json_schema needs json_schema.schema")
                        .param("response_format")
                })?;
                Some(
                    JsonGrammar::from_schema(schema)
                        .map_err(|e| ApiError::from(e).param("response_format"))?,
                )
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown response_format `{other}`; use text, json_object or json_schema"
                ))
                .param("response_format"))
            }
        },
    };
    let top = match (req.logprobs, req.top_logprobs) {
        (_, Some(k)) if k > MAX_TOP_LOGPROBS => {
            return Err(ApiError::bad_request(format!(
                "top_logprobs must be at most {MAX_TOP_LOGPROBS}"
            ))
            .param("top_logprobs"))
        }
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, Some(_)) => {
            return Err(
                ApiError::bad_request("top_logprobs requires logprobs: true").param("logprobs"),
            )
        }
        (false, None) => None,
    };
    let n_ctx = state.engine.config.gen.n_ctx;
    check_capacity(&state, &req.sampling, 1)?;
    let truncate = req.truncate.unwrap_or(state.truncate_history);
    let budget = Budget {
        n_ctx,
        max_token_bytes: state.max_token_bytes,
        truncate_reserve: truncate.then(|| {
            req.sampling
                .max_tokens
                .map(|m| m as usize)
                .unwrap_or(n_ctx / 4)
        }),
    };
    let mut messages = req.messages;
    // Memory: recalled for the user's latest message, learned from once the reply is out.
    let memory = match &state.memory {
        Some(svc) if req.memory != Some(false) => Some(svc.clone()),
        _ => None,
    };
    let memory_on = memory.is_some();
    let said = match messages.last() {
        Some(m) if m.role == "user" => Some(m.content.clone()),
        _ => None,
    };
    let mut recalled = match (&memory, &said) {
        (Some(svc), Some(text)) => {
            svc.recall(&state, req.user.as_deref(), text.clone())
                .await?
        }
        _ => Vec::new(),
    };
    let plain = (!recalled.is_empty()).then(|| messages.clone());
    with_memories(
        &mut messages,
        &recalled,
        |m| m.role.as_str(),
        |m| &mut m.content,
        |content| ChatMessage {
            role: "system".into(),
            content,
        },
    );
    let after: Option<AfterReply> = match (memory, said) {
        (Some(svc), Some(said)) => {
            let (user, conversation) = (req.user.clone(), req.conversation.clone());
            Some(Box::new(move |reply: &str| {
                svc.learn_later(user, conversation, said, reply.to_string())
            }))
        }
        _ => None,
    };
    // Memory never costs the conversation its place: a prompt that fits only without it goes
    // without it.
    let reply_room = req.sampling.max_tokens.map_or(1, |m| m as usize);
    let prompt = match (prompt::chat(&state, messages, budget).await, plain) {
        (Ok(p), Some(plain)) if p.tokens.len() + reply_room > n_ctx => {
            recalled.clear();
            prompt::chat(&state, plain, budget).await?
        }
        (Err(e), Some(plain)) if e.code == Some("context_length_exceeded") => {
            recalled.clear();
            prompt::chat(&state, plain, budget).await?
        }
        (r, _) => r?,
    };
    let used = memory_on.then(|| memory::used_json(&recalled));
    let dropped = prompt.dropped;
    let (params, n) = sampling(&req.sampling, n_ctx, prompt.tokens.len(), top)?;
    let rx = submit(&state, vec![prompt.tokens], params, n, (json, adapter))?;
    let (id, created) = (new_id("chatcmpl"), now_secs());
    let model_name = req.model.clone();
    let mut response = if req.sampling.stream {
        let spec = StreamSpec {
            model: req.model.clone(),
            count: n,
            n,
            kind: StreamKind::Chat {
                logprobs: top.is_some(),
            },
            id,
            created,
            include_usage: req.sampling.include_usage,
            memories: used,
            after,
        };
        stream(state, rx, spec)
    } else {
        let reply = ChatReply {
            n,
            logprobs: top.is_some(),
            id,
            created,
            model_name,
            memories: used,
            after,
        };
        chat_reply(&state, rx, reply).await?
    };
    if dropped > 0 {
        response
            .headers_mut()
            .insert(DROPPED_HEADER, HeaderValue::from(dropped));
    }
    Ok(response)
}

/// Runs once a chat reply is complete, with its first choice (memory learns from it).
type AfterReply = Box<dyn FnOnce(&str) + Send>;

/// What a whole (not streamed) chat reply carries besides its choices.
struct ChatReply {
    n: usize,
    logprobs: bool,
    id: String,
    created: u64,
    model_name: String,
    /// The memories the prompt held (`None`: memory was off for this request).
    memories: Option<Value>,
    after: Option<AfterReply>,
}

/// The whole (not streamed) chat reply.
async fn chat_reply(
    state: &AppState,
    rx: mpsc::UnboundedReceiver<(usize, Event)>,
    r: ChatReply,
) -> Result<Response, ApiError> {
    let ChatReply {
        n,
        logprobs,
        id,
        created,
        model_name,
        memories,
        after,
    } = r;
    let top = logprobs.then_some(());
    let done = collect(state, rx, n).await?;
    if let (Some(f), Some(first)) = (after, done.first()) {
        f(&first.text);
    }
    let m = &state.engine.model;
    let choices: Vec<Value> = done
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": top.map(|_| ChoiceLogprobs {
                    content: c.logprobs.iter().map(|s| token_logprob(m, s)).collect(),
                }),
                "finish_reason": finish_str(c.finish),
            })
        })
        .collect();
    let mut body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model_name,
        "choices": choices,
        "usage": usage(&done, n),
    });
    if let Some(m) = memories {
        body["memories"] = m;
    }
    Ok(Json(body).into_response())
}

pub async fn completions(
    State(state): State<AppState>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    match completions_inner(state, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn completions_inner(
    state: AppState,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let req = CompletionRequest::from_json(&body?.0)?;
    let adapter = check_model(&state, &req.model, req.sampling.adapter.as_deref())?;
    let top = match req.logprobs {
        Some(k) if k > 5 => {
            return Err(
                ApiError::bad_request("logprobs must be at most 5 for completions")
                    .param("logprobs"),
            )
        }
        k => k.map(|k| k as usize),
    };
    if req.prompts.is_empty() {
        return Err(ApiError::bad_request("prompt must not be empty").param("prompt"));
    }
    let texts = req.prompts.clone();
    let n_ctx = state.engine.config.gen.n_ctx;
    check_capacity(&state, &req.sampling, texts.len())?;
    let m = state.engine.model.clone();
    let budget = Budget {
        n_ctx,
        max_token_bytes: state.max_token_bytes,
        truncate_reserve: None,
    };
    let prompts = prompt::completions(m.clone(), texts.clone(), budget).await?;
    let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    let (params, n) = sampling(&req.sampling, n_ctx, longest, top)?;
    let count = prompts.len() * n;
    let rx = submit(&state, prompts, params, n, (None, adapter))?;
    let (id, created) = (new_id("cmpl"), now_secs());
    if req.sampling.stream {
        let include_usage = req.sampling.include_usage;
        let spec = StreamSpec {
            model: req.model.clone(),
            count,
            n,
            kind: StreamKind::Text {
                logprobs: top.is_some(),
            },
            id,
            created,
            include_usage,
            memories: None,
            after: None,
        };
        return Ok(stream(state, rx, spec));
    }
    let done = collect(&state, rx, count).await?;
    let choices: Vec<Value> = done
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let text = if req.echo {
                format!("{}{}", texts[i / n], c.text)
            } else {
                c.text.clone()
            };
            json!({
                "index": i,
                "text": text,
                "logprobs": top.map(|_| legacy_logprobs(&m, &c.logprobs)),
                "finish_reason": finish_str(c.finish),
            })
        })
        .collect();
    let u = usage(&done, n);
    Ok(Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": req.model,
        "choices": choices,
        "usage": u,
    }))
    .into_response())
}

/// The legacy completions logprobs object.
fn legacy_logprobs(m: &Model, s: &[Sampled]) -> Value {
    let lp: Vec<TokenLogprob> = s.iter().map(|x| token_logprob(m, x)).collect();
    let mut offset = 0;
    let offsets: Vec<usize> = lp
        .iter()
        .map(|t| {
            let o = offset;
            offset += t.token.len();
            o
        })
        .collect();
    json!({
        "tokens": lp.iter().map(|t| &t.token).collect::<Vec<_>>(),
        "token_logprobs": lp.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": lp.iter().map(|t| t.top_logprobs.iter().map(|x| (x.token.clone(), json!(x.logprob))).collect::<serde_json::Map<String, Value>>()).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

#[derive(Clone, Copy)]
enum StreamKind {
    Chat { logprobs: bool },
    Text { logprobs: bool },
}

/// Streams the sequences' events as server-sent events, ending with `data: [DONE]`.
/// What a stream carries: `count` sequences, `n` per prompt, and the response's identity.
struct StreamSpec {
    /// The `model` the client asked for, echoed in every chunk.
    model: String,
    count: usize,
    n: usize,
    kind: StreamKind,
    id: String,
    created: u64,
    include_usage: bool,
    /// Chat: the memories the prompt held, sent with the first chunk.
    memories: Option<Value>,
    after: Option<AfterReply>,
}

fn stream(
    state: AppState,
    mut rx: mpsc::UnboundedReceiver<(usize, Event)>,
    spec: StreamSpec,
) -> Response {
    let StreamSpec {
        model: model_name,
        count,
        n,
        kind,
        id,
        created,
        include_usage,
        memories,
        after,
    } = spec;
    let (out_tx, out_rx) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let m = state.engine.model.clone();
        let chunk = |choices: Value, usage: Option<Usage>| -> SseEvent {
            let object = match kind {
                StreamKind::Chat { .. } => "chat.completion.chunk",
                StreamKind::Text { .. } => "text_completion",
            };
            let mut v = json!({"id": id, "object": object, "created": created, "model": model_name, "choices": choices});
            if include_usage {
                v["usage"] = usage.map(|u| json!(u)).unwrap_or(Value::Null);
            }
            SseEvent::default().data(v.to_string())
        };
        if let StreamKind::Chat { .. } = kind {
            for i in 0..count {
                let c = json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]);
                let mut event = chunk(c, None);
                if let (0, Some(m)) = (i, &memories) {
                    let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}],
                        "memories": m});
                    if include_usage {
                        v["usage"] = Value::Null;
                    }
                    event = SseEvent::default().data(v.to_string());
                }
                if out_tx.send(event).await.is_err() {
                    return;
                }
            }
        }
        let start = Instant::now();
        let mut last = vec![None::<Instant>; count];
        let mut done = Vec::new();
        // The first choice's text, for `after` (the whole reply learns from choice 0 too).
        let mut first_text = None::<String>;
        let mut left = count;
        while left > 0 {
            let Some((i, ev)) = rx.recv().await else {
                return;
            };
            let choice = match ev {
                Event::Token { text, sampled } => {
                    state.metrics.observe_token(&mut last[i], start);
                    // The end-of-generation token only flushes text; it has no logprob entry.
                    let eog = m.tokenizer.is_eog(sampled.token);
                    match kind {
                        StreamKind::Chat { logprobs } => {
                            let logprobs = logprobs && !eog;
                            if text.is_empty() && !logprobs {
                                continue;
                            }
                            let lp = logprobs.then(|| ChoiceLogprobs {
                                content: vec![token_logprob(&m, &sampled)],
                            });
                            json!([{"index": i, "delta": {"content": text}, "logprobs": lp, "finish_reason": null}])
                        }
                        StreamKind::Text { logprobs } => {
                            let logprobs = logprobs && !eog;
                            if text.is_empty() && !logprobs {
                                continue;
                            }
                            let lp = logprobs
                                .then(|| legacy_logprobs(&m, std::slice::from_ref(&sampled)));
                            json!([{"index": i, "text": text, "logprobs": lp, "finish_reason": null}])
                        }
                    }
                }
                Event::Done(c) => {
                    left -= 1;
                    if i == 0 {
                        first_text = Some(c.text.clone());
                    }
                    let f = finish_str(c.finish);
                    done.push(c);
                    match kind {
                        StreamKind::Chat { .. } => {
                            json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": f}])
                        }
                        StreamKind::Text { .. } => {
                            json!([{"index": i, "text": "", "logprobs": null, "finish_reason": f}])
                        }
                    }
                }
                Event::Failed(e) => {
                    let err = ApiError::internal(&e).body();
                    let _ = out_tx.send(SseEvent::default().data(err.to_string())).await;
                    return;
                }
            };
            if out_tx.send(chunk(choice, None)).await.is_err() {
                // The client went away: dropping `rx` here cancels the sequences.
                return;
            }
        }
        if let (Some(f), Some(text)) = (after, &first_text) {
            f(text);
        }
        if include_usage {
            let u = usage(&done, n);
            let _ = out_tx.send(chunk(json!([]), Some(u))).await;
        }
        let _ = out_tx.send(SseEvent::default().data("[DONE]")).await;
    });
    let body = futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The base model, then `BASE+NAME` for every stored adapter.
pub async fn models(State(state): State<AppState>) -> Response {
    let entry = |id: String| {
        json!({
            "id": id,
            "object": "model",
            "created": state.started,
            "owned_by": "autodidact",
            "context_length": state.engine.config.gen.n_ctx,
        })
    };
    let mut data = vec![entry(state.model_name.clone())];
    if let Some(store) = &state.adapters {
        for name in store.names() {
            data.push(entry(format!("{}+{name}", state.model_name)));
        }
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

/// Liveness, and what a client needs to size its requests (the web UI caps max tokens and trims
/// its history with these).
pub async fn health(State(state): State<AppState>) -> Response {
    Json(json!({
        "status": "ok",
        "model": state.model_name,
        "context_length": state.engine.config.gen.n_ctx,
        "max_body_bytes": state.body_limit,
    }))
    .into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.engine.stats),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    ApiError::bad_request(
        "no such route; the API lives under /v1 (chat/completions, completions, models)",
    )
    .status(StatusCode::NOT_FOUND)
    .into_response()
}
