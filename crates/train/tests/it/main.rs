//! Train crate tests: whole-model LoRA gradients against finite differences on tiny random models
//! of both architectures, and the training forward against the inference forward.
mod grad;
mod job;
mod run;
