//! Perplexity of a text, llama.cpp's method: non-overlapping chunks of `n_ctx` tokens, each
//! starting with BOS, scoring only the second half of each chunk (every scored token sees at
//! least `n_ctx / 2` tokens of context). The improvement gate's general-language guard.
use crate::TrainError;
use autodidact_kernels::vec::log_softmax_at;
use autodidact_model::{Logits, LoraAdapter, Model, SeqInput};

/// What [`perplexity`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    pub chunks: usize,
    /// Tokens whose log-probability was scored.
    pub scored: usize,
}

/// Perplexity of `text` under `model` with `adapter` applied, if any, over at most `max_chunks`
/// chunks (`None`: all); `on_chunk(done, total, running_ppl)` after each chunk.
pub fn perplexity(
    model: &Model,
    adapter: Option<&LoraAdapter>,
    text: &str,
    n_ctx: usize,
    max_chunks: Option<usize>,
    on_chunk: &mut dyn FnMut(usize, usize, f64),
) -> Result<Perplexity, TrainError> {
    if n_ctx < 4 {
        return Err(TrainError::Config(
            "the perplexity context must be at least 4 tokens".into(),
        ));
    }
    let tokens = model.tokenizer.encode(text, true, false);
    let chunks = (tokens.len() / n_ctx).min(max_chunks.unwrap_or(usize::MAX));
    if chunks == 0 {
        return Err(TrainError::Config(format!(
            "the text has {} tokens, fewer than one chunk of {n_ctx}",
            tokens.len()
        )));
    }
    let bos = model
        .tokenizer
        .bos
        .ok_or_else(|| TrainError::Config("the model has no BOS token".into()))?;
    let (mut nll, mut count) = (0.0f64, 0usize);
    for ch in 0..chunks {
        let mut chunk = tokens[ch * n_ctx..(ch + 1) * n_ctx].to_vec();
        chunk[0] = bos;
        let mut cache = model.new_cache(n_ctx, n_ctx);
        // out: (n_ctx, n_vocab) logits, one row per position.
        let out = model.forward(
            &mut [SeqInput {
                cache: &mut cache,
                tokens: &chunk,
                logits: Logits::All,
                adapter,
            }],
            false,
        )?;
        for i in n_ctx / 2..n_ctx - 1 {
            nll -= log_softmax_at(out.row(i), chunk[i + 1] as usize) as f64;
            count += 1;
        }
        on_chunk(ch + 1, chunks, (nll / count as f64).exp());
    }
    Ok(Perplexity {
        ppl: (nll / count as f64).exp(),
        chunks,
        scored: count,
    })
}
