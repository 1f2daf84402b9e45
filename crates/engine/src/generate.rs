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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FinishReason;
    use autodidact_kernels::GgmlType;
    use autodidact_model::gguf::GgufFile;
    use autodidact_model::testing::tiny_model;
    use autodidact_model::Arch;
    use std::collections::HashSet;

    fn model() -> Model {
        let bytes = tiny_model(Arch::Gemma3, GgmlType::F32, 11);
        Model::from_gguf(GgufFile::from_bytes("tiny", &bytes).unwrap()).unwrap()
    }

    fn requests(m: &Model, n: usize, max_tokens: usize) -> Vec<Request> {
        (0..n)
            .map(|i| {
                let msgs = [Message::new("user", &format!("question {i}"))];
                let params = SamplingParams {
                    max_tokens,
                    ignore_eos: true,
                    seed: i as u64,
                    temperature: 0.9,
                    ..SamplingParams::default()
                };
                Request::chat(m, &msgs, params).unwrap()
            })
            .collect()
    }

    #[test]
    fn many_requests_finish_in_order_with_at_most_max_active_in_flight() {
        let m = model();
        let cfg = ManyConfig {
            gen: GenConfig {
                n_ctx: 128,
                ..GenConfig::default()
            },
            max_active: 3,
        };
        let live = std::cell::RefCell::new(HashSet::new());
        let mut most = 0;
        let mut finished = Vec::new();
        let done = generate_many(
            &m,
            cfg,
            requests(&m, 10, 4),
            |i, _| {
                live.borrow_mut().insert(i);
                most = most.max(live.borrow().len());
                true
            },
            |i, c| {
                live.borrow_mut().remove(&i);
                finished.push(i);
                assert_eq!(c.tokens.len(), 4);
                true
            },
        )
        .unwrap();
        assert_eq!(done.len(), 10);
        assert!(done.iter().all(|c| c.is_some()));
        assert!(most <= 3 && most > 0, "{most} in flight");
        finished.sort();
        assert_eq!(finished, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_chat_request_is_the_template_rendering() {
        let m = model();
        let msgs = [Message::new("user", "hi")];
        let r = Request::chat(&m, &msgs, SamplingParams::greedy()).unwrap();
        let direct = ChatTemplate::for_tokenizer(&m.tokenizer)
            .render_tokens(&m.tokenizer, &msgs)
            .unwrap();
        assert_eq!(r.prompt, direct);
    }

    #[test]
    fn stopping_early_cancels_the_rest_and_skips_the_unstarted() {
        let m = model();
        let cfg = ManyConfig {
            gen: GenConfig {
                n_ctx: 128,
                ..GenConfig::default()
            },
            max_active: 2,
        };
        let mut reqs = requests(&m, 6, 8);
        reqs[0].params.max_tokens = 1;
        let done = generate_many(&m, cfg, reqs, |_, _| true, |i, _| i != 0).unwrap();
        assert_eq!(done[0].as_ref().unwrap().tokens.len(), 1);
        assert_eq!(done[1].as_ref().unwrap().finish, FinishReason::Cancelled);
        assert!(done[2..].iter().all(Option::is_none));
    }

    #[test]
    fn an_invalid_request_fails_before_any_work() {
        let m = model();
        let mut reqs = requests(&m, 3, 4);
        reqs[2].prompt.clear();
        let mut tokens = 0;
        let r = generate_many(
            &m,
            ManyConfig::default(),
            reqs,
            |_, _| {
                tokens += 1;
                true
            },
            |_, _| true,
        );
        assert!(matches!(r, Err(EngineError::EmptyPrompt)));
        assert_eq!(tokens, 0);
    }
}
