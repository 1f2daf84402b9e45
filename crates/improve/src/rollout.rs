//! Generation for rollouts and evaluation: prompts put through the chat template (or a raw
//! few-shot scaffold), run through the engine's continuous batch with a bounded number of
//! sequences in flight and parked caches so that shared prompt prefixes are computed once.
//! The only module that calls the engine's generation API.
use crate::ImproveError;
use autodidact_engine::{
    generate_many, FinishReason, GenConfig, ManyConfig, Request, SamplingParams,
};
use autodidact_model::{ChatTemplate, LoraAdapter, Message, Model};
use std::sync::Arc;
use std::time::Instant;

/// One sequence to generate.
#[derive(Clone)]
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub adapter: Option<Arc<LoraAdapter>>,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub text: String,
    pub tokens: usize,
    /// Stopped by `max_tokens` or the context, not by an end of turn or stop string.
    pub cut_off: bool,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct GenStats {
    pub sequences: usize,
    pub prompt_tokens: usize,
    /// Prompt tokens served from a parked cache instead of computed.
    pub cached_tokens: usize,
    pub generated_tokens: usize,
    pub seconds: f64,
}

impl GenStats {
    pub fn add(&mut self, o: &GenStats) {
        self.sequences += o.sequences;
        self.prompt_tokens += o.prompt_tokens;
        self.cached_tokens += o.cached_tokens;
        self.generated_tokens += o.generated_tokens;
        self.seconds += o.seconds;
    }

    pub fn tokens_per_s(&self) -> f64 {
        self.generated_tokens as f64 / self.seconds.max(1e-9)
    }
}

/// The prompt of a plain chat turn: what the user would send.
pub fn chat_prompt(model: &Model, messages: &[Message]) -> Result<Vec<u32>, ImproveError> {
    Ok(autodidact_engine::chat_prompt(model, messages)?)
}

/// Stop strings of a chat reply: the template's end-of-turn marker, for models where it is
/// text rather than one special token (tiny test models); harmless where it is a token.
pub fn chat_stop(model: &Model) -> Vec<String> {
    let t = ChatTemplate::for_tokenizer(&model.tokenizer);
    let eot = t.end_of_turn(&model.tokenizer);
    if eot.is_empty() {
        Vec::new()
    } else {
        vec![eot]
    }
}

/// A raw text prompt (BOS + text), for few-shot scaffolds of a base model.
pub fn raw_prompt(model: &Model, text: &str) -> Vec<u32> {
    model.tokenizer.encode(text, true, false)
}

/// How sequences in flight share the prompt prefixes they have in common.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefixes {
    /// Only through finished sequences' parked caches: a greedy reply is the same bits at any
    /// `max_active` (held-out evaluation, probes).
    Exact,
    /// Also from sequences still in flight (see the engine's `GenConfig::share_prompts`):
    /// sampled rollouts, where k samples of a task and the tasks under one scaffold share most
    /// of their prompts.
    Shared,
}

/// Runs `jobs` with at most `max_active` in flight, calling `done(index, output)` as each
/// finishes (in completion order); an error from `done` stops the rest. Jobs that share a
/// prompt prefix should be adjacent: finished sequences park their caches for the next ones.
pub fn generate(
    model: &Model,
    jobs: Vec<Job>,
    max_active: usize,
    prefixes: Prefixes,
    mut done: impl FnMut(usize, Output) -> Result<(), ImproveError>,
) -> Result<GenStats, ImproveError> {
    let start = Instant::now();
    let longest = jobs
        .iter()
        .map(|j| j.prompt.len() + j.params.max_tokens)
        .max()
        .unwrap_or(0);
    let cfg = ManyConfig {
        gen: GenConfig {
            n_ctx: (longest + 8).min(model.config.ctx_train.max(64)),
            n_batch: 256,
            max_parked: 8,
            share_prompts: prefixes == Prefixes::Shared,
        },
        max_active: max_active.max(1),
    };
    let requests = jobs
        .into_iter()
        .map(|j| Request {
            prompt: j.prompt,
            params: j.params,
            json: None,
            adapter: j.adapter,
        })
        .collect();
    let mut stats = GenStats::default();
    let mut failed = None;
    generate_many(
        model,
        cfg,
        requests,
        |_, _| true,
        |i, c| {
            stats.sequences += 1;
            stats.prompt_tokens += c.prompt_tokens;
            stats.cached_tokens += c.cached_tokens;
            stats.generated_tokens += c.tokens.len();
            let out = Output {
                text: c.text.clone(),
                tokens: c.tokens.len(),
                cut_off: c.finish != FinishReason::Stop,
            };
            match done(i, out) {
                Ok(()) => true,
                Err(e) => {
                    failed.get_or_insert(e);
                    false
                }
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    stats.seconds = start.elapsed().as_secs_f64();
    Ok(stats)
}
