//! The fast tier: the HTTP surface over a tiny random model, in process (`oneshot`) where it fits
//! and over real HTTP where the transport matters. Who may call (Content-Type, Host, Origin),
//! errors that name the field and never the parser, bounded work, limits a request can never fit,
//! truncation, stop strings, `n` choices and cancellation, all without the real model.
use autodidact_engine::{EngineConfig, EngineHandle, GenConfig};
use autodidact_kernels::GgmlType;
use autodidact_model::testing::{tiny_model_with, TinySpec};
use autodidact_model::{Arch, Model};
use autodidact_server::{AllowedHosts, AppState, DROPPED_HEADER};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tower::ServiceExt;

pub(crate) fn tiny() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        let spec = TinySpec::new(Arch::Gemma3, GgmlType::F32, 11);
        let path = std::env::temp_dir().join(format!("ad-server-tiny-{}.gguf", std::process::id()));
        std::fs::write(&path, tiny_model_with(&spec)).unwrap();
        let m = Model::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        Arc::new(m)
    })
    .clone()
}

/// A server state over the tiny model. Its trained context is 256, but the random weights do not
/// care, so tests may ask for more (the CLI clamps; see `serve.rs`).
pub(crate) fn state(ctx: usize, parallel: usize, queue: usize) -> AppState {
    let engine = EngineHandle::spawn(
        tiny(),
        EngineConfig {
            gen: GenConfig {
                n_ctx: ctx,
                max_parked: parallel,
                ..GenConfig::default()
            },
            max_active: parallel,
            max_queued: queue,
        },
    )
    .unwrap();
    AppState::new(engine, "tiny".into(), None)
}

fn shared() -> AppState {
    static S: OnceLock<AppState> = OnceLock::new();
    S.get_or_init(|| state(512, 4, 8)).clone()
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// An OpenAI-shaped error with `status` whose message holds `needle`.
    pub(crate) fn error(&self, status: u16, needle: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let e = self.json()["error"].clone();
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
        assert!(e["type"].is_string(), "{}", self.body);
        e
    }
}

/// Sends `req` through the router in process. `Host: 127.0.0.1:8080` unless the test sets one.
pub(crate) async fn call(state: &AppState, mut req: Request<Body>) -> Reply {
    if !req.headers().contains_key("host") {
        req.headers_mut()
            .insert("host", "127.0.0.1:8080".parse().unwrap());
    }
    let r = autodidact_server::app(state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub(crate) fn post_with(
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Request<Body> {
    let mut b = Request::post(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

pub(crate) const JSON: (&str, &str) = ("content-type", "application/json");

pub(crate) async fn post(state: &AppState, path: &str, body: &Value) -> Reply {
    call(state, post_with(path, &[JSON], body.to_string())).await
}

pub(crate) fn chat(content: &str, extra: Value) -> Value {
    let mut b = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 4,
    });
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

#[tokio::test]
async fn a_cross_origin_simple_post_is_refused_for_its_content_type() {
    let s = shared();
    let body = chat("Hi", json!({})).to_string();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
        let r = call(
            &s,
            post_with("/v1/chat/completions", &headers, body.clone()),
        )
        .await;
        let e = r.error(415, "application/json");
        assert_eq!(e["code"], "unsupported_media_type");
    }
    let r = call(
        &s,
        post_with(
            "/v1/completions",
            &[("content-type", "text/plain;charset=UTF-8")],
            json!({"model": "tiny", "prompt": "a"}).to_string(),
        ),
    )
    .await;
    r.error(415, "Content-Type");
    let ok = call(
        &s,
        post_with(
            "/v1/chat/completions",
            &[("content-type", "Application/JSON; charset=utf-8")],
            body,
        ),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn a_dns_rebinding_host_is_refused_unless_allowed() {
    let s = shared();
    let body = chat("Hi", json!({})).to_string();
    let with_host = |h: &str| post_with("/v1/chat/completions", &[JSON, ("host", h)], body.clone());
    for bad in [
        "rebind.attacker.test:8080",
        "localhost.attacker.test",
        "127.0.0.1.nip.io:8080",
    ] {
        let e = call(&s, with_host(bad)).await.error(403, "Host");
        assert_eq!(e["code"], "host_not_allowed");
        let get = Request::get("/v1/models")
            .header("host", bad)
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&s, get).await.status, 403);
        let ui = Request::get("/")
            .header("host", bad)
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&s, ui).await.status, 403);
    }
    for good in ["localhost:8080", "127.0.0.1", "[::1]:9", "LocalHost"] {
        let r = call(&s, with_host(good)).await;
        assert_eq!(r.status, 200, "{good}: {}", r.body);
    }
    // An allow-list adds names; `Any` (a server bound to a network address) takes every name.
    let mut listed = s.clone();
    listed.allowed_hosts = AllowedHosts::loopback_and(&["mybox.lan".into()]);
    assert_eq!(call(&listed, with_host("mybox.lan:8080")).await.status, 200);
    assert_eq!(
        call(&listed, with_host("rebind.attacker.test"))
            .await
            .status,
        403
    );
    let mut any = s.clone();
    any.allowed_hosts = AllowedHosts::Any;
    assert_eq!(
        call(&any, with_host("rebind.attacker.test")).await.status,
        200
    );
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_the_same_origin_ui_works() {
    let s = shared();
    let body = chat("Hi", json!({})).to_string();
    let from = |origin: &str| {
        post_with(
            "/v1/chat/completions",
            &[JSON, ("host", "127.0.0.1:8080"), ("origin", origin)],
            body.clone(),
        )
    };
    for foreign in [
        "http://evil.example",
        "http://127.0.0.1:9999",
        "http://localhost:8080",
        "null",
        "file://",
    ] {
        let e = call(&s, from(foreign)).await.error(403, "origin");
        assert_eq!(e["code"], "origin_not_allowed", "{foreign}");
    }
    // The page itself, then its own requests (a browser sends Origin on same-origin POSTs).
    let page = call(&s, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/v1/chat/completions"));
    let r = call(&s, from("http://127.0.0.1:8080")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["object"], "chat.completion");
    let health = call(
        &s,
        Request::get("/health")
            .header("origin", "http://127.0.0.1:8080")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn errors_name_the_field_and_never_the_parser_or_paths() {
    let s = shared();
    let raw = |b: &'static str| post_with("/v1/chat/completions", &[JSON], b);
    let cases: Vec<(Request<Body>, u16, &str, Option<&str>)> = vec![
        (
            raw("{not json"),
            400,
            "not valid JSON (line 1, column 2)",
            None,
        ),
        (raw("{\"model\": \"tiny\""), 400, "ends early", None),
        (raw("[1, 2]"), 400, "must be a JSON object", None),
        (
            raw(r#"{"messages":[{"role":"user","content":"hi"}]}"#),
            400,
            "`model` is required",
            Some("model"),
        ),
        (
            raw(r#"{"model":"tiny"}"#),
            400,
            "`messages` is required",
            Some("messages"),
        ),
        (
            raw(r#"{"model":"tiny","messages":"hi"}"#),
            400,
            "`messages` must be a list",
            Some("messages"),
        ),
        (
            raw(r#"{"model":"tiny","messages":[{"role":"user","content":7}]}"#),
            400,
            "`messages[0].content` must be a string or a list of content parts",
            Some("messages[0].content"),
        ),
        (
            raw(r#"{"model":"tiny","messages":[{"role":"user","content":[{"text":"x"}]}]}"#),
            400,
            "`messages[0].content[0].type` is required",
            Some("messages[0].content[0].type"),
        ),
        (
            raw(r#"{"model":"tiny","messages":[{"content":"hi"}]}"#),
            400,
            "`messages[0].role` is required",
            Some("messages[0].role"),
        ),
        (
            raw(r#"{"model":"tiny","messages":[{"role":"wizard","content":"hi"}]}"#),
            400,
            "role `wizard`",
            Some("messages[0].role"),
        ),
        (
            raw(
                r#"{"model":"tiny","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#,
            ),
            400,
            "`temperature` must be a number",
            Some("temperature"),
        ),
        (
            raw(r#"{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":-1}"#),
            400,
            "`max_tokens` must be a whole number",
            Some("max_tokens"),
        ),
        (
            raw(r#"{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stop":[1]}"#),
            400,
            "`stop` must be a string or a list of strings",
            Some("stop"),
        ),
        (
            raw(
                r#"{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":1}}"#,
            ),
            400,
            "`stream_options.include_usage` must be true or false",
            Some("stream_options.include_usage"),
        ),
        (
            raw(r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#),
            404,
            "model `nope` does not exist",
            Some("model"),
        ),
        (
            raw(r#"{"model":"tiny+gone","messages":[{"role":"user","content":"hi"}]}"#),
            404,
            "adapter `gone`",
            Some("model"),
        ),
        (
            post_with(
                "/v1/completions",
                &[JSON],
                r#"{"model":"tiny","prompt":{"a":1}}"#,
            ),
            400,
            "`prompt` must be a string or a list of strings",
            Some("prompt"),
        ),
    ];
    for (req, status, needle, param) in cases {
        let r = call(&s, req).await;
        let e = r.error(status, needle);
        assert_eq!(e["param"].as_str(), param, "{}", r.body);
        for leak in [
            "untagged",
            "struct ",
            "Some(",
            "serde",
            "variant",
            "invalid type",
            "/tmp",
            "/home",
        ] {
            assert!(!r.body.contains(leak), "{leak:?} leaked: {}", r.body);
        }
    }
    // Null counts as absent, as in OpenAI's API; unknown fields are ignored.
    let r = post(
        &s,
        "/v1/chat/completions",
        &chat("hi", json!({"temperature": null, "user": "x"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn requests_that_can_never_run_or_ask_for_nothing_are_400() {
    let s = state(512, 1, 1);
    let cases = [
        (chat("hi", json!({"n": 3})), "n", "sequences"),
        (
            chat("hi", json!({"max_tokens": 0})),
            "max_tokens",
            "at least 1",
        ),
        (
            chat("hi", json!({"max_completion_tokens": 0})),
            "max_tokens",
            "at least 1",
        ),
        (
            chat("hi", json!({"frequency_penalty": 1000})),
            "frequency_penalty",
            "between -2 and 2",
        ),
        (
            chat("hi", json!({"presence_penalty": -2.5})),
            "presence_penalty",
            "between -2 and 2",
        ),
        (
            chat("hi", json!({"logprobs": true, "top_logprobs": 21})),
            "top_logprobs",
            "at most",
        ),
        (
            chat("hi", json!({"stop": ["a", "b", "c", "d", "e"]})),
            "stop",
            "at most 4",
        ),
        (
            chat("hi", json!({"stop": ["x".repeat(513)]})),
            "stop[0]",
            "512 bytes",
        ),
        (chat("hi", json!({"n": 17})), "n", "n must be between"),
        (
            chat("hi", json!({"truncation": "sometimes"})),
            "truncation",
            "auto",
        ),
    ];
    for (body, param, needle) in cases {
        let e = post(&s, "/v1/chat/completions", &body)
            .await
            .error(400, needle);
        assert_eq!(e["param"], param, "{body}");
    }
    let e = post(
        &s,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": ["a", "b", "c"], "max_tokens": 2}),
    )
    .await
    .error(400, "3 sequences");
    assert_eq!(e["param"], "n");
    // The edges of the ranges are fine, and two sequences fit a server of one slot and one queued.
    let ok = post(
        &s,
        "/v1/chat/completions",
        &chat(
            "hi",
            json!({"n": 2, "frequency_penalty": 2, "presence_penalty": -2}),
        ),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["choices"].as_array().unwrap().len(), 2);
}

/// Starts `state` on a free loopback port over real HTTP.
pub(crate) fn serve(state: AppState) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            autodidact_server::serve(l, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    port
}

/// Sends `head` and `body` raw; returns the status line's code (0 if none came in 20 s).
fn raw_http(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    let _ = c.write_all(body);
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[test]
fn oversized_bodies_are_refused_before_they_are_read() {
    let s = state(512, 2, 2);
    let limit = s.body_limit;
    assert_eq!(limit, autodidact_server::default_body_limit(512));
    let port = serve(s);
    // A declared length past the limit is refused at once, not waited for.
    let t = Instant::now();
    let (code, text) = raw_http(
        port,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 99999999999\r\n\r\n",
        b"{\"model\":",
    );
    assert_eq!(code, 413, "{text}");
    assert!(
        text.contains("request_too_large") && text.contains(&limit.to_string()),
        "{text}"
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    // A chunked body (no length declared) is cut off at the limit.
    let big = chat(&"x".repeat(limit), json!({})).to_string();
    let chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let (code, text) = raw_http(
        port,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        chunked.as_bytes(),
    );
    assert_eq!(code, 413, "{text}");
    // Health tells clients the limits.
    let (code, text) = raw_http(
        port,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert_eq!(code, 200);
    assert!(
        text.contains("\"context_length\":512")
            && text.contains(&format!("\"max_body_bytes\":{limit}")),
        "{text}"
    );
}

#[tokio::test]
async fn text_that_cannot_fit_is_refused_and_text_that_can_is_measured() {
    let mut s = state(128, 2, 2);
    s.body_limit = 1 << 20;
    // More bytes than 128 tokens can ever stand for: refused without tokenizing.
    let huge = "y".repeat(128 * s.max_token_bytes + 1);
    let e = post(&s, "/v1/chat/completions", &chat(&huge, json!({})))
        .await
        .error(400, "at least");
    assert_eq!(e["code"], "context_length_exceeded");
    let e = post(
        &s,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": ["a", huge]}),
    )
    .await
    .error(400, "at least");
    assert_eq!(e["param"], "prompt[1]");
    // Short enough in bytes to be possible, too long once tokenized: the exact count.
    let e = post(
        &s,
        "/v1/chat/completions",
        &chat(&"y".repeat(200), json!({})),
    )
    .await
    .error(400, "the context holds 128");
    assert_eq!(e["code"], "context_length_exceeded");
}

/// A chat of `turns` user/assistant exchanges of `len` letters each, then a last question.
fn long_chat(turns: usize, len: usize) -> Vec<Value> {
    let mut m = vec![json!({"role": "system", "content": "Be brief."})];
    for i in 0..turns {
        let letter = (b'a' + (i % 26) as u8) as char;
        m.push(json!({"role": "user", "content": letter.to_string().repeat(len)}));
        m.push(json!({"role": "assistant", "content": "ok".repeat(len / 2)}));
    }
    m.push(json!({"role": "user", "content": "last?"}));
    m
}

#[tokio::test]
async fn truncation_drops_the_oldest_turns_and_says_how_many() {
    let s = state(256, 2, 2);
    let body = |extra: Value| {
        let mut b = json!({"model": "tiny", "messages": long_chat(8, 30), "max_tokens": 16, "temperature": 0});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    post(&s, "/v1/chat/completions", &body(json!({})))
        .await
        .error(400, "truncation");
    for (state, extra) in [
        (s.clone(), json!({"truncation": "auto"})),
        (
            AppState {
                truncate_history: true,
                ..s.clone()
            },
            json!({}),
        ),
    ] {
        let r = post(&state, "/v1/chat/completions", &body(extra)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let dropped: usize = r.headers[DROPPED_HEADER].to_str().unwrap().parse().unwrap();
        // Whole exchanges go, so the kept history starts with a user turn.
        assert!(dropped > 0 && dropped & 1 == 0 && dropped < 16, "{dropped}");
        let prompt = r.json()["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
        assert!(prompt + 16 <= 256, "{prompt}");
    }
    let on = AppState {
        truncate_history: true,
        ..s.clone()
    };
    post(
        &on,
        "/v1/chat/completions",
        &body(json!({"truncation": "disabled"})),
    )
    .await
    .error(400, "context");
    // A chat that fits is sent whole, without the header; streaming carries the header too.
    let r = post(&on, "/v1/chat/completions", &chat("hi", json!({}))).await;
    assert_eq!(r.status, 200);
    assert!(!r.headers.contains_key(DROPPED_HEADER));
    let r = post(&on, "/v1/chat/completions", &body(json!({"stream": true}))).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.contains_key(DROPPED_HEADER));
    assert!(r.body.contains("[DONE]"));
    // The last message alone can be too long: that is still the request's to fix.
    post(
        &on,
        "/v1/chat/completions",
        &chat(&"z".repeat(300), json!({"max_tokens": 16})),
    )
    .await
    .error(400, "last message");
}

fn text_of(r: &Reply, i: usize) -> String {
    r.json()["choices"][i]["text"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn stop_strings_cut_the_text_where_they_start() {
    let s = shared();
    let body = |stop: Option<&str>| {
        let mut b = json!({"model": "tiny", "prompt": "abc", "max_tokens": 24, "temperature": 0, "ignore_eos": true});
        if let Some(x) = stop {
            b["stop"] = json!([x]);
        }
        b
    };
    let whole = post(&s, "/v1/completions", &body(None)).await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    let text = text_of(&whole, 0);
    assert_eq!(whole.json()["choices"][0]["finish_reason"], "length");
    // A stop taken from the middle of the greedy text: the reply ends just before it.
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 8, "{text:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let cut = post(&s, "/v1/completions", &body(Some(&stop))).await;
    let want = &text[..text.find(&stop).unwrap()];
    assert_eq!(text_of(&cut, 0), want);
    assert_eq!(cut.json()["choices"][0]["finish_reason"], "stop");
    // Streamed, the held-back prefix of a stop string never reaches the client.
    let mut b = body(Some(&stop));
    b["stream"] = json!(true);
    let streamed = post(&s, "/v1/completions", &b).await;
    let got: String = streamed
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn n_choices_run_together_with_successive_seeds() {
    let s = shared();
    let body = json!({"model": "tiny", "prompt": ["ab", "cd"], "max_tokens": 6, "temperature": 1.0,
                      "seed": 5, "n": 2, "ignore_eos": true});
    let a = post(&s, "/v1/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    let choices = j["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
    }
    assert_eq!(j["usage"]["completion_tokens"], 24);
    // The same seed gives the same texts.
    let b = post(&s, "/v1/completions", &body).await;
    for i in 0..4 {
        assert_eq!(text_of(&a, i), text_of(&b, i));
    }
}

#[tokio::test]
async fn a_dropped_stream_cancels_its_sequence() {
    let s = state(4096, 2, 2);
    let body = json!({"model": "tiny", "prompt": "abc", "max_tokens": 4000, "stream": true,
                      "temperature": 0.8, "ignore_eos": true});
    let mut req = post_with("/v1/completions", &[JSON], body.to_string());
    req.headers_mut()
        .insert("host", "localhost".parse().unwrap());
    let r = autodidact_server::app(s.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut frames = r.into_body().into_data_stream();
    let mut events = 0;
    while events < 3 {
        let chunk = frames.next().await.unwrap().unwrap();
        events += String::from_utf8_lossy(&chunk).matches("data:").count();
    }
    drop(frames);
    let stats = &s.engine.stats;
    let t = Instant::now();
    while stats.active.load(Ordering::Relaxed) != 0 {
        assert!(t.elapsed() < Duration::from_secs(30), "still generating");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let made = stats.completion_tokens.load(Ordering::Relaxed);
    assert!(made < 4000, "{made} tokens: the generation ran to its end");
}

#[tokio::test]
async fn health_and_models_report_the_context() {
    let s = shared();
    let h = call(&s, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(h.json()["context_length"], 512);
    assert_eq!(h.json()["max_body_bytes"], s.body_limit);
    let m = call(&s, Request::get("/v1/models").body(Body::empty()).unwrap()).await;
    assert_eq!(m.json()["data"][0]["context_length"], 512);
}
