//! Batch invariance: a sequence's logits are the same bits alone and beside other sequences, so
//! greedy output does not depend on load (held-out evaluations and reproducibility rely on it).
use autodidact_engine::{generate, Completion, GenConfig, Request, SamplingParams};
use autodidact_kernels::GgmlType;
use autodidact_model::gguf::GgufFile;
use autodidact_model::testing::tiny_model;
use autodidact_model::{Arch, Logits, Model, SeqInput};
use std::path::PathBuf;

fn tiny(arch: Arch, ty: GgmlType) -> Model {
    let bytes = tiny_model(arch, ty, 21 + ty.id() as u64);
    Model::from_gguf(GgufFile::from_bytes("tiny", &bytes).unwrap()).unwrap()
}

/// The default model, found the one way every real-model test finds it.
fn real_model() -> Option<PathBuf> {
    autodidact_model::testing::real_model_path()
}

/// Runs `f` on a pool of `n` threads: the forward pass picks paths by batch size against the
/// thread count, so the test fixes it to see both paths on any machine.
fn on_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
        .install(f)
}

fn prompts(model: &Model) -> Vec<Vec<u32>> {
    [
        "The capital of France is",
        "Once upon a time, in a land far away, there lived a",
        "1, 2, 3,",
        "def fib(n):",
        "Hi",
        "The quick brown fox jumps over the lazy dog. The quick brown fox",
        "Q: What is two plus two?\nA:",
        "Rust is",
    ]
    .iter()
    .map(|p| model.tokenizer.encode(p, true, false))
    .collect()
}

/// Greedy logits of sequence 0 for `steps` tokens, fed beside the other prompts of `batch`.
fn logits_of_first(model: &Model, batch: &[Vec<u32>], steps: usize) -> Vec<Vec<f32>> {
    let mut caches: Vec<_> = batch.iter().map(|_| model.new_cache(256, 256)).collect();
    let mut feed: Vec<Vec<u32>> = batch.to_vec();
    let mut seen = Vec::new();
    for _ in 0..steps {
        let mut inputs: Vec<SeqInput> = caches
            .iter_mut()
            .zip(&feed)
            .map(|(cache, tokens)| SeqInput {
                cache,
                tokens,
                logits: Logits::Last,
                adapter: None,
            })
            .collect();
        let out = model.forward(&mut inputs, false).unwrap();
        seen.push(out.row(out.rows[0].start).to_vec());
        feed = (0..batch.len())
            .map(|i| {
                let row = out.row(out.rows[i].start);
                let best = (0..row.len())
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap();
                vec![best as u32]
            })
            .collect();
    }
    seen
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn logits_are_the_same_bits_alone_and_in_a_batch_of_eight() {
    for (arch, ty) in [
        (Arch::Gemma3, GgmlType::Q8_0),
        (Arch::Llama, GgmlType::Q4K),
        (Arch::Gemma3, GgmlType::F16),
    ] {
        let model = tiny(arch, ty);
        let ps = prompts(&model);
        for threads in [1, 2, 4] {
            let (alone, batched) = on_threads(threads, || {
                (
                    logits_of_first(&model, &ps[..1], 8),
                    logits_of_first(&model, &ps, 8),
                )
            });
            for (step, (a, b)) in alone.iter().zip(&batched).enumerate() {
                assert!(
                    bits(a) == bits(b),
                    "{arch:?} {ty:?}, {threads} threads: step {step} differs"
                );
            }
        }
    }
}

fn greedy(model: &Model, prompts: &[Vec<u32>], max_tokens: usize) -> Vec<Completion> {
    let reqs = prompts
        .iter()
        .map(|p| Request {
            prompt: p.clone(),
            params: SamplingParams {
                max_tokens,
                ignore_eos: true,
                top_logprobs: Some(2),
                ..SamplingParams::greedy()
            },
            json: None,
            adapter: None,
        })
        .collect();
    generate(model, GenConfig::default(), reqs, |_| true).unwrap()
}

/// Tokens and the logprobs behind them, bit for bit, alone and with seven other requests.
fn assert_engine_invariant(model: &Model, max_tokens: usize) {
    let ps = prompts(model);
    for threads in [2, 4] {
        let (alone, batched) = on_threads(threads, || {
            (
                greedy(model, &ps[..1], max_tokens),
                greedy(model, &ps, max_tokens),
            )
        });
        let (a, b) = (&alone[0], &batched[0]);
        assert_eq!(a.tokens, b.tokens, "{threads} threads");
        for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
            let lp = |s: &autodidact_engine::Sampled| s.logprob.map(f32::to_bits);
            assert_eq!(lp(x), lp(y), "{threads} threads");
        }
    }
}

#[test]
fn greedy_completions_are_the_same_alone_and_in_a_batch() {
    assert_engine_invariant(&tiny(Arch::Gemma3, GgmlType::Q8_0), 24);
}

#[test]
fn real_model_greedy_completions_are_the_same_alone_and_in_a_batch() {
    let Some(path) = real_model() else { return };
    let model = Model::load(path).unwrap();
    assert_engine_invariant(&model, 32);
}
