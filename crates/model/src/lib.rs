//! GGUF files, tokenizers, chat templates and the gemma3/llama transformer forward pass.
mod attention;
pub mod bert;
pub mod chat;
pub mod config;
mod error;
mod forward;
pub mod gguf;
mod kv_cache;
pub mod lora;
mod model;
pub mod testing;
pub mod tokenizer;
mod weights;

pub use chat::{ChatTemplate, Message};
pub use config::{Activation, Arch, Config, RopeStyle};
pub use error::ModelError;
pub use forward::{apply_rope, ForwardOutput, Logits, RopeTable, SeqInput};
pub use kv_cache::SeqCache;
pub use lora::{rewrite_gguf, LayerLora, LoraAdapter, LoraPair, Target, TokenRows};
pub use model::Model;
pub use tokenizer::{StreamDecoder, Tokenizer};
pub use weights::{LayerWeights, Matrix, Weights};
