//! LoRA training on CPU over a frozen, still-quantized base model: the backward pass of the
//! `gemma3` and `llama` architectures, AdamW, SFT and DPO trainers, checkpoints, adapter formats.
//!
//! One call goes from examples to an adapter ([`train`]); [`score_nll`] scores held-out examples
//! and [`perplexity`] held-out text.
//!
//! ```no_run
//! use autodidact_model::{Message, Model};
//! use autodidact_train::data::SftExample;
//! use autodidact_train::{train, Examples, Flow, TrainJob, Validation};
//!
//! let model = Model::load("model.gguf")?;
//! let chat = |q: &str, a: &str| {
//!     SftExample::Chat(vec![Message::new("user", q), Message::new("assistant", a)])
//! };
//! let examples = vec![chat("2 + 3?", "5"), chat("4 + 4?", "8"), chat("1 + 6?", "7")];
//! let mut job = TrainJob::new(&model, Examples::Sft(examples));
//! job.config.rank = 8;
//! job.config.alpha = 16.0;
//! job.validation = Validation::Split(0.34);
//! let trained = train(&job, &mut |p| {
//!     eprintln!("step {}/{} loss {:.3}", p.step, p.total, p.loss);
//!     Flow::Continue
//! })?;
//! let adapter = trained.outcome.adapter; // save it with autodidact-store's `Adapters::save`
//! # let _ = adapter;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
pub mod attention;
pub mod checkpoint;
pub mod data;
pub mod distill;
mod error;
pub mod graph;
mod job;
pub mod linear;
pub mod ops;
pub mod optim;
pub mod output_t;
pub mod peft;
mod perplexity;
pub mod run;

pub use distill::SoftTarget;
pub use error::TrainError;
pub use graph::{OutputGrad, Pack, Sequence, Tape, Trainer};
pub use job::{split_off, train, Examples, LoadReports, Replay, TrainJob, Trained, Validation};
pub use linear::Dropout;
pub use perplexity::{perplexity, Perplexity};
pub use run::{
    init_adapter, score_nll, Data, Flow, Method, NllScore, Outcome, Progress, Run, TrainConfig,
};
