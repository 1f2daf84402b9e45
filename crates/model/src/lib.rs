//! GGUF files, tokenizers, chat templates and the gemma3/llama transformer forward pass.
pub mod chat;
pub mod config;
mod error;
mod forward;
pub mod gguf;
mod kv_cache;
mod model;
pub mod tokenizer;
mod weights;

pub use chat::{ChatTemplate, Message};
pub use config::{Arch, Config};
pub use error::ModelError;
pub use forward::{ForwardOutput, Logits, SeqInput};
pub use kv_cache::SeqCache;
pub use model::Model;
pub use tokenizer::{StreamDecoder, Tokenizer};
pub use weights::{LayerWeights, Matrix, Weights};
