//! A continuous batch: sequences join and leave between steps; each step is one forward pass that
//! advances every decoding sequence by a token and feeds prompt chunks of new ones in the remaining
//! budget. Finished sequences leave their KV cache parked with the tokens it holds, so a later
//! prompt that starts the same way (the next turn of a chat) skips recomputing that prefix. A
//! sequence that joins while another in flight shares a longer part of its prompt waits for
//! that part to be computed and copies it (k samples of one task, tasks under one few-shot
//! scaffold).
use crate::json_grammar::{JsonGrammar, JsonMatcher};
use crate::sampling::{top_k_indices, Sampled, Sampler, SamplingParams};
use crate::EngineError;
use autodidact_model::{
    ForwardOutput, Logits, LoraAdapter, Model, SeqCache, SeqInput, StreamDecoder,
};
use rayon::prelude::*;
use serde::Serialize;
use std::sync::Arc;

/// One sequence to generate.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// Output must be JSON matching this grammar (constrained decoding).
    pub json: Option<Arc<JsonGrammar>>,
    /// A LoRA adapter for this sequence alone; others in the batch may use another or none.
    pub adapter: Option<Arc<LoraAdapter>>,
}

/// Whether two sequences run the same weights (their KV caches are interchangeable).
fn same_adapter(a: &Option<Arc<LoraAdapter>>, b: &Option<Arc<LoraAdapter>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
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
    /// Prompt tokens whose KV came from a parked cache or a sequence in flight instead of being
    /// computed.
    pub cached_tokens: usize,
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    pub logprobs: Vec<Sampled>,
}

/// What the per-token callback sees.
pub struct Delta<'a> {
    pub seq: u64,
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
    /// Idle caches kept for prefix reuse.
    pub max_parked: usize,
    /// A joining sequence waits for one in flight that shares a longer part of its prompt and
    /// copies that part's keys and values. Faster for many samples of one prompt, but the
    /// copied prefix and the rest are computed in separate steps, which is not bit-identical
    /// to feeding the prompt in one step: off where greedy output must not depend on the batch.
    pub share_prompts: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            n_ctx: 2048,
            n_batch: 256,
            max_parked: 4,
            share_prompts: false,
        }
    }
}

impl GenConfig {
    /// Whether `r` can run under these limits.
    pub fn check(&self, r: &Request) -> Result<(), EngineError> {
        r.params.validate()?;
        if r.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if r.prompt.len() >= self.n_ctx {
            return Err(EngineError::PromptTooLong {
                prompt: r.prompt.len(),
                n_ctx: self.n_ctx,
            });
        }
        Ok(())
    }
}

struct Active {
    id: u64,
    cache: SeqCache,
    /// Tokens whose keys and values are in `cache`, in order.
    history: Vec<u32>,
    sampler: Sampler,
    prompt: Vec<u32>,
    /// Prompt tokens already in the cache.
    fed: usize,
    cached: usize,
    last: Option<u32>,
    generated: Vec<u32>,
    decoder: StreamDecoder,
    /// Final text so far; `emitted` bytes of it have been handed to the callback.
    text: String,
    emitted: usize,
    logprobs: Vec<Sampled>,
    finish: Option<FinishReason>,
    json: Option<JsonMatcher>,
    adapter: Option<Arc<LoraAdapter>>,
    /// Waiting for sequence `.0` to hold its first `.1` positions, which this prompt shares.
    wait: Option<(u64, usize)>,
}

/// Fewer shared prompt tokens than this are computed rather than waited for.
const MIN_SHARED: usize = 8;

struct Parked {
    cache: SeqCache,
    history: Vec<u32>,
    adapter: Option<Arc<LoraAdapter>>,
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

/// Sequences in flight plus parked caches.
pub struct Batch {
    cfg: GenConfig,
    active: Vec<Active>,
    parked: Vec<Parked>,
    /// The last step's logits, kept so the next step reuses the buffer.
    out: ForwardOutput,
}

impl Batch {
    pub fn new(cfg: GenConfig) -> Self {
        Batch {
            cfg,
            active: Vec::new(),
            parked: Vec::new(),
            out: ForwardOutput::default(),
        }
    }

    pub fn config(&self) -> GenConfig {
        self.cfg
    }

    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Bytes of KV cache held, in flight and parked.
    pub fn kv_bytes(&self) -> usize {
        self.active.iter().map(|a| a.cache.bytes()).sum::<usize>()
            + self.parked.iter().map(|p| p.cache.bytes()).sum::<usize>()
    }

    /// Checks a request against the limits without adding it.
    pub fn check(&self, r: &Request) -> Result<(), EngineError> {
        self.cfg.check(r)
    }

    /// Adds a sequence under `id`, reusing the parked cache that shares the longest prefix.
    pub fn add(&mut self, model: &Model, id: u64, r: Request) -> Result<(), EngineError> {
        self.check(&r)?;
        if let Some(ad) = &r.adapter {
            ad.check(&model.config)?;
        }
        let (cache, history, fed) = self.take_cache(model, &r.prompt, &r.adapter);
        let wait = if self.cfg.share_prompts {
            self.donor(&r.prompt, &r.adapter, fed)
        } else {
            None
        };
        let mut sampler = Sampler::new(r.params.clone());
        sampler.observe(&r.prompt);
        let finish = (r.params.max_tokens == 0).then_some(FinishReason::Length);
        self.active.push(Active {
            id,
            cache,
            history,
            sampler,
            prompt: r.prompt,
            fed,
            cached: fed,
            last: None,
            generated: Vec::new(),
            decoder: StreamDecoder::new(),
            text: String::new(),
            emitted: 0,
            logprobs: Vec::new(),
            finish,
            json: r.json.map(JsonMatcher::new),
            adapter: r.adapter,
            wait,
        });
        Ok(())
    }

    /// The sequence in flight whose prompt shares the most of `prompt` beyond the `fed`
    /// tokens already cached, and how much (the last prompt token is always computed).
    fn donor(
        &self,
        prompt: &[u32],
        adapter: &Option<Arc<LoraAdapter>>,
        fed: usize,
    ) -> Option<(u64, usize)> {
        let mut best: Option<(u64, usize)> = None;
        for a in &self.active {
            if a.finish.is_some() || !same_adapter(&a.adapter, adapter) {
                continue;
            }
            let lcp = a
                .prompt
                .iter()
                .zip(prompt)
                .take_while(|(x, y)| x == y)
                .count();
            let usable = lcp.min(prompt.len() - 1);
            if usable >= fed + MIN_SHARED && best.is_none_or(|(_, u)| usable > u) {
                best = Some((a.id, usable));
            }
        }
        best
    }

    /// Copies shared prompt prefixes whose donors have computed them; a sequence whose donor
    /// left (finished, cancelled) or cannot give it computes its prompt itself.
    fn fork_ready(&mut self) {
        for i in 0..self.active.len() {
            let Some((donor, len)) = self.active[i].wait else {
                continue;
            };
            let Some(d) = self.active.iter().position(|a| a.id == donor) else {
                self.active[i].wait = None;
                continue;
            };
            if self.active[d].cache.len() < len && self.active[d].finish.is_none() {
                continue;
            }
            let (s, src) = if i < d {
                let (lo, hi) = self.active.split_at_mut(d);
                (&mut lo[i], &hi[0])
            } else {
                let (lo, hi) = self.active.split_at_mut(i);
                (&mut hi[0], &lo[d])
            };
            s.wait = None;
            if s.cache.copy_prefix_from(&src.cache, len) {
                s.history.clear();
                s.history.extend_from_slice(&s.prompt[..len]);
                s.cached += len - s.fed;
                s.fed = len;
            }
        }
    }

    fn take_cache(
        &mut self,
        model: &Model,
        prompt: &[u32],
        adapter: &Option<Arc<LoraAdapter>>,
    ) -> (SeqCache, Vec<u32>, usize) {
        let mut best: Option<(usize, usize)> = None;
        for (i, p) in self.parked.iter().enumerate() {
            // Another adapter's keys and values are no prefix of this sequence's.
            let lcp = if !same_adapter(&p.adapter, adapter) {
                0
            } else {
                p.history
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            // The last prompt token is always fed: its logits start the generation.
            let usable = lcp.min(prompt.len() - 1);
            if best.is_none_or(|(_, u)| usable > u) {
                best = Some((i, usable));
            }
        }
        if let Some((i, usable)) = best {
            let Parked {
                mut cache,
                mut history,
                ..
            } = self.parked.remove(i);
            if usable > 0 && cache.truncate(usable) {
                history.truncate(usable);
                return (cache, history, usable);
            }
            cache.clear();
            history.clear();
            return (cache, history, 0);
        }
        (
            model.new_cache(self.cfg.n_ctx, self.cfg.n_batch),
            Vec::new(),
            0,
        )
    }

    /// Stops sequence `id` after the current step (its completion reports `Cancelled`).
    pub fn cancel(&mut self, id: u64) {
        for a in &mut self.active {
            if a.id == id && a.finish.is_none() {
                a.finish = Some(FinishReason::Cancelled);
            }
        }
    }

    /// One forward pass. Calls `on_token` for every sampled token (returning `false` cancels that
    /// sequence) and returns the sequences that finished, which leave the batch.
    pub fn step(
        &mut self,
        model: &Model,
        mut on_token: impl FnMut(Delta) -> bool,
    ) -> Result<Vec<(u64, Completion)>, EngineError> {
        self.fork_ready();
        // Decode steps first (one token each), then prompt chunks in the remaining budget.
        let mut budget = self.cfg.n_batch;
        let mut plan: Vec<(usize, usize)> = Vec::new();
        for (i, s) in self.active.iter().enumerate() {
            if s.finish.is_none() && s.last.is_some() && budget > 0 {
                plan.push((i, 1));
                budget -= 1;
            }
        }
        for (i, s) in self.active.iter().enumerate() {
            if s.finish.is_none() && s.last.is_none() && s.wait.is_none() && budget > 0 {
                let n = (s.prompt.len() - s.fed).min(budget);
                plan.push((i, n));
                budget -= n;
            }
        }
        plan.sort_unstable();
        if !plan.is_empty() {
            self.forward_and_sample(model, &plan, &mut on_token)?;
        }
        Ok(self.retire())
    }

    fn forward_and_sample(
        &mut self,
        model: &Model,
        plan: &[(usize, usize)],
        on_token: &mut impl FnMut(Delta) -> bool,
    ) -> Result<(), EngineError> {
        let feeds: Vec<Vec<u32>> = plan
            .iter()
            .map(|&(i, n)| {
                let s = &self.active[i];
                match s.last {
                    Some(t) => vec![t],
                    None => s.prompt[s.fed..s.fed + n].to_vec(),
                }
            })
            .collect();
        let wants: Vec<bool> = plan
            .iter()
            .map(|&(i, n)| {
                let s = &self.active[i];
                s.last.is_some() || s.fed + n == s.prompt.len()
            })
            .collect();
        {
            let mut inputs = Vec::with_capacity(plan.len());
            let mut rest: &mut [Active] = &mut self.active;
            let mut base = 0;
            for (k, &(i, _)) in plan.iter().enumerate() {
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(i - base + 1);
                let s = head
                    .last_mut()
                    .expect("split leaves the planned sequence last");
                rest = tail;
                base = i + 1;
                inputs.push(SeqInput {
                    cache: &mut s.cache,
                    tokens: &feeds[k],
                    logits: if wants[k] { Logits::Last } else { Logits::None },
                    adapter: s.adapter.as_deref(),
                });
            }
            model.forward_into(&mut inputs, false, &mut self.out)?;
        }
        let out = &self.out;
        for (k, &(i, n)) in plan.iter().enumerate() {
            let s = &mut self.active[i];
            s.history.extend_from_slice(&feeds[k]);
            if s.last.is_none() {
                s.fed += n;
            }
        }
        // Sampling scans the whole vocabulary per sequence: spread the sequences over the pool.
        let mut planned: Vec<(usize, &mut Active)> = Vec::with_capacity(plan.len());
        let mut next = plan.iter().enumerate().peekable();
        for (i, a) in self.active.iter_mut().enumerate() {
            if let Some(&(k, &(pi, _))) = next.peek() {
                if pi == i {
                    next.next();
                    if wants[k] {
                        planned.push((k, a));
                    }
                }
            }
        }
        let sampled: Vec<Sampled> = planned
            .par_iter_mut()
            .map(|(k, s)| {
                let row = out.row(out.rows[*k].start);
                if let Some(m) = &s.json {
                    let masked = json_mask(model, m, row, s.sampler.params.top_k);
                    s.sampler.sample_masked(row, &masked)
                } else if s.sampler.params.ignore_eos {
                    s.sampler.sample_banned(row, model.tokenizer.eog_tokens())
                } else {
                    s.sampler.sample(row)
                }
            })
            .collect();
        for ((_, s), x) in planned.into_iter().zip(sampled) {
            s.accept(model, self.cfg.n_ctx, x, on_token);
        }
        Ok(())
    }

    /// Removes finished sequences, parking their caches.
    fn retire(&mut self) -> Vec<(u64, Completion)> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].finish.is_none() {
                i += 1;
                continue;
            }
            let s = self.active.swap_remove(i);
            done.push((
                s.id,
                Completion {
                    prompt_tokens: s.prompt.len(),
                    cached_tokens: s.cached,
                    tokens: s.generated,
                    text: s.text,
                    finish: s.finish.unwrap_or(FinishReason::Length),
                    logprobs: s.logprobs,
                },
            ));
            if self.cfg.max_parked > 0 {
                if self.parked.len() >= self.cfg.max_parked {
                    self.parked.remove(0);
                }
                self.parked.push(Parked {
                    cache: s.cache,
                    history: s.history,
                    adapter: s.adapter,
                });
            }
        }
        done
    }
}

impl Active {
    /// Takes a sampled token: end-of-generation, stop strings, limits, streaming text.
    fn accept(
        &mut self,
        model: &Model,
        n_ctx: usize,
        sampled: Sampled,
        on_token: &mut impl FnMut(Delta) -> bool,
    ) {
        let tok = sampled.token;
        let stops = &self.sampler.params.stop;
        if model.tokenizer.is_eog(tok) {
            self.finish = Some(FinishReason::Stop);
        } else {
            if let Some(m) = &mut self.json {
                // The mask only offered tokens the matcher accepts; once the value closes, stop.
                m.feed(&model.tokenizer.token_bytes(tok, false));
                if m.is_complete() {
                    self.finish = Some(FinishReason::Stop);
                }
            }
            self.generated.push(tok);
            let piece = self.decoder.push(&model.tokenizer.token_bytes(tok, false));
            self.text.push_str(&piece);
            let longest = stops.iter().map(|x| x.len()).max().unwrap_or(0);
            let mut from = self.emitted.saturating_sub(longest);
            while !self.text.is_char_boundary(from) {
                from -= 1;
            }
            let hit = stops
                .iter()
                .filter(|x| !x.is_empty())
                .filter_map(|x| self.text[from..].find(x.as_str()).map(|p| p + from))
                .min();
            if let Some(p) = hit {
                self.text.truncate(p);
                self.finish = Some(FinishReason::Stop);
            } else if self.generated.len() >= self.sampler.params.max_tokens
                || self.cache.len() + 1 >= n_ctx
            {
                self.finish = Some(FinishReason::Length);
            }
        }
        if self.finish.is_some() {
            let tail = self.decoder.finish();
            if self.finish != Some(FinishReason::Stop)
                || !stops.iter().any(|x| self.text.ends_with(x.as_str()))
            {
                self.text.push_str(&tail);
            }
        }
        let hold = if self.finish.is_some() {
            0
        } else {
            held_back(&self.text, stops)
        };
        let end = (self.text.len() - hold).max(self.emitted);
        let keep_going = on_token(Delta {
            seq: self.id,
            text: &self.text[self.emitted..end],
            sampled: &sampled,
        });
        self.emitted = end;
        // The end-of-generation token ends the reply but is no part of it (OpenAI's logprobs
        // list the content's tokens; `usage` counts `generated`).
        if !model.tokenizer.is_eog(tok) {
            self.logprobs.push(sampled);
        }
        self.last = Some(tok);
        if !keep_going && self.finish.is_none() {
            self.finish = Some(FinishReason::Cancelled);
        }
    }
}

/// Logits with every token the JSON matcher rejects set to −∞. Candidates are tried from the most
/// likely down until enough valid ones are found (the sampler's top-k, at least 64); only when the
/// 4096 likeliest hold none is the whole vocabulary scanned.
fn json_mask(model: &Model, m: &JsonMatcher, row: &[f32], top_k: usize) -> Vec<f32> {
    let tok = &model.tokenizer;
    let want = top_k.max(64);
    let valid = |id: usize| -> bool {
        let id = id as u32;
        if tok.is_eog(id) {
            return m.is_complete();
        }
        let bytes = tok.token_bytes(id, false);
        if bytes.is_empty() {
            return false;
        }
        let mut probe = m.clone();
        probe.feed(&bytes)
    };
    let mut masked = vec![f32::NEG_INFINITY; row.len()];
    let mut found = 0;
    for id in top_k_indices(row, 4096.min(row.len())) {
        if valid(id) {
            masked[id] = row[id];
            found += 1;
            if found >= want {
                return masked;
            }
        }
    }
    if found == 0 {
        for id in 0..row.len() {
            if valid(id) {
                masked[id] = row[id];
            }
        }
    }
    masked
}

/// Generates for every request, calling `on_token` after each sampled token; returning `false` from
/// it cancels that sequence. Completions come back in request order.
pub fn generate(
    model: &Model,
    cfg: GenConfig,
    requests: Vec<Request>,
    mut on_token: impl FnMut(Delta) -> bool,
) -> Result<Vec<Completion>, EngineError> {
    let mut batch = Batch::new(GenConfig {
        max_parked: 0,
        share_prompts: false,
        ..cfg
    });
    for r in &requests {
        batch.check(r)?;
    }
    let n = requests.len();
    for (i, r) in requests.into_iter().enumerate() {
        batch.add(model, i as u64, r)?;
    }
    let mut done: Vec<Option<Completion>> = vec![None; n];
    while !batch.is_empty() {
        for (id, c) in batch.step(model, &mut on_token)? {
            done[id as usize] = Some(c);
        }
    }
    Ok(done.into_iter().flatten().collect())
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
