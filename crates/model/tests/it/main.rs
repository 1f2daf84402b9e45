//! Model crate tests: GGUF round trips and malformed files, tiny random models of every architecture
//! and tensor type against an f32 reference, and golden tests of the real default model against
//! llama.cpp's outputs, vendored in the repository's `reference/` (kept identical to the shared copy).
mod bert;
mod chat;
mod common;
mod gguf;
mod golden_model;
mod golden_tokenizer;
mod lora;
mod reference_copy;
mod tiny;
