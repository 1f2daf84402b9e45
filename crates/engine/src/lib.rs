//! Generation over a loaded model: sampling, stop strings, streaming and batched sequences.
mod actor;
mod batch;
mod error;
pub mod json_grammar;
pub mod sampling;

pub use actor::{EngineConfig, EngineHandle, EngineStats, Event, EventSink};
pub use batch::{generate, Batch, Completion, Delta, FinishReason, GenConfig, Request};
pub use error::EngineError;
pub use sampling::{Sampled, Sampler, SamplingParams, TokenLogprob};
