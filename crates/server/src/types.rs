//! OpenAI request and response bodies. Requests are read field by field (see `request.rs`) so that
//! every error names the field and what it must be; unknown fields are ignored, as
//! OpenAI-compatible servers do.
use serde::Serialize;

/// One chat message, its content reduced to text.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// `response_format`: `type`, and for `json_schema` the schema.
#[derive(Debug)]
pub struct ResponseFormat {
    pub kind: String,
    pub schema: Option<serde_json::Value>,
}

/// Sampling fields shared by both endpoints (OpenAI's, plus llama.cpp's `top_k`, `min_p`,
/// `repeat_penalty`).
#[derive(Debug, Default)]
pub struct SamplingFields {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub n: Option<u32>,
    /// llama.cpp's extension: keep generating through end-of-generation tokens.
    pub ignore_eos: bool,
    pub stream: bool,
    /// Whether a stream ends with a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// A stored LoRA adapter to answer with (also given as `"model": "BASE+NAME"`).
    pub adapter: Option<String>,
}

#[derive(Debug)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    pub response_format: Option<ResponseFormat>,
    /// `truncation: "auto"` (OpenAI's Responses API word): drop the oldest turns that do not fit.
    pub truncate: Option<bool>,
    /// OpenAI's end-user id: whose memory the chat recalls and learns into.
    pub user: Option<String>,
    /// `"memory": false` answers without recalling or learning (on by default where the server
    /// has memory).
    pub memory: Option<bool>,
    /// `conversation_id`: groups the turns the server stores (one conversation a day without it).
    pub conversation: Option<String>,
    pub sampling: SamplingFields,
}

#[derive(Debug)]
pub struct CompletionRequest {
    pub model: String,
    pub prompts: Vec<String>,
    /// Legacy completions: how many top alternatives per token (0–5).
    pub logprobs: Option<u32>,
    pub echo: bool,
    pub sampling: SamplingFields,
}

#[derive(Debug, Serialize, Clone, Copy, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptDetails,
}

#[derive(Debug, Serialize, Clone, Copy, Default)]
pub struct PromptDetails {
    pub cached_tokens: usize,
}

#[derive(Debug, Serialize, Clone)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Clone)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Serialize, Clone)]
pub struct ChoiceLogprobs {
    pub content: Vec<TokenLogprob>,
}
