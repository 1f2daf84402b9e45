//! GGUF files, tokenizers, chat templates and the gemma3/llama transformer forward pass.
mod error;
pub mod gguf;
pub mod tokenizer;

pub use error::ModelError;
pub use tokenizer::{StreamDecoder, Tokenizer};
