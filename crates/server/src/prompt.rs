//! Prompts from requests, with the work bounded before it is done: tokenizing costs time linear in
//! the text, so it runs on a blocking thread (never stalling the async workers that stream other
//! replies), and text that certainly cannot fit is refused without being tokenized at all. Every
//! token stands for at most `max_token_bytes` bytes of input, so `bytes / max_token_bytes` tokens is
//! a lower bound on any text's length. With truncation the oldest non-system turns are dropped
//! until the prompt and the room asked for the reply fit.
use crate::error::ApiError;
use crate::types::ChatMessage;
use crate::AppState;
use autodidact_model::{Message, Model, Tokenizer};
use std::sync::Arc;

/// Most input bytes one token can stand for: its longest stored text (SentencePiece's `▁` takes
/// three bytes for one space; byte-level BPE text is never shorter than its bytes), and at least
/// one UTF-8 character for an unknown token.
pub fn max_token_bytes(tok: &Tokenizer) -> usize {
    (0..tok.vocab_size() as u32)
        .filter_map(|id| tok.token_text(id))
        .map(str::len)
        .max()
        .unwrap_or(0)
        .max(4)
}

/// What a chat prompt came to.
pub struct ChatPrompt {
    pub tokens: Vec<u32>,
    /// Oldest messages left out to fit (truncation only).
    pub dropped: usize,
}

/// The limits a prompt is built under.
#[derive(Clone, Copy)]
pub struct Budget {
    pub n_ctx: usize,
    pub max_token_bytes: usize,
    /// With truncation: tokens kept free for the reply; `None`: no truncation.
    pub truncate_reserve: Option<usize>,
}

impl Budget {
    /// Fewest tokens `bytes` of text can become.
    fn lower_bound(&self, bytes: usize) -> usize {
        bytes.div_ceil(self.max_token_bytes)
    }
}

fn too_long(what: String) -> ApiError {
    ApiError::bad_request(what)
        .param("messages")
        .code("context_length_exceeded")
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(&format!("tokenizer task: {e}"))))
}

fn render(model: &Model, msgs: &[Message]) -> Result<Vec<u32>, ApiError> {
    autodidact_engine::chat_prompt(model, msgs).map_err(|e| {
        log::warn!("chat template failed: {e}");
        ApiError::bad_request(
            "the messages do not fit this model's chat template; check the order of roles \
                 (system first, then user and assistant turns)",
        )
        .param("messages")
    })
}

pub async fn chat(
    state: &AppState,
    messages: Vec<ChatMessage>,
    budget: Budget,
) -> Result<ChatPrompt, ApiError> {
    let mut msgs = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::bad_request(format!(
                    "unsupported message role `{other}`; use system, user or assistant"
                ))
                .param(format!("messages[{i}].role")))
            }
        };
        msgs.push(Message::new(role, &m.content));
    }
    if msgs.is_empty() {
        return Err(ApiError::bad_request("`messages` must not be empty").param("messages"));
    }
    let model = state.engine.model.clone();
    blocking(move || build_chat(&model, msgs, budget)).await
}

fn build_chat(model: &Model, msgs: Vec<Message>, b: Budget) -> Result<ChatPrompt, ApiError> {
    let bytes = |m: &[Message]| m.iter().map(|m| m.content.len()).sum::<usize>();
    let Some(reserve) = b.truncate_reserve else {
        let least = b.lower_bound(bytes(&msgs));
        if least >= b.n_ctx {
            return Err(too_long(format!(
                "the messages are at least {least} tokens long but the context holds {}; \
                 shorten them or ask for `\"truncation\": \"auto\"`",
                b.n_ctx
            )));
        }
        let tokens = render(model, &msgs)?;
        if tokens.len() >= b.n_ctx {
            return Err(too_long(format!(
                "the prompt is {} tokens but the context holds {}; shorten the messages or ask \
                 for `\"truncation\": \"auto\"`",
                tokens.len(),
                b.n_ctx
            )));
        }
        return Ok(ChatPrompt { tokens, dropped: 0 });
    };
    let limit = b.n_ctx.saturating_sub(reserve);
    let (system, turns): (Vec<Message>, Vec<Message>) =
        msgs.into_iter().partition(|m| m.role == "system");
    if turns.is_empty() {
        let b = Budget {
            truncate_reserve: None,
            ..b
        };
        return build_chat(model, system, b);
    }
    // Dropping `k` oldest turns; the first kept turn must not be the assistant's (templates
    // expect a user turn first), except that the last message is always kept.
    let candidates: Vec<usize> = (0..turns.len())
        .filter(|&k| turns[k].role != "assistant" || k + 1 == turns.len())
        .filter(|&k| b.lower_bound(bytes(&system) + bytes(&turns[k..])) < limit.max(1))
        .collect();
    let with = |k: usize| -> Vec<Message> { system.iter().chain(&turns[k..]).cloned().collect() };
    let fits = |t: &[u32]| t.len() < b.n_ctx && t.len() + reserve <= b.n_ctx;
    // Fewer turns never make a longer prompt: binary-search the fewest dropped that fit.
    let (mut lo, mut hi) = (0, candidates.len());
    let mut best = None;
    while lo < hi {
        let mid = (lo + hi) / 2;
        let t = render(model, &with(candidates[mid]))?;
        if fits(&t) {
            best = Some((candidates[mid], t));
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    match best {
        Some((dropped, tokens)) => Ok(ChatPrompt { tokens, dropped }),
        None => Err(too_long(format!(
            "even the last message alone leaves no room for {reserve} reply tokens in the \
             context of {} tokens; shorten it or lower max_tokens",
            b.n_ctx
        ))),
    }
}

/// Tokenizes raw completion prompts, refusing any that certainly cannot fit untokenized.
pub async fn completions(
    model: Arc<Model>,
    texts: Vec<String>,
    budget: Budget,
) -> Result<Vec<Vec<u32>>, ApiError> {
    for (i, t) in texts.iter().enumerate() {
        let least = budget.lower_bound(t.len());
        if least >= budget.n_ctx {
            return Err(ApiError::bad_request(format!(
                "the prompt is at least {least} tokens long but the context holds {}; shorten it",
                budget.n_ctx
            ))
            .param(if texts.len() > 1 {
                format!("prompt[{i}]")
            } else {
                "prompt".into()
            })
            .code("context_length_exceeded"));
        }
    }
    blocking(move || {
        Ok(texts
            .iter()
            .map(|t| model.tokenizer.encode(t, true, true))
            .collect())
    })
    .await
}
