//! Continuous batching and prefix reuse: what a sequence generates must not depend on what else is
//! in the batch or on whether its prefix came from a parked cache.
use crate::common::{engine_for, gen_config, load, prompt, run, sink, varied, varied_model, N_CTX};
use autodidact_engine::{generate, generate_many, FinishReason, GenConfig, ManyConfig, Request};
use autodidact_kernels::GgmlType;
use autodidact_model::testing::TinySpec;
use autodidact_model::{Arch, Model};

/// Greedy tokens of each request run alone.
fn alone(m: &Model, reqs: &[Request]) -> Vec<Vec<u32>> {
    reqs.iter()
        .map(|r| {
            generate(m, gen_config(), vec![r.clone()], |_| true).unwrap()[0]
                .tokens
                .clone()
        })
        .collect()
}

/// Different prompt lengths, so prompt chunks and decode steps share forward passes.
fn four() -> Vec<Request> {
    [(5, 1), (17, 2), (40, 3), (9, 4)]
        .iter()
        .map(|&(n, seed)| varied(prompt(n, seed), 32))
        .collect()
}

#[test]
fn several_requests_at_once_give_each_ones_greedy_tokens() {
    let m = varied_model();
    let reqs = four();
    let want = alone(&m, &reqs);
    for w in &want {
        assert_eq!(w.len(), 32);
        let mut d = w.clone();
        d.sort_unstable();
        d.dedup();
        assert!(
            d.len() >= 20,
            "the text varies ({} distinct tokens)",
            d.len()
        );
    }
    let together = generate(&m, gen_config(), reqs.clone(), |_| true).unwrap();
    let got: Vec<Vec<u32>> = together.iter().map(|c| c.tokens.clone()).collect();
    assert_eq!(got, want, "generate() with all four in one batch");

    // Through the actor: all four submitted before the first step, decoded together.
    let e = engine_for(m, 4, 8);
    let streams: Vec<_> = reqs
        .iter()
        .map(|r| {
            let (s, stream) = sink(None);
            e.submit(r.clone(), s).unwrap();
            stream
        })
        .collect();
    let got: Vec<Vec<u32>> = streams.into_iter().map(|s| s.done().0.tokens).collect();
    assert_eq!(got, want, "the engine actor with max_active 4");
}

/// Issue 15 item 9 (batch invariance) on a tiny model: on this Llama-architecture Q8_0 model the
/// fourth sequence's greedy tokens part from its solo run at token 23 when batched with the others
/// before the batched decode attention followed the single path's arithmetic order.
#[test]
fn batched_greedy_tokens_match_alone_on_a_llama_q8_model() {
    let m = load(&TinySpec::new(Arch::Llama, GgmlType::Q8_0, 2));
    let reqs = four();
    let want = alone(&m, &reqs);
    let got: Vec<Vec<u32>> = generate(&m, gen_config(), reqs, |_| true)
        .unwrap()
        .into_iter()
        .map(|c| c.tokens)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_bounded_batch_queues_the_rest_and_finishes_all() {
    // Six requests, two at a time: the later ones join as earlier ones leave.
    let m = varied_model();
    let reqs: Vec<_> = (0..6)
        .map(|i| varied(prompt(6 + 3 * i, 20 + i as u64), 12))
        .collect();
    let want = alone(&m, &reqs);
    let e = engine_for(m, 2, 8);
    let streams: Vec<_> = reqs
        .iter()
        .map(|r| {
            let (s, stream) = sink(None);
            e.submit(r.clone(), s).unwrap();
            stream
        })
        .collect();
    let got: Vec<Vec<u32>> = streams.into_iter().map(|s| s.done().0.tokens).collect();
    assert_eq!(got, want);
}

#[test]
fn the_next_turn_reuses_the_parked_prefix_and_generates_the_same() {
    let m = varied_model();
    let e = engine_for(m.clone(), 1, 4);
    let p1 = prompt(30, 7);
    let first = run(&e, varied(p1.clone(), 10));
    assert_eq!(first.cached_tokens, 0, "nothing parked yet");
    assert_eq!(first.finish, FinishReason::Length);
    // The next turn: the whole first exchange plus a new message.
    let mut p2 = p1.clone();
    p2.extend(&first.tokens);
    p2.extend(prompt(8, 8).into_iter().skip(1));
    assert!(p2.len() + 10 < N_CTX);
    let second = run(&e, varied(p2.clone(), 10));
    // The parked cache holds the prompt and every generated token but the last (the last was
    // sampled, never fed).
    assert_eq!(second.cached_tokens, p1.len() + first.tokens.len() - 1);
    assert_eq!(second.prompt_tokens, p2.len());
    let fresh = generate(&m, gen_config(), vec![varied(p2, 10)], |_| true).unwrap();
    assert_eq!(fresh[0].cached_tokens, 0);
    assert_eq!(
        second.tokens, fresh[0].tokens,
        "reused KV gives the fresh run's tokens"
    );
    assert_eq!(second.text, fresh[0].text);
    assert_eq!(
        e.stats
            .cached_prompt_tokens
            .load(std::sync::atomic::Ordering::Relaxed),
        second.cached_tokens as u64
    );
}

#[test]
fn a_prompt_that_diverges_reuses_only_the_shared_part() {
    let m = varied_model();
    let e = engine_for(m.clone(), 1, 4);
    let p1 = prompt(24, 3);
    run(&e, varied(p1.clone(), 4));
    let mut p2 = p1[..12].to_vec();
    p2.extend(prompt(10, 99).into_iter().skip(1));
    assert_ne!(p2[12], p1[12]);
    let second = run(&e, varied(p2.clone(), 8));
    assert_eq!(second.cached_tokens, 12);
    let fresh = generate(&m, gen_config(), vec![varied(p2, 8)], |_| true).unwrap();
    assert_eq!(second.tokens, fresh[0].tokens);
}

/// With `share_prompts`, sequences that join beside one computing the same prompt wait for it
/// and copy its keys and values: the same tokens and logprob bits as taking the prefix from a
/// parked cache one request at a time (the same split between copied and computed tokens),
/// and the copied tokens count as cached.
#[test]
fn sequences_in_flight_share_a_common_prompt() {
    let m = varied_model();
    let shared = prompt(40, 7);
    let mut longer = shared.clone();
    longer.extend_from_slice(&prompt(6, 9)[1..]);
    let reqs: Vec<Request> = [
        shared.clone(),
        shared.clone(),
        shared.clone(),
        longer,
        // Not even the first token in common.
        prompt(30, 11)[1..].to_vec(),
    ]
    .into_iter()
    .map(|p| {
        let mut r = varied(p, 12);
        r.params.top_logprobs = Some(1);
        r
    })
    .collect();
    let run_many = |max_active: usize, share_prompts: bool| {
        let cfg = ManyConfig {
            gen: GenConfig {
                share_prompts,
                ..gen_config()
            },
            max_active,
        };
        generate_many(&m, cfg, reqs.clone(), |_, _| true, |_, _| true)
            .unwrap()
            .into_iter()
            .map(|c| c.expect("every request finishes"))
            .collect::<Vec<_>>()
    };
    let one_by_one = run_many(1, false);
    let forked = run_many(5, true);
    let cached: Vec<usize> = forked.iter().map(|c| c.cached_tokens).collect();
    assert_eq!(cached, [0, 39, 39, 40, 0], "tokens copied from the first");
    let bits = |c: &autodidact_engine::Completion| {
        c.logprobs
            .iter()
            .map(|s| (s.token, s.logprob.map(f32::to_bits)))
            .collect::<Vec<_>>()
    };
    for (i, (a, b)) in one_by_one.iter().zip(&forked).enumerate() {
        assert_eq!(a.cached_tokens, b.cached_tokens, "request {i}");
        assert_eq!(a.tokens, b.tokens, "request {i}");
        assert_eq!(bits(a), bits(b), "request {i}");
    }
    // Off, nothing in flight is shared: each prompt is computed in one step.
    let apart = run_many(5, false);
    assert!(apart.iter().all(|c| c.cached_tokens == 0));
}
