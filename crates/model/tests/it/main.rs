//! Model crate tests: GGUF round trips and malformed files, tokenizers, and golden tests of the real
//! default model against llama.cpp's outputs in `../shared/reference/`.
mod common;
mod golden_model;
mod golden_tokenizer;
