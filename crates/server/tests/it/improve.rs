//! `/v1/improve` and the improvement page over a registry written as `improve` writes it: the
//! current self and its lineage, a run's report and plots, rollback, and chat following the
//! current self from one request to the next.
use crate::tiny::{call, chat, post, state};
use autodidact_engine::AdapterCache;
use autodidact_improve::registry::{AdapterRow, CANDIDATE};
use autodidact_improve::{Paths, Registry};
use autodidact_model::{LoraAdapter, Target};
use autodidact_server::improve::SelfImprovement;
use autodidact_store::AdapterMeta;
use axum::body::Body;
use axum::http::Request;
use serde_json::json;
use std::sync::Arc;

fn version(v: i64, parent: Option<i64>) -> AdapterRow {
    AdapterRow {
        version: v,
        name: format!("self-v{v}"),
        run: "run-1".into(),
        round: v - 1,
        parent,
        base_model: "tiny".into(),
        data_hash: "h".into(),
        examples: 10 * v,
        seed: 1,
        config: json!({}),
        status: CANDIDATE.into(),
        reason: String::new(),
        created: 0,
    }
}

/// A LoRA adapter with random weights large enough to change a tiny model's greedy reply.
fn random_adapter(c: &autodidact_model::Config, seed: u64) -> LoraAdapter {
    let mut ad = LoraAdapter::zeros(c, 4, 8.0, &Target::ALL);
    crate::randomize(&mut ad, seed, 2.0);
    ad
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_improvement_routes_show_roll_back_and_chat_follows_the_current_self() {
    let home = std::env::temp_dir().join(format!("ad-server-improve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let paths = Paths::new(&home);
    {
        let mut reg = Registry::open(&paths.registry()).unwrap();
        reg.create_run(
            "run-1",
            "tiny",
            &["arithmetic".into()],
            &json!({"eval_n": 20}),
        )
        .unwrap();
        reg.start_round("run-1", 0, &json!([]), &[]).unwrap();
        for (v, parent) in [(1, None), (2, Some(1))] {
            reg.add_adapter(&version(v, parent)).unwrap();
            reg.promote(v, "better").unwrap();
        }
        let stats = json!({"samples": 40, "verified": 12, "verified_share": 0.3, "promoted": true,
                           "train_losses": [1.0, 0.5]});
        reg.update_round("run-1", 0, "done", Some(1), &json!({}), &stats)
            .unwrap();
    }
    let store = autodidact_store::Store::at(&home).unwrap();
    let mut s = state(256, 2, 4);
    for v in [1u64, 2] {
        let meta = AdapterMeta {
            name: format!("self-v{v}"),
            base_model: "tiny".into(),
            ..AdapterMeta::default()
        };
        store
            .adapters()
            .save(&random_adapter(&s.engine.model.config, v), &meta)
            .unwrap();
    }
    s.adapters = Some(Arc::new(AdapterCache::new(store.adapters(), None)));
    s.improve = Some(Arc::new(SelfImprovement::new(home.clone(), true)));

    let o = call(&s, get("/v1/improve")).await.json();
    assert_eq!(o["current"], 2);
    assert_eq!(o["following"], true);
    assert_eq!(o["versions"].as_array().unwrap().len(), 2);
    assert_eq!(o["versions"][1]["parent"], 1);
    assert_eq!(o["runs"][0]["id"], "run-1");
    assert_eq!(o["runs"][0]["rounds"], 1);

    let r = call(&s, get("/v1/improve/runs/run-1")).await.json();
    assert_eq!(r["rounds"].as_array().unwrap().len(), 1);
    assert_eq!(r["rounds"][0]["verified"], 12);
    assert_eq!(r["rounds"][0]["candidate"]["version"], 1);
    call(&s, get("/v1/improve/runs/nope"))
        .await
        .error(404, "no run `nope`");
    call(&s, get("/v1/improve/runs/run-1/plots/..%2Fregistry.sqlite"))
        .await
        .error(404, "no plot");
    if autodidact_improve::plot::find_font().is_ok() {
        let png = call(&s, get("/v1/improve/runs/run-1/plots/accuracy.png")).await;
        assert_eq!(png.status, 200);
        assert_eq!(png.headers["content-type"], "image/png");
        // A run in progress gains rounds: the plots follow the registry, not the first drawing.
        let print = paths.report("run-1").join("fingerprint");
        let before = std::fs::read_to_string(&print).unwrap();
        {
            let mut reg = Registry::open(&paths.registry()).unwrap();
            reg.start_round("run-1", 1, &json!([]), &[]).unwrap();
            let stats = json!({"samples": 40, "verified": 30, "train_losses": [0.4]});
            reg.update_round("run-1", 1, "done", None, &json!({}), &stats)
                .unwrap();
        }
        let png = call(&s, get("/v1/improve/runs/run-1/plots/data.png")).await;
        assert_eq!(png.status, 200);
        assert_ne!(std::fs::read_to_string(&print).unwrap(), before);
        let names: Vec<String> = std::fs::read_dir(paths.report("run-1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains(".tmp")),
            "temporary files left: {names:?}"
        );
    }

    // Chat on the plain base name is answered by the current self, from one request to the
    // next: each version's (random) weights give their own greedy reply.
    let text = |r: crate::tiny::Reply| {
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["choices"][0]["message"]["content"].clone()
    };
    let hi = chat("hi", json!({"max_tokens": 8}));
    let ask = || post(&s, "/v1/chat/completions", &hi);
    let as_v2 = text(ask().await);
    // Rollback: bad input is refused, then the version before becomes current and chat follows.
    post(&s, "/v1/improve/rollback", &json!({"to": "one"}))
        .await
        .error(400, "`to` must be a version number");
    post(&s, "/v1/improve/rollback", &json!({"to": 7}))
        .await
        .error(400, "7");
    let rb = post(&s, "/v1/improve/rollback", &json!({})).await.json();
    assert_eq!(
        (rb["current"].clone(), rb["adapter"].clone()),
        (json!(1), json!("self-v1"))
    );
    let as_v1 = text(ask().await);
    let rb = post(&s, "/v1/improve/rollback", &json!({"to": 0}))
        .await
        .json();
    assert_eq!(rb["current"], json!(null));
    let as_base = text(ask().await);
    assert!(
        as_v2 != as_base && as_v1 != as_base && as_v1 != as_v2,
        "{as_v2} / {as_v1} / {as_base}"
    );
    post(&s, "/v1/improve/rollback", &json!({}))
        .await
        .error(400, "already the base model");
    // From the base, an earlier version can be made current again.
    let rb = post(&s, "/v1/improve/rollback", &json!({"to": 2}))
        .await
        .json();
    assert_eq!(rb["current"], json!(2));
    assert_eq!(text(ask().await), as_v2);
    // A server started with --base (not following) answers as the base whatever is current.
    let mut fixed = s.clone();
    fixed.improve = Some(Arc::new(SelfImprovement::new(home.clone(), false)));
    let r = post(
        &fixed,
        "/v1/chat/completions",
        &chat("hi", json!({"max_tokens": 8})),
    )
    .await;
    assert_eq!(text(r), as_base);
    // The current self's weights gone from the store: the base answers, nothing is refused.
    store.adapters().remove("self-v2").unwrap();
    assert_eq!(text(ask().await), as_base);

    let page = call(&s, get("/improve")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("/v1/improve"),
        "the page reads the JSON route"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test]
async fn without_a_registry_the_routes_answer_and_create_nothing() {
    let home = std::env::temp_dir().join(format!("ad-server-noimprove-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let mut s = state(256, 2, 4);
    s.improve = Some(Arc::new(SelfImprovement::new(home.clone(), true)));
    let o = call(&s, get("/v1/improve")).await.json();
    assert_eq!(
        (o["current"].clone(), o["runs"].clone()),
        (json!(null), json!([]))
    );
    call(&s, get("/v1/improve/runs/run-1"))
        .await
        .error(404, "no run `run-1`");
    call(&s, get("/v1/improve/runs/run-1/plots/accuracy.png"))
        .await
        .error(404, "no run `run-1`");
    post(&s, "/v1/improve/rollback", &json!({}))
        .await
        .error(400, "no version was ever promoted");
    let ok = post(&s, "/v1/chat/completions", &chat("hi", json!({}))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        !Paths::new(&home).registry().exists(),
        "a read created the registry"
    );
    let _ = std::fs::remove_dir_all(&home);
}
