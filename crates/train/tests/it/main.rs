//! Train crate tests: whole-model LoRA and token-row gradients against finite differences on
//! tiny random models of both architectures, the training forward against the inference forward,
//! and the real model's chat-marker rows.
mod grad;
mod job;
mod real;
mod run;
