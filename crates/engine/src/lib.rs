//! Generation over a loaded model: sampling, stop strings, streaming and batched sequences.
mod error;
mod generate;
pub mod sampling;

pub use error::EngineError;
pub use generate::{generate, Completion, Delta, FinishReason, GenConfig, Request};
pub use sampling::{Sampled, Sampler, SamplingParams, TokenLogprob};
