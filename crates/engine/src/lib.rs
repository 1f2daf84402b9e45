//! Generation over a loaded model: sampling, stop strings, streaming and batched sequences.
//!
//! ```no_run
//! use autodidact_engine::{generate_many, ManyConfig, Request, SamplingParams};
//! use autodidact_model::{Message, Model};
//!
//! let model = Model::load("model.gguf")?;
//! // Thousands of chat requests, 32 decoded at a time, each with its own seed.
//! let requests = (0..1000u64)
//!     .map(|i| {
//!         let q = format!("What is {} plus {}?", i % 10, i / 100);
//!         let params = SamplingParams { temperature: 0.8, seed: i, max_tokens: 16, ..SamplingParams::default() };
//!         Request::chat(&model, &[Message::new("user", &q)], params)
//!     })
//!     .collect::<Result<Vec<_>, _>>()?;
//! let cfg = ManyConfig { max_active: 32, ..ManyConfig::default() };
//! let done = generate_many(&model, cfg, requests, |_, _| true, |i, c| {
//!     eprintln!("{i}: {}", c.text);
//!     true
//! })?;
//! assert_eq!(done.len(), 1000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Thread-pool policy: all compute runs on rayon's global pool, sized once per process (the
//! binary sets it from `--threads`; default one worker per core). The engine actor's thread only
//! waits for requests and hands each step to that pool, and training calls run on it too, so a
//! process that serves while it trains has one pool's worth of threads, never two.
mod actor;
pub mod adapters;
mod batch;
mod error;
mod generate;
pub mod json_grammar;
pub mod sampling;

pub use actor::{EngineConfig, EngineHandle, EngineStats, Event, EventSink};
pub use adapters::AdapterCache;
pub use autodidact_store::AdapterMeta;
pub use batch::{generate, Batch, Completion, Delta, FinishReason, GenConfig, Request};
pub use error::EngineError;
pub use generate::{chat_prompt, generate_many, ManyConfig};
pub use sampling::{Sampled, Sampler, SamplingParams, TokenLogprob};
