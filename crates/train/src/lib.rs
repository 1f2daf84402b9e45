//! LoRA training on CPU over a frozen, still-quantized base model: the backward pass of the
//! `gemma3` and `llama` architectures, AdamW, SFT and DPO trainers, checkpoints, adapter formats.
pub mod attention;
mod error;
pub mod ops;

pub use error::TrainError;
pub mod graph;
pub mod linear;

pub use graph::{OutputGrad, Pack, Sequence, Tape, Trainer};
pub use linear::Dropout;
pub mod checkpoint;
pub mod data;
pub mod optim;
pub mod output_t;
pub mod run;

pub use run::{init_adapter, Data, Flow, Method, Outcome, Progress, Run, TrainConfig};
pub mod peft;
