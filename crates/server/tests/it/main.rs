//! Server tests over real HTTP on loopback against the real default model: chat and completions,
//! streaming, logprobs, errors in OpenAI's shape, auth, queue limits, disconnect cancellation and
//! concurrent streams. Each server binds a free port; the model is loaded once and shared. The
//! fast tier, over a tiny random model, is in `tiny.rs`.
mod improve;
mod memory;
mod tiny;

use autodidact_engine::{
    generate, AdapterCache, AdapterMeta, EngineConfig, EngineHandle, GenConfig, Request,
    SamplingParams,
};
use autodidact_model::{ChatTemplate, Message, Model};
use autodidact_server::AppState;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn model() -> Option<Arc<Model>> {
    static M: OnceLock<Option<Arc<Model>>> = OnceLock::new();
    M.get_or_init(|| {
        let path = autodidact_model::testing::real_model_path()?;
        Some(Arc::new(Model::load(&path).expect("model loads")))
    })
    .clone()
}

struct Opts {
    ctx: usize,
    parallel: usize,
    queue: usize,
    key: Option<&'static str>,
    body_limit: usize,
    adapters: Option<Arc<AdapterCache>>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            ctx: 1024,
            parallel: 4,
            queue: 16,
            key: None,
            body_limit: autodidact_server::default_body_limit(1024),
            adapters: None,
        }
    }
}

/// Starts a server on a free loopback port; it lives until the test process ends.
fn start(o: Opts) -> Option<u16> {
    let m = model()?;
    let engine = EngineHandle::spawn(
        m,
        EngineConfig {
            gen: GenConfig {
                n_ctx: o.ctx,
                max_parked: o.parallel,
                ..GenConfig::default()
            },
            max_active: o.parallel,
            max_queued: o.queue,
        },
    )
    .unwrap();
    let mut state = AppState::new(engine, "gemma3-270m".into(), o.key.map(String::from));
    state.body_limit = o.body_limit;
    state.adapters = o.adapters;
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
            autodidact_server::serve(l, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    Some(port)
}

fn shared() -> Option<u16> {
    static P: OnceLock<Option<u16>> = OnceLock::new();
    *P.get_or_init(|| start(Opts::default()))
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn send_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before reading a large body; a failed write is then fine.
    let _ = s.write_all(body);
    s
}

fn dechunk(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = send_request(port, method, path, headers, body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Reply {
        status,
        headers: head.to_string(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    }
}

fn post(port: u16, path: &str, body: &Value) -> Reply {
    http(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(|d| d.trim().to_string())
        .collect()
}

fn assert_error(r: &Reply, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let e = &r.json()["error"];
    let msg = e["message"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
    assert!(e["type"].is_string(), "{}", r.body);
}

fn chat_body(content: &str, extra: Value) -> Value {
    let mut b = json!({
        "model": "gemma3-270m",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 12,
    });
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn chat_matches_the_engine_and_reports_usage_and_logprobs() {
    let Some(port) = shared() else { return };
    let r = post(
        port,
        "/v1/chat/completions",
        &chat_body(
            "What is the capital of France?",
            json!({"logprobs": true, "top_logprobs": 3}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["object"], "chat.completion");
    let choice = &j["choices"][0];
    let text = choice["message"]["content"].as_str().unwrap();
    assert_eq!(choice["message"]["role"], "assistant");

    // The same prompt through the engine directly gives the same greedy text.
    let m = model().unwrap();
    let prompt = ChatTemplate::for_tokenizer(&m.tokenizer)
        .render_tokens(
            &m.tokenizer,
            &[Message::new("user", "What is the capital of France?")],
        )
        .unwrap();
    let want = generate(
        &m,
        GenConfig {
            n_ctx: 1024,
            ..GenConfig::default()
        },
        vec![Request {
            prompt: prompt.clone(),
            params: SamplingParams {
                max_tokens: 12,
                ..SamplingParams::greedy()
            },
            json: None,
            adapter: None,
        }],
        |_| true,
    )
    .unwrap();
    assert_eq!(text, want[0].text);
    let usage = &j["usage"];
    assert_eq!(usage["prompt_tokens"], prompt.len());
    assert_eq!(usage["completion_tokens"], want[0].tokens.len());
    assert_eq!(usage["total_tokens"], prompt.len() + want[0].tokens.len());
    let lp = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(lp.len(), want[0].logprobs.len());
    for t in lp {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top[0]["token"], t["token"]);
        assert!(top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64());
        assert!(t["logprob"].as_f64().unwrap() <= 0.0);
    }
}

#[test]
fn streaming_gives_the_same_text_then_usage_and_done() {
    let Some(port) = shared() else { return };
    let whole = post(
        port,
        "/v1/chat/completions",
        &chat_body("Tell me about cats.", json!({})),
    );
    let want = whole.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post(
        port,
        "/v1/chat/completions",
        &chat_body(
            "Tell me about cats.",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(r.status, 200);
    assert!(r.headers.to_ascii_lowercase().contains("text/event-stream"));
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, want);
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish.len(), 1);
    let usage = &chunks.last().unwrap()["usage"];
    assert!(chunks.last().unwrap()["choices"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        usage["completion_tokens"],
        whole.json()["usage"]["completion_tokens"]
    );
}

#[test]
fn completions_n_stop_and_seed() {
    let Some(port) = shared() else { return };
    let body = json!({
        "model": "gemma3-270m", "prompt": "The quick brown fox", "max_tokens": 16,
        "temperature": 0.9, "seed": 7, "n": 2, "logprobs": 2,
    });
    let a = post(port, "/v1/completions", &body);
    assert_eq!(a.status, 200, "{}", a.body);
    let b = post(port, "/v1/completions", &body);
    let (ja, jb) = (a.json(), b.json());
    assert_eq!(ja["object"], "text_completion");
    assert_eq!(ja["choices"].as_array().unwrap().len(), 2);
    // Same seed, same text; choices use successive seeds.
    assert_eq!(ja["choices"][0]["text"], jb["choices"][0]["text"]);
    assert_eq!(ja["choices"][1]["text"], jb["choices"][1]["text"]);
    assert_eq!(
        ja["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .unwrap()
            .len(),
        ja["usage"]["completion_tokens"].as_u64().unwrap() as usize / 2
    );
    // A stop string that the greedy text contains cuts it there.
    let greedy = post(
        port,
        "/v1/completions",
        &json!({"model": "gemma3-270m", "prompt": "1, 2, 3, 4,", "max_tokens": 12, "temperature": 0}),
    );
    let text = greedy.json()["choices"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let stop = text.trim().split(',').nth(1).map(|s| s.trim().to_string());
    if let Some(stop) = stop.filter(|s| !s.is_empty()) {
        let cut = post(
            port,
            "/v1/completions",
            &json!({"model": "gemma3-270m", "prompt": "1, 2, 3, 4,", "max_tokens": 12, "temperature": 0, "stop": [stop.clone()]}),
        );
        let jc = cut.json();
        let t = jc["choices"][0]["text"].as_str().unwrap();
        assert!(
            !t.contains(&stop) && text.starts_with(t),
            "{t:?} vs {text:?} stop {stop:?}"
        );
        assert_eq!(jc["choices"][0]["finish_reason"], "stop");
    }
}

#[test]
fn response_format_constrains_output_to_json_and_schema() {
    let Some(port) = shared() else { return };
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}}
        },
        "required": ["name", "age", "pets"]
    });
    let mut parsed = 0;
    for seed in 0..3 {
        let r = post(
            port,
            "/v1/chat/completions",
            &chat_body(
                "Describe a person as JSON.",
                json!({"temperature": 0.8, "seed": seed, "max_tokens": 200,
                       "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}}),
            ),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let c = &r.json()["choices"][0];
        let text = c["message"]["content"].as_str().unwrap();
        if c["finish_reason"] == "length" {
            continue;
        }
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
        for p in v["pets"].as_array().unwrap() {
            assert!(p == "cat" || p == "dog", "{v}");
        }
        parsed += 1;
    }
    assert!(parsed > 0, "every constrained reply ran out of tokens");
    let r = post(
        port,
        "/v1/chat/completions",
        &chat_body(
            "Give me JSON.",
            json!({"max_tokens": 300, "response_format": {"type": "json_object"}}),
        ),
    );
    let c = &r.json()["choices"][0];
    if c["finish_reason"] == "stop" {
        let v: Value = serde_json::from_str(c["message"]["content"].as_str().unwrap()).unwrap();
        assert!(v.is_object());
    }
    let bad = post(
        port,
        "/v1/chat/completions",
        &chat_body(
            "x",
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"anyOf": []}}}}),
        ),
    );
    assert_error(&bad, 400, "anyOf");
}

#[test]
fn bad_input_gets_openai_errors_never_500() {
    let Some(port) = shared() else { return };
    let j = |b: &str| {
        http(
            port,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            b.as_bytes(),
        )
    };
    assert_error(&j("{not json"), 400, "not valid JSON");
    assert_error(
        &j(r#"{"model":"gemma3-270m","messages":"hi"}"#),
        400,
        "`messages` must be a list",
    );
    assert_error(
        &j(
            r#"{"model":"gemma3-270m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#,
        ),
        400,
        "`temperature` must be a number",
    );
    assert_error(
        &j(r#"{"model":"gemma3-270m","messages":[]}"#),
        400,
        "messages",
    );
    assert_error(
        &j(r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#),
        404,
        "does not exist",
    );
    assert_error(
        &j(r#"{"model":"gemma3-270m","messages":[{"role":"wizard","content":"hi"}]}"#),
        400,
        "role",
    );
    assert_error(
        &j(
            r#"{"model":"gemma3-270m","messages":[{"role":"user","content":"hi"}],"max_tokens":100000}"#,
        ),
        400,
        "max_tokens",
    );
    assert_error(
        &j(r#"{"model":"gemma3-270m","messages":[{"role":"user","content":"hi"}],"n":1000}"#),
        400,
        "n must",
    );
    assert_error(
        &j(
            r#"{"model":"gemma3-270m","messages":[{"role":"user","content":"hi"}],"temperature":-1}"#,
        ),
        400,
        "temperature",
    );
    let long = "word ".repeat(3000);
    let r = post(port, "/v1/chat/completions", &chat_body(&long, json!({})));
    assert_error(&r, 400, "context");
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    assert_error(
        &http(port, "GET", "/nowhere", &[], b""),
        404,
        "no such route",
    );
    // Unicode in, unicode out.
    let r = post(
        port,
        "/v1/chat/completions",
        &chat_body("Привет, 世界! 👋🏽 ñ", json!({"max_tokens": 6})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn oversized_bodies_are_refused() {
    let Some(port) = start(Opts {
        body_limit: 4096,
        ..Opts::default()
    }) else {
        return;
    };
    let big = chat_body(&"x".repeat(10_000), json!({}));
    assert_error(&post(port, "/v1/chat/completions", &big), 413, "larger");
}

#[test]
fn api_key_guards_v1_routes() {
    let Some(port) = start(Opts {
        key: Some("sekret"),
        ..Opts::default()
    }) else {
        return;
    };
    let body = chat_body("hi", json!({"max_tokens": 2})).to_string();
    let ct = ("Content-Type", "application/json");
    let none = http(port, "POST", "/v1/chat/completions", &[ct], body.as_bytes());
    assert_error(&none, 401, "API key");
    let wrong = http(
        port,
        "POST",
        "/v1/chat/completions",
        &[ct, ("Authorization", "Bearer nope")],
        body.as_bytes(),
    );
    assert_eq!(wrong.status, 401);
    let right = http(
        port,
        "POST",
        "/v1/chat/completions",
        &[ct, ("Authorization", "Bearer sekret")],
        body.as_bytes(),
    );
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(http(port, "GET", "/v1/models", &[], b"").status, 401);
    assert_eq!(http(port, "GET", "/health", &[], b"").status, 200);
}

fn metric(port: u16, name: &str) -> f64 {
    let m = http(port, "GET", "/metrics", &[], b"").body;
    m.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Reads SSE lines until `n` data lines arrived.
fn read_events(s: TcpStream, n: usize) -> BufReader<TcpStream> {
    let mut r = BufReader::new(s);
    let mut got = 0;
    let mut line = String::new();
    while got < n {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.starts_with("data:") {
            got += 1;
        }
    }
    r
}

#[test]
fn a_client_that_disconnects_cancels_its_generation() {
    let Some(port) = start(Opts::default()) else {
        return;
    };
    let body = chat_body(
        "Write a long story.",
        json!({"stream": true, "max_tokens": 900, "temperature": 0.8}),
    );
    let s = send_request(
        port,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    let r = read_events(s, 3);
    assert_eq!(metric(port, "autodidact_active_sequences "), 1.0);
    drop(r);
    let t = Instant::now();
    while metric(port, "autodidact_active_sequences ") != 0.0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "sequence still running after disconnect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let generated = metric(port, "autodidact_completion_tokens_total ");
    assert!(
        generated < 900.0,
        "{generated} tokens: generation ran to the end"
    );
}

#[test]
fn concurrent_streams_interleave_and_a_full_queue_says_retry() {
    let Some(port) = start(Opts {
        parallel: 2,
        queue: 1,
        ..Opts::default()
    }) else {
        return;
    };
    let stream = |seed: u64, started: std::sync::mpsc::Sender<()>| {
        std::thread::spawn(move || {
            let body = chat_body(
                "Count to fifty.",
                json!({"stream": true, "max_tokens": 150, "temperature": 0.7, "seed": seed, "ignore_eos": true}),
            );
            let s = send_request(
                port,
                "POST",
                "/v1/chat/completions",
                &[("Content-Type", "application/json")],
                body.to_string().as_bytes(),
            );
            let mut times = Vec::new();
            for line in BufReader::new(s).lines() {
                let line = line.unwrap();
                if line.starts_with("data:") {
                    times.push(Instant::now());
                    if times.len() == 3 {
                        let _ = started.send(());
                    }
                }
            }
            times
        })
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (a, b) = (stream(1, tx.clone()), stream(2, tx.clone()));
    rx.recv_timeout(Duration::from_secs(60)).unwrap();
    rx.recv_timeout(Duration::from_secs(60)).unwrap();
    // Both slots are busy for ~150 tokens: one more request waits in the queue, the next is refused.
    let queued = stream(3, tx);
    let t = Instant::now();
    while metric(port, "autodidact_queue_depth ") < 1.0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "third request never queued"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = post(port, "/v1/chat/completions", &chat_body("hi", json!({})));
    assert_error(&refused, 503, "capacity");
    assert!(refused
        .headers
        .to_ascii_lowercase()
        .contains("retry-after: 1"));
    let (ta, tb) = (a.join().unwrap(), b.join().unwrap());
    assert!(
        queued.join().unwrap().len() > 150,
        "the queued request ran once a slot freed"
    );
    // Interleaved: each stream's events began before the other's ended.
    assert!(ta[1] < *tb.last().unwrap() && tb[1] < *ta.last().unwrap());
}

#[test]
fn the_ui_page_is_served_self_contained() {
    let Some(port) = shared() else { return };
    let r = http(port, "GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.headers.to_ascii_lowercase().contains("text/html"));
    assert!(r.body.contains("/v1/chat/completions") && r.body.contains("glance"));
    assert!(
        !r.body.contains("http://") && !r.body.contains("https://"),
        "no external assets"
    );
}

/// Fills `ad` with seeded uniform values in `±scale / 2`.
pub(crate) fn randomize(ad: &mut autodidact_model::LoraAdapter, seed: u64, scale: f32) {
    let mut s = seed;
    for p in ad
        .layers
        .iter_mut()
        .flat_map(|l| l.pairs.iter_mut().flatten())
    {
        for v in p.a.iter_mut().chain(p.b.iter_mut()) {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *v = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale;
        }
    }
}

/// A random LoRA adapter for the real model, saved in a fresh adapter store.
fn random_adapter_store(m: &Model) -> (Arc<AdapterCache>, Arc<autodidact_model::LoraAdapter>) {
    use autodidact_model::{LoraAdapter, Target};
    let mut ad = LoraAdapter::zeros(&m.config, 4, 8.0, &[Target::Q, Target::V, Target::Down]);
    randomize(&mut ad, 1, 0.5);
    let dir = std::env::temp_dir().join(format!("ad-server-adapters-{}", std::process::id()));
    let store = AdapterCache::new(autodidact_store::Adapters::new(dir), None);
    let meta = AdapterMeta {
        name: "rnd".into(),
        base_model: "gemma3-270m".into(),
        ..AdapterMeta::default()
    };
    store.adapters.save(&ad, &meta).unwrap();
    let loaded = store.get("rnd", &m.config).unwrap();
    (Arc::new(store), loaded)
}

#[test]
fn adapters_are_chosen_per_request_and_listed() {
    let Some(m) = model() else { return };
    let (store, ad) = random_adapter_store(&m);
    let port = start(Opts {
        adapters: Some(store),
        ..Opts::default()
    })
    .unwrap();
    let prompt = "The three primary colors are";
    let engine_text = |adapter: Option<Arc<autodidact_model::LoraAdapter>>| {
        generate(
            &m,
            GenConfig {
                n_ctx: 1024,
                ..GenConfig::default()
            },
            vec![Request {
                prompt: m.tokenizer.encode(prompt, true, true),
                params: SamplingParams {
                    max_tokens: 10,
                    ..SamplingParams::greedy()
                },
                json: None,
                adapter,
            }],
            |_| true,
        )
        .unwrap()[0]
            .text
            .clone()
    };
    let (with, without) = (engine_text(Some(ad)), engine_text(None));
    assert_ne!(with, without, "the adapter should change this greedy text");
    let body = |model: &str, extra: Value| {
        let mut b = json!({"model": model, "prompt": prompt, "max_tokens": 10, "temperature": 0});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    // Both at once: the two sequences share batches with different weights.
    let (a, b) = std::thread::scope(|sc| {
        let a = sc.spawn(|| post(port, "/v1/completions", &body("gemma3-270m+rnd", json!({}))));
        let b = sc.spawn(|| post(port, "/v1/completions", &body("gemma3-270m", json!({}))));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.json()["choices"][0]["text"], with.as_str());
    assert_eq!(a.json()["model"], "gemma3-270m+rnd");
    assert_eq!(b.json()["choices"][0]["text"], without.as_str());
    let c = post(
        port,
        "/v1/completions",
        &body("gemma3-270m", json!({"adapter": "rnd"})),
    );
    assert_eq!(c.json()["choices"][0]["text"], with.as_str());

    let models = http(port, "GET", "/v1/models", &[], b"").json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gemma3-270m", "gemma3-270m+rnd"]);
    assert_error(
        &post(
            port,
            "/v1/completions",
            &body("gemma3-270m+nope", json!({})),
        ),
        404,
        "nope",
    );
    assert_error(
        &post(
            port,
            "/v1/completions",
            &body("gemma3-270m+rnd", json!({"adapter": "other"})),
        ),
        400,
        "adapter",
    );
}
