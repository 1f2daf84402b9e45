//! What callers outside the server need most: a request built from chat messages through the
//! model's own template (the one way the server, the CLI and the trainer's callers share), and
//! batched generation over any number of requests with at most `max_active` in flight.
use crate::batch::{Batch, Completion, Delta, GenConfig, Request};
use crate::sampling::SamplingParams;
use crate::EngineError;
use autodidact_model::{ChatTemplate, Message, Model};

impl Request {
    /// A request whose prompt is `messages` rendered by the model's chat template, ready for
    /// the assistant's reply (the template's end-of-turn token ends it).
    pub fn chat(
        model: &Model,
        messages: &[Message],
        params: SamplingParams,
    ) -> Result<Request, EngineError> {
        Ok(Request {
            prompt: chat_prompt(model, messages)?,
            params,
            ..Request::default()
        })
    }
}

/// The prompt tokens of `messages` under the model's chat template (BOS once).
pub fn chat_prompt(model: &Model, messages: &[Message]) -> Result<Vec<u32>, EngineError> {
    Ok(ChatTemplate::for_tokenizer(&model.tokenizer).render_tokens(&model.tokenizer, messages)?)
}

/// Limits of [`generate_many`].
#[derive(Debug, Clone, Copy)]
pub struct ManyConfig {
    pub gen: GenConfig,
    /// Sequences decoded together; the rest wait their turn (each holds a KV cache of `n_ctx`).
    pub max_active: usize,
}

impl Default for ManyConfig {
    fn default() -> Self {
        ManyConfig {
            gen: GenConfig::default(),
            max_active: 32,
        }
    }
}

/// Generates for every request, at most `cfg.max_active` at a time, admitting the next ones as
/// others finish. Every request is checked before any work starts. `on_done(i, completion)` is
/// called as request `i` finishes (returning `false` stops everything after this step: the
/// unfinished ones come back `Cancelled`, the never-started ones are left out). Completions come
/// back in request order.
pub fn generate_many(
    model: &Model,
    cfg: ManyConfig,
    requests: Vec<Request>,
    mut on_token: impl FnMut(usize, Delta) -> bool,
    mut on_done: impl FnMut(usize, &Completion) -> bool,
) -> Result<Vec<Option<Completion>>, EngineError> {
    let mut batch = Batch::new(cfg.gen);
    for r in &requests {
        batch.check(r)?;
    }
    let n = requests.len();
    let mut pending = requests.into_iter().enumerate();
    let mut done: Vec<Option<Completion>> = vec![None; n];
    let mut stopping = false;
    loop {
        while !stopping && batch.len() < cfg.max_active.max(1) {
            let Some((i, r)) = pending.next() else { break };
            batch.add(model, i as u64, r)?;
        }
        if batch.is_empty() {
            break;
        }
        let finished = batch.step(model, |d| on_token(d.seq as usize, d))?;
        for (id, c) in finished {
            if !on_done(id as usize, &c) && !stopping {
                stopping = true;
                for other in 0..n as u64 {
                    batch.cancel(other);
                }
            }
            done[id as usize] = Some(c);
        }
    }
    Ok(done)
}
