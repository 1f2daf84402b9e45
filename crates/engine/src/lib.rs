//! Generation over a loaded model: sampling, stop strings, streaming and batched sequences.
mod actor;
pub mod adapters;
mod batch;
mod error;
pub mod json_grammar;
pub mod sampling;

pub use actor::{EngineConfig, EngineHandle, EngineStats, Event, EventSink};
pub use adapters::{AdapterMeta, AdapterStore};
pub use batch::{generate, Batch, Completion, Delta, FinishReason, GenConfig, Request};
pub use error::EngineError;
pub use sampling::{Sampled, Sampler, SamplingParams, TokenLogprob};
