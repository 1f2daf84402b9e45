//! What a sequence produces: stop strings held back while pending and cut when they match,
//! `max_tokens` and the context limit, and JSON-constrained output that parses.
use crate::common::{engine, gen_config, greedy, model, prompt, run, sink, N_CTX};
use autodidact_engine::json_grammar::JsonGrammar;
use autodidact_engine::{generate, Completion, EngineError, FinishReason, Request, SamplingParams};
use serde_json::{json, Value};

/// Runs `r` alone, returning its completion and the text pieces streamed after each token.
fn streamed(r: Request) -> (Completion, Vec<String>) {
    let mut pieces = Vec::new();
    let mut c = generate(&model(), gen_config(), vec![r], |d| {
        pieces.push(d.text.to_string());
        true
    })
    .unwrap();
    (c.remove(0), pieces)
}

/// The decoded piece of every token, when it is plain ASCII (named tokens like `t261`; byte tokens
/// of a random model may be lone UTF-8 fragments).
fn ascii_pieces(tokens: &[u32]) -> Vec<Option<String>> {
    let m = model();
    tokens
        .iter()
        .map(|&t| {
            let b = m.tokenizer.token_bytes(t, false);
            (b.len() >= 2 && b.is_ascii()).then(|| String::from_utf8(b).unwrap())
        })
        .collect()
}

#[test]
fn a_stop_string_across_tokens_is_held_back_then_cut() {
    let p = prompt(12, 5);
    let (full, full_deltas) = streamed(greedy(p.clone(), 48));
    let pieces = ascii_pieces(&full.tokens);
    // Two neighbouring ASCII tokens: the stop string is the end of one and the start of the next,
    // so after the first of them a proper prefix of it is pending.
    let k = (0..pieces.len() - 1)
        .find(|&k| k > 0 && pieces[k].is_some() && pieces[k + 1].is_some())
        .expect("the tiny model's greedy text has two neighbouring named tokens");
    let (a, b) = (pieces[k].as_ref().unwrap(), pieces[k + 1].as_ref().unwrap());
    let stop = format!("{}{}", &a[a.len() - 2..], &b[..2]);
    let cut = full.text.find(&stop).expect("the stop string occurs");
    let mut r = greedy(p, 48);
    r.params.stop = vec!["never-in-this-text".into(), stop.clone()];
    let (c, deltas) = streamed(r);
    assert_eq!(c.finish, FinishReason::Stop);
    assert_eq!(c.text, full.text[..cut], "cut where {stop:?} starts");
    assert!(!c.text.contains(&stop));
    assert!(full.tokens.starts_with(&c.tokens));
    assert!(c.tokens.len() <= k + 2, "stops at the token completing it");
    // Everything streamed is final: the pending prefix never went out.
    assert_eq!(deltas.concat(), c.text);
    // Before the token that completed it, less had gone out than without the stop string.
    let n = c.tokens.len();
    let (held, free) = (deltas[..n - 1].concat(), full_deltas[..n - 1].concat());
    assert!(
        free.starts_with(&held) && held.len() < free.len(),
        "the stop string's prefix was held back ({held:?} vs {free:?})"
    );
}

#[test]
fn stop_strings_that_never_match_change_nothing() {
    let p = prompt(9, 6);
    let (full, deltas) = streamed(greedy(p.clone(), 20));
    let mut r = greedy(p, 20);
    r.params.stop = vec!["\u{1F600}never".into()];
    let (c, d) = streamed(r);
    assert_eq!(c.finish, FinishReason::Length);
    assert_eq!((c.tokens, c.text), (full.tokens, full.text));
    assert_eq!(d.concat(), deltas.concat());
}

#[test]
fn max_tokens_bounds_the_completion() {
    for n in [0, 1, 7] {
        let (c, _) = streamed(greedy(prompt(6, 1), n));
        assert_eq!(c.tokens.len(), n);
        assert_eq!(c.finish, FinishReason::Length);
    }
    // The actor reports a zero-token request as done, not as failed.
    let e = engine(2, 2);
    let c = run(&e, greedy(prompt(6, 1), 0));
    assert_eq!((c.tokens.len(), c.finish), (0, FinishReason::Length));
}

#[test]
fn generation_stops_when_the_context_fills() {
    let p = prompt(N_CTX - 6, 2);
    let (c, _) = streamed(greedy(p.clone(), 100));
    assert_eq!(c.finish, FinishReason::Length);
    assert!(!c.tokens.is_empty());
    assert!(
        p.len() + c.tokens.len() <= N_CTX,
        "{} tokens",
        c.tokens.len()
    );
}

#[test]
fn a_prompt_that_fills_the_context_is_refused() {
    let long = greedy(prompt(N_CTX, 3), 4);
    let err = generate(&model(), gen_config(), vec![long.clone()], |_| true).unwrap_err();
    assert!(
        matches!(err, EngineError::PromptTooLong { prompt, n_ctx } if prompt == N_CTX && n_ctx == N_CTX),
        "{err:?}"
    );
    let e = engine(1, 1);
    let (s, _stream) = sink(None);
    let err = e.submit(long, s).unwrap_err();
    assert!(matches!(err, EngineError::PromptTooLong { .. }), "{err:?}");
    assert!(err.to_string().contains("256"), "{err}");
}

#[test]
fn bad_requests_are_refused_before_they_queue() {
    let e = engine(1, 1);
    let empty = greedy(Vec::new(), 4);
    let (s, _k) = sink(None);
    assert!(matches!(e.submit(empty, s), Err(EngineError::EmptyPrompt)));
    let mut hot = greedy(prompt(4, 1), 4);
    hot.params.temperature = -1.0;
    let (s, _k) = sink(None);
    assert!(matches!(e.submit(hot, s), Err(EngineError::BadParam(_))));
    let mut nan = greedy(prompt(4, 1), 4);
    nan.params.top_p = f32::NAN;
    let (s, _k) = sink(None);
    assert!(matches!(e.submit(nan, s), Err(EngineError::BadParam(_))));
    // None of them took the single queue place.
    assert_eq!(run(&e, greedy(prompt(4, 1), 3)).tokens.len(), 3);
}

/// Constrained decoding: the reply is JSON however random the model.
fn constrained(grammar: std::sync::Arc<JsonGrammar>, seed: u64, max_tokens: usize) -> Completion {
    let r = Request {
        prompt: prompt(10, seed),
        params: SamplingParams {
            max_tokens,
            ..SamplingParams::greedy()
        },
        json: Some(grammar),
        ..Default::default()
    };
    streamed(r).0
}

#[test]
fn schema_constrained_output_parses_and_validates() {
    let schema = json!({
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "kind": {"enum": ["cat", "dog"]},
            "none": {"type": "null"},
        }
    });
    let g = JsonGrammar::from_schema(&schema).unwrap();
    for seed in 0..3 {
        let c = constrained(g.clone(), seed, 128);
        assert_eq!(
            c.finish,
            FinishReason::Stop,
            "closed the object: {:?}",
            c.text
        );
        let v: Value =
            serde_json::from_str(&c.text).unwrap_or_else(|e| panic!("{e}: {:?}", c.text));
        let o = v.as_object().expect("an object");
        assert_eq!(o.len(), 3, "{v}");
        assert!(o["ok"].is_boolean(), "{v}");
        assert!(o["kind"] == "cat" || o["kind"] == "dog", "{v}");
        assert!(o["none"].is_null(), "{v}");
    }
}

#[test]
fn json_object_output_is_always_a_valid_prefix_and_parses_when_done() {
    for seed in 0..3 {
        let c = constrained(JsonGrammar::object(), seed, 96);
        let text = c.text.trim_start();
        assert!(text.starts_with('{'), "{:?}", c.text);
        match c.finish {
            FinishReason::Stop => {
                let v: Value =
                    serde_json::from_str(&c.text).unwrap_or_else(|e| panic!("{e}: {:?}", c.text));
                assert!(v.is_object());
            }
            // Cut by max_tokens: unfinished, but the parser only ever ran out of input.
            _ => {
                let e = serde_json::from_str::<Value>(&c.text).unwrap_err();
                assert!(e.is_eof(), "{e}: {:?}", c.text);
            }
        }
    }
}

/// A reply ended by the end-of-generation token has one logprob per generated token: the end
/// token itself is no part of the content (OpenAI's logprobs, `usage`'s completion tokens).
#[test]
fn the_end_token_has_no_logprob_entry() {
    let reqs: Vec<Request> = (0..64)
        .map(|seed| Request {
            prompt: prompt(6, seed),
            params: SamplingParams {
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed,
                max_tokens: 40,
                top_logprobs: Some(1),
                ..SamplingParams::default()
            },
            ..Default::default()
        })
        .collect();
    let done = generate(&model(), gen_config(), reqs, |_| true).unwrap();
    let ended = done
        .iter()
        .filter(|c| c.finish == FinishReason::Stop)
        .count();
    assert!(ended > 0, "some sample drew the end token");
    for c in &done {
        assert_eq!(c.logprobs.len(), c.tokens.len());
        assert!(
            c.logprobs.iter().all(|s| s.token != 1),
            "no entry for <eos>"
        );
    }
}
