//! Generation over a model: several sequences advance together, one forward pass per step, each with
//! its own sampler, stop strings and streaming detokenizer. Prompts prefill in chunks alongside the
//! decode steps of other sequences (the continuous-batching building block).
use crate::sampling::{Sampled, Sampler, SamplingParams};
use crate::EngineError;
use autodidact_model::{Logits, Model, SeqCache, SeqInput, StreamDecoder};
use serde::Serialize;

/// One sequence to generate.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context filled up.
    Length,
    /// The caller asked to stop (Ctrl-C, a client that went away).
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    pub logprobs: Vec<Sampled>,
}

/// What the per-token callback sees.
pub struct Delta<'a> {
    pub seq: usize,
    /// Text that became final with this token (stop-string prefixes are held back).
    pub text: &'a str,
    pub sampled: &'a Sampled,
}

/// Engine limits: context per sequence and tokens per forward call.
#[derive(Debug, Clone, Copy)]
pub struct GenConfig {
    pub n_ctx: usize,
    /// Most tokens one forward call processes across all sequences.
    pub n_batch: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            n_ctx: 2048,
            n_batch: 256,
        }
    }
}

struct Active {
    cache: SeqCache,
    sampler: Sampler,
    /// Prompt tokens not yet fed.
    pending: Vec<u32>,
    fed: usize,
    prompt_len: usize,
    last: Option<u32>,
    generated: Vec<u32>,
    decoder: StreamDecoder,
    /// Final text so far; `emitted` bytes of it have been handed to the callback.
    text: String,
    emitted: usize,
    logprobs: Vec<Sampled>,
    finish: Option<FinishReason>,
}

/// Length of the longest suffix of `text` that is a proper prefix of some stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut hold = 0;
    for s in stops {
        for k in (1..s.len()).rev() {
            if k <= text.len()
                && text.is_char_boundary(text.len() - k)
                && s.is_char_boundary(k)
                && text.ends_with(&s[..k])
            {
                hold = hold.max(k);
                break;
            }
        }
    }
    hold
}

/// Generates for every request, calling `on_token` after each sampled token; returning `false` from
/// it cancels that sequence. Completions come back in request order.
pub fn generate(
    model: &Model,
    cfg: GenConfig,
    requests: Vec<Request>,
    mut on_token: impl FnMut(Delta) -> bool,
) -> Result<Vec<Completion>, EngineError> {
    let mut seqs = Vec::with_capacity(requests.len());
    for r in requests {
        r.params.validate()?;
        if r.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if r.prompt.len() >= cfg.n_ctx {
            return Err(EngineError::PromptTooLong {
                prompt: r.prompt.len(),
                n_ctx: cfg.n_ctx,
            });
        }
        let mut sampler = Sampler::new(r.params.clone());
        sampler.observe(&r.prompt);
        seqs.push(Active {
            cache: model.new_cache(cfg.n_ctx, cfg.n_batch),
            sampler,
            prompt_len: r.prompt.len(),
            pending: r.prompt,
            fed: 0,
            last: None,
            generated: Vec::new(),
            decoder: StreamDecoder::new(),
            text: String::new(),
            emitted: 0,
            logprobs: Vec::new(),
            finish: if r.params.max_tokens == 0 {
                Some(FinishReason::Length)
            } else {
                None
            },
        });
    }
    loop {
        // Decode steps first (one token each), then prompt chunks in the remaining budget.
        let mut budget = cfg.n_batch;
        let mut plan: Vec<(usize, usize)> = Vec::new();
        for (i, s) in seqs.iter().enumerate() {
            if s.finish.is_none() && s.last.is_some() && budget > 0 {
                plan.push((i, 1));
                budget -= 1;
            }
        }
        for (i, s) in seqs.iter().enumerate() {
            if s.finish.is_none() && s.last.is_none() && budget > 0 {
                let n = (s.pending.len() - s.fed).min(budget);
                plan.push((i, n));
                budget -= n;
            }
        }
        if plan.is_empty() {
            break;
        }
        plan.sort_unstable();
        let mut inputs = Vec::with_capacity(plan.len());
        let mut feeds: Vec<Vec<u32>> = Vec::with_capacity(plan.len());
        for &(i, n) in &plan {
            let s = &seqs[i];
            feeds.push(match s.last {
                Some(t) => vec![t],
                None => s.pending[s.fed..s.fed + n].to_vec(),
            });
        }
        let mut wants = Vec::with_capacity(plan.len());
        {
            let mut rest: &mut [Active] = &mut seqs;
            let mut base = 0;
            for (&(i, n), feed) in plan.iter().zip(&feeds) {
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(i - base + 1);
                let s = head
                    .last_mut()
                    .expect("split leaves the planned sequence last");
                rest = tail;
                base = i + 1;
                let completes_prompt = s.last.is_some() || s.fed + n == s.pending.len();
                wants.push(completes_prompt);
                inputs.push(SeqInput {
                    cache: &mut s.cache,
                    tokens: feed,
                    logits: if completes_prompt {
                        Logits::Last
                    } else {
                        Logits::None
                    },
                });
            }
            let out = model.forward(&mut inputs, false)?;
            drop(inputs);
            for (k, &(i, n)) in plan.iter().enumerate() {
                let s = &mut seqs[i];
                if s.last.is_none() {
                    s.fed += n;
                }
                if !wants[k] {
                    continue;
                }
                let row = out.rows[k].start;
                let sampled = s.sampler.sample(out.row(row));
                let tok = sampled.token;
                let stops = &s.sampler.params.stop;
                if model.tokenizer.is_eog(tok) {
                    s.finish = Some(FinishReason::Stop);
                } else {
                    s.generated.push(tok);
                    let piece = s.decoder.push(&model.tokenizer.token_bytes(tok, false));
                    s.text.push_str(&piece);
                    let search_from = s
                        .emitted
                        .saturating_sub(stops.iter().map(|x| x.len()).max().unwrap_or(0));
                    let hit = stops
                        .iter()
                        .filter(|x| !x.is_empty())
                        .filter_map(|x| {
                            s.text[search_from..]
                                .find(x.as_str())
                                .map(|p| p + search_from)
                        })
                        .min();
                    if let Some(p) = hit {
                        s.text.truncate(p);
                        s.finish = Some(FinishReason::Stop);
                    } else if s.generated.len() >= s.sampler.params.max_tokens
                        || s.cache.len() + 1 >= cfg.n_ctx
                    {
                        s.finish = Some(FinishReason::Length);
                    }
                }
                if s.finish.is_some() {
                    let tail = s.decoder.finish();
                    if s.finish != Some(FinishReason::Stop)
                        || !stops.iter().any(|x| s.text.ends_with(x.as_str()))
                    {
                        s.text.push_str(&tail);
                    }
                }
                let hold = if s.finish.is_some() {
                    0
                } else {
                    held_back(&s.text, stops)
                };
                let end = (s.text.len() - hold).max(s.emitted);
                let delta = &s.text[s.emitted..end];
                let keep_going = on_token(Delta {
                    seq: i,
                    text: delta,
                    sampled: &sampled,
                });
                s.emitted = end;
                s.logprobs.push(sampled);
                s.last = Some(tok);
                if !keep_going && s.finish.is_none() {
                    s.finish = Some(FinishReason::Cancelled);
                }
            }
        }
    }
    Ok(seqs
        .into_iter()
        .map(|s| Completion {
            prompt_tokens: s.prompt_len,
            tokens: s.generated,
            text: s.text,
            finish: s.finish.unwrap_or(FinishReason::Length),
            logprobs: s.logprobs,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::held_back;

    #[test]
    fn holds_back_partial_stop_strings() {
        let stops = vec!["\nUser:".to_string()];
        assert_eq!(held_back("hello\nUs", &stops), 3);
        assert_eq!(held_back("hello", &stops), 0);
        assert_eq!(held_back("hello\n", &stops), 1);
    }
}
