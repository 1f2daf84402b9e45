//! Memory over the API, on the tiny model: `/v1/memories` and `/v1/conversations` for one user,
//! chat that recalls (and says what it recalled) and learns after the reply, and one user trying
//! every route to reach another's memories.
use crate::tiny::{call, chat, post, post_with, state, Reply, JSON};
use autodidact_memory::chat::ChatMemory;
use autodidact_server::memory::MemoryService;
use autodidact_server::AppState;
use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server with memory in a fresh directory; requests without `user` are the owner's.
fn with_memory() -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut st = state(512, 2, 8);
    let chat = ChatMemory::new(dir.path().join("memory"), None);
    st.memory = Some(Arc::new(MemoryService::new(chat, "owner".into())));
    (st, dir)
}

async fn get(st: &AppState, path: &str) -> Reply {
    call(st, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn delete(st: &AppState, path: &str) -> Reply {
    call(st, Request::delete(path).body(Body::empty()).unwrap()).await
}

async fn patch(st: &AppState, path: &str, body: &Value) -> Reply {
    let mut r = post_with(path, &[JSON], body.to_string());
    *r.method_mut() = axum::http::Method::PATCH;
    call(st, r).await
}

fn texts(r: &Reply) -> Vec<String> {
    r.json()["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.body))
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

/// Polls `user`'s list until `want` is in it (learning runs after the reply is sent).
async fn eventually_remembered(st: &AppState, user: &str, want: &str) {
    let start = Instant::now();
    loop {
        let got = texts(&get(st, &format!("/v1/memories?user={user}")).await);
        if got.iter().any(|t| t == want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{want:?} never remembered: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn memories_are_listed_searched_corrected_forgotten_exported_and_restored() {
    let (st, _dir) = with_memory();
    let r = post(
        &st,
        "/v1/memories",
        &json!({"text": "The user lives in Lyon."}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json()["applied"]["op"], "added", "{}", r.body);
    // The same fact twice is one memory.
    let again = post(
        &st,
        "/v1/memories",
        &json!({"text": "the user lives in lyon"}),
    )
    .await;
    assert_eq!(again.json()["id"].as_i64(), Some(id), "{}", again.body);
    post(
        &st,
        "/v1/memories",
        &json!({"text": "The user prefers tea.", "kind": "preference"}),
    )
    .await;
    assert_eq!(texts(&get(&st, "/v1/memories").await).len(), 2);
    let found = get(&st, "/v1/memories?q=where%20is%20Lyon").await;
    assert_eq!(texts(&found), ["The user lives in Lyon."]);
    assert!(found.json()["data"][0]["score"].as_f64().unwrap() > 0.0);

    let e = patch(
        &st,
        &format!("/v1/memories/{id}"),
        &json!({"text": "The user lives in Lille."}),
    )
    .await;
    assert_eq!(e.json()["text"], "The user lives in Lille.", "{}", e.body);
    let h = get(&st, &format!("/v1/memories/{id}/history")).await;
    let ops: Vec<String> = h.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["op"].as_str().unwrap().to_string())
        .collect();
    assert!(ops.iter().any(|o| o == "edit"), "{}", h.body);

    let export = get(&st, "/v1/memories/export").await.json();
    assert_eq!(export["memories"].as_array().unwrap().len(), 2);
    get(&st, "/v1/memories?confirm=true").await; // a GET never wipes
    delete(&st, "/v1/memories").await.error(400, "confirm=true");
    assert_eq!(texts(&get(&st, "/v1/memories").await).len(), 2);

    let f = delete(&st, &format!("/v1/memories/{id}")).await;
    assert_eq!(f.json()["deleted"], true, "{}", f.body);
    get(&st, &format!("/v1/memories/{id}"))
        .await
        .error(404, "no memory");
    assert_eq!(
        texts(&get(&st, "/v1/memories?q=Lille").await),
        Vec::<String>::new()
    );

    // Import refuses a store that holds something; after a wipe it restores the export exactly.
    post(&st, "/v1/memories/import", &export)
        .await
        .error(400, "wipe it first");
    let w = delete(&st, "/v1/memories?confirm=true").await;
    assert_eq!(w.status.as_u16(), 200, "{}", w.body);
    assert!(texts(&get(&st, "/v1/memories").await).is_empty());
    let i = post(&st, "/v1/memories/import", &export).await;
    assert_eq!(i.json()["memories"], 2, "{}", i.body);
    // Exactly, except that the log of what was forgotten now records the wipe.
    let mut restored = get(&st, "/v1/memories/export").await.json();
    assert_eq!(restored["forget_log"][0]["what"], "wipe");
    restored["forget_log"] = export["forget_log"].clone();
    assert_eq!(restored, export);

    // Bad input is the API's error shape, naming the field.
    post(&st, "/v1/memories", &json!({"kind": "fact"}))
        .await
        .error(400, "`text` is required");
    post(&st, "/v1/memories", &json!({"text": "x", "kind": "gossip"}))
        .await
        .error(400, "unknown memory kind");
    get(&st, "/v1/memories/abc")
        .await
        .error(400, "not a memory id");
    get(&st, "/v1/memories?limit=many")
        .await
        .error(400, "bad query string");
}

#[tokio::test]
async fn chat_recalls_says_which_memories_and_learns_after_the_reply() {
    let (st, _dir) = with_memory();
    let id = post(
        &st,
        "/v1/memories",
        &json!({"text": "The user is allergic to peanuts."}),
    )
    .await
    .json()["id"]
        .as_i64()
        .unwrap();
    let with = post(
        &st,
        "/v1/chat/completions",
        &chat("Can I eat peanuts?", json!({})),
    )
    .await;
    let used = with.json()["memories"].clone();
    assert_eq!(used[0]["id"].as_i64(), Some(id), "{}", with.body);
    let without = post(
        &st,
        "/v1/chat/completions",
        &chat("Can I eat peanuts?", json!({"memory": false})),
    )
    .await;
    assert!(without.json().get("memories").is_none(), "{}", without.body);
    // The memory went into the prompt: it is longer by at least the memory's words.
    let tokens = |r: &Reply| r.json()["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        tokens(&with) > tokens(&without) + 5,
        "{} vs {}",
        with.body,
        without.body
    );
    // Nothing related: nothing recalled.
    let other = post(
        &st,
        "/v1/chat/completions",
        &chat("Tell me about trains.", json!({})),
    )
    .await;
    assert_eq!(other.json()["memories"], json!([]), "{}", other.body);

    // Learning: a stated fact becomes a memory with its source turn, after the reply.
    let r = post(
        &st,
        "/v1/chat/completions",
        &chat("My name is Zed.", json!({"conversation_id": "c1"})),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    eventually_remembered(&st, "owner", "The user's name is Zed.").await;
    let convs = get(&st, "/v1/conversations").await.json();
    let c1 = convs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"] == "chat c1")
        .unwrap_or_else(|| panic!("{convs}"))["id"]
        .as_i64()
        .unwrap();
    // With memory off nothing is learned.
    post(
        &st,
        "/v1/chat/completions",
        &chat("I live in Oslo.", json!({"memory": false})),
    )
    .await;
    // A streamed chat carries the memories on its first chunk and learns too.
    let s = post(
        &st,
        "/v1/chat/completions",
        &chat("My favorite color is teal.", json!({"stream": true})),
    )
    .await;
    let first: Value = serde_json::from_str(
        s.body
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert!(first["memories"].is_array(), "{}", s.body);
    eventually_remembered(&st, "owner", "The user's favorite color is teal.").await;
    assert!(!texts(&get(&st, "/v1/memories").await)
        .iter()
        .any(|t| t.contains("Oslo")));

    // Forgetting the conversation takes what was learned in it.
    let f = delete(&st, &format!("/v1/conversations/{c1}")).await;
    assert_eq!(f.json()["memories_deleted"], 1, "{}", f.body);
    assert!(!texts(&get(&st, "/v1/memories").await)
        .iter()
        .any(|t| t.contains("Zed")));
}

#[tokio::test]
async fn one_user_cannot_reach_another_users_memories_by_any_route() {
    let (st, dir) = with_memory();
    let secret = "The user's bank PIN is 4711.";
    let r = post(&st, "/v1/memories?user=alice", &json!({"text": secret})).await;
    let alice_id = r.json()["id"].as_i64().unwrap();
    post(
        &st,
        "/v1/chat/completions",
        &chat("My name is Alice.", json!({"user": "alice"})),
    )
    .await;
    eventually_remembered(&st, "alice", "The user's name is Alice.").await;
    // Her database and its write-ahead log, byte for byte.
    let files = |d: &std::path::Path| -> Vec<Vec<u8>> {
        ["alice.sqlite3", "alice.sqlite3-wal"]
            .iter()
            .map(|f| std::fs::read(d.join("memory").join(f)).unwrap_or_default())
            .collect()
    };
    let before = files(dir.path());

    for who in ["user=bob", "user=owner", ""] {
        let q = |path: &str| {
            let sep = if path.contains('?') { '&' } else { '?' };
            if who.is_empty() {
                path.to_string()
            } else {
                format!("{path}{sep}{who}")
            }
        };
        assert!(texts(&get(&st, &q("/v1/memories?all=true")).await).is_empty());
        assert!(texts(&get(&st, &q("/v1/memories?q=bank%20PIN%204711")).await).is_empty());
        get(&st, &q(&format!("/v1/memories/{alice_id}")))
            .await
            .error(404, "no memory");
        get(&st, &q(&format!("/v1/memories/{alice_id}/history")))
            .await
            .error(404, "no memory");
        patch(
            &st,
            &q(&format!("/v1/memories/{alice_id}")),
            &json!({"text": "stolen"}),
        )
        .await
        .error(404, "no memory");
        delete(&st, &q(&format!("/v1/memories/{alice_id}")))
            .await
            .error(404, "no memory");
        let e = get(&st, &q("/v1/memories/export")).await.json();
        assert_eq!(e["memories"], json!([]), "{e}");
        let cs = get(&st, &q("/v1/conversations")).await;
        assert_eq!(cs.json()["data"], json!([]), "{}", cs.body);
    }
    // Chat recalls from the asker's memory only (after the reads: it stores a conversation).
    for who in [Some("bob"), Some("owner"), None] {
        let mut body = chat("What is my bank PIN?", json!({}));
        if let Some(u) = who {
            body["user"] = json!(u);
        }
        let c = post(&st, "/v1/chat/completions", &body).await;
        assert_eq!(c.json()["memories"], json!([]), "{}", c.body);
    }
    // Ids that would name another file are refused, wherever the user is given.
    for bad in [
        "..%2Falice",
        "alice%2F..%2Fbob",
        ".alice",
        "%2Ftmp%2Fx",
        "a%00b",
    ] {
        get(&st, &format!("/v1/memories?user={bad}"))
            .await
            .error(400, "invalid user id");
    }
    let mut body = chat("hi", json!({}));
    body["user"] = json!("../alice");
    post(&st, "/v1/chat/completions", &body)
        .await
        .error(400, "invalid user id");
    post(
        &st,
        "/v1/memories?user=bob",
        &json!({"text": "x", "user": "alice"}),
    )
    .await
    .error(400, "differ");
    // Alice's file did not change, and her memories are all there for her.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(files(dir.path()) == before, "alice's files changed");
    let mine = texts(&get(&st, "/v1/memories?user=alice").await);
    assert!(mine.contains(&secret.to_string()), "{mine:?}");
}

#[tokio::test]
async fn memory_yields_to_a_message_that_fits_only_without_it() {
    let (st, _dir) = with_memory();
    let many = (0..40)
        .map(|i| format!("walnut{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    post(
        &st,
        "/v1/memories",
        &json!({"text": format!("The user keeps walnuts: {many}.")}),
    )
    .await;
    // The memory matches, but it is longer than an eighth of the context: not recalled.
    let r = post(&st, "/v1/chat/completions", &chat("walnuts?", json!({}))).await;
    assert_eq!(r.json()["memories"], json!([]), "{}", r.body);
    post(
        &st,
        "/v1/memories",
        &json!({"text": "The user likes walnuts."}),
    )
    .await;
    let r = post(&st, "/v1/chat/completions", &chat("walnuts?", json!({}))).await;
    assert_eq!(
        r.json()["memories"][0]["text"],
        "The user likes walnuts.",
        "{}",
        r.body
    );
    // A request that leaves no room for the memory is answered without it: here the reply asks
    // for all the context the bare prompt leaves.
    let bare = post(
        &st,
        "/v1/chat/completions",
        &chat("walnuts?", json!({"memory": false, "max_tokens": 1})),
    )
    .await;
    let p = bare.json()["usage"]["prompt_tokens"].as_u64().unwrap();
    let mut b = chat("walnuts?", json!({}));
    b["max_tokens"] = json!(512 - p);
    b["ignore_eos"] = json!(false);
    let r = post(&st, "/v1/chat/completions", &b).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!(r.json()["memories"], json!([]), "{}", r.body);
}

#[tokio::test]
async fn bodies_where_none_is_read_big_exports_and_hostile_ones() {
    let (st, dir) = with_memory();
    post(&st, "/v1/memories", &json!({"text": "The user rows."})).await;
    // A `user` in the body of a route that reads none is refused, not ignored.
    let mut r = post_with(
        "/v1/memories?confirm=true",
        &[JSON],
        json!({"user": "nobody"}).to_string(),
    );
    *r.method_mut() = axum::http::Method::DELETE;
    call(&st, r).await.error(400, "takes no body");
    assert_eq!(texts(&get(&st, "/v1/memories").await), ["The user rows."]);
    // Reads naming users that have no memory find nothing and create no file.
    for path in [
        "/v1/memories?user=ghost",
        "/v1/memories?user=ghost&q=rows",
        "/v1/conversations?user=ghost",
    ] {
        assert_eq!(get(&st, path).await.json()["data"], json!([]));
    }
    get(&st, "/v1/memories/1?user=ghost")
        .await
        .error(404, "no memory");
    assert!(!dir.path().join("memory").join("ghost.sqlite3").exists());
    // An export far larger than the chat body limit comes back in whole.
    let mut big = get(&st, "/v1/memories/export").await.json();
    let template = big["memories"][0].clone();
    let memories: Vec<Value> = (1..=400)
        .map(|i| {
            let mut m = template.clone();
            m["id"] = json!(i);
            m["text"] = json!(format!("The user owns boat number {i}."));
            m
        })
        .collect();
    big["memories"] = json!(memories);
    big["history"] = json!([]);
    let body = big.to_string();
    assert!(body.len() > st.body_limit, "{} bytes", body.len());
    let i = post(&st, "/v1/memories/import?user=big", &big).await;
    assert_eq!(i.json()["memories"], 400, "{}", i.body);
    // Broken references are the file's fault (400), never the server's (500).
    let mut cyc = big.clone();
    cyc["memories"][0]["superseded_by"] = json!(2);
    cyc["memories"][1]["superseded_by"] = json!(1);
    for (bad, why) in [
        (json!({"format": "evil", "version": 999}), "memory export"),
        (cyc, "supersedes itself"),
    ] {
        let mut b = big.clone();
        for (k, v) in bad.as_object().unwrap() {
            b[k] = v.clone();
        }
        post(&st, "/v1/memories/import?user=bad", &b)
            .await
            .error(400, why);
    }
    let mut dup = big.clone();
    dup["memories"][1]["id"] = json!(1);
    post(&st, "/v1/memories/import?user=bad", &dup)
        .await
        .error(400, "appears twice");
}

#[tokio::test]
async fn without_memory_the_routes_say_it_is_off_and_chat_has_no_field() {
    let st = state(512, 1, 4);
    get(&st, "/v1/memories").await.error(404, "memory is off");
    let r = post(
        &st,
        "/v1/chat/completions",
        &chat("My name is Zed.", json!({})),
    )
    .await;
    assert!(r.json().get("memories").is_none(), "{}", r.body);
}

#[tokio::test]
async fn an_encrypted_store_opens_only_with_the_servers_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let mem_dir = dir.path().join("memory");
    let key = autodidact_memory::Passphrase::new("server secret").unwrap();
    let mut st = state(512, 2, 8);
    let chat = ChatMemory::new(mem_dir.clone(), None).with_passphrase(Some(key));
    st.memory = Some(Arc::new(MemoryService::new(chat, "owner".into())));
    let r = post(
        &st,
        "/v1/memories",
        &json!({"text": "The user grows saffron.", "kind": "fact"}),
    )
    .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    assert_eq!(
        texts(&get(&st, "/v1/memories").await),
        ["The user grows saffron."]
    );
    let bytes = std::fs::read(mem_dir.join("owner.sqlite3")).unwrap();
    assert!(!bytes.windows(7).any(|w| w == b"saffron"));
    // Another user's store, encrypted with another passphrase: refused, nothing leaks.
    let other = autodidact_memory::Passphrase::new("not the server's").unwrap();
    let mut m = autodidact_memory::UserMemory::open_with(&mem_dir, "guest", Some(&other)).unwrap();
    m.remember(autodidact_memory::NewMemory::new(
        "The guest hides keys under the mat.",
        autodidact_memory::Kind::Fact,
    ))
    .unwrap();
    drop(m);
    let r = get(&st, "/v1/memories?user=guest").await;
    let e = r.error(403, "does not open with this server's passphrase");
    assert_eq!(e["code"], "memory_locked");
    assert!(!r.body.contains("mat") && !r.body.contains(mem_dir.to_str().unwrap()));
}
