//! Training as one call: data (a JSONL file or examples in memory) → validation split →
//! the run → a trained adapter, with what was read, skipped and cut reported.
use crate::data::{
    encode_preferences, encode_sft, load_preferences, load_sft, DataOptions, LoadReport, OnBadLine,
    PreferenceExample, SftExample,
};
use crate::graph::{Pack, Trainer};
use crate::run::{Data, Flow, Method, Outcome, Progress, Run, TrainConfig};
use crate::TrainError;
use autodidact_model::{LoraAdapter, Model};
use std::path::{Path, PathBuf};

/// Where a run's examples come from.
#[derive(Debug, Clone)]
pub enum Examples {
    /// A JSONL file: chat, prompt/completion or text lines for SFT, preference lines for DPO.
    File(PathBuf),
    Sft(Vec<SftExample>),
    Dpo(Vec<PreferenceExample>),
}

/// Where the validation examples come from.
#[derive(Debug, Clone, Default)]
pub enum Validation {
    #[default]
    None,
    /// Hold out this fraction of the training examples (a seeded shuffle), in `[0, 1)`.
    Split(f32),
    /// A separate set in the same format as the training examples.
    Set(Examples),
}

/// Text trained beside the examples to keep an adapter close to its base on general language
/// (replay, as in continual learning): raw text trained throughout, typically the base's own
/// samples, whose loss pulls the adapter back toward the base's distribution.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub texts: Vec<String>,
    /// The replayed tokens' total loss weight relative to the examples' (0.5: replay carries a
    /// third of an epoch's loss weight), whatever the two sides' lengths.
    pub share: f32,
    /// 0: train on the texts' own next tokens (cross-entropy). `k > 0`: distil the base model
    /// (adapter off, even when training continues from one) — each replayed position is trained
    /// toward the base's distribution there, kept as its `k` likeliest tokens plus the rest
    /// (see [`crate::distill`]), which a few hundred texts cannot be overfitted to.
    pub top_k: usize,
}

/// Sequences whose reference distributions are taken in one forward of the base.
const DISTIL_BATCH: usize = 8;

/// Everything one training run needs. `TrainJob::new(model, examples)` takes the defaults.
pub struct TrainJob<'a> {
    pub model: &'a Model,
    pub config: TrainConfig,
    pub examples: Examples,
    pub validation: Validation,
    pub on_bad: OnBadLine,
    /// Continue from this adapter instead of a fresh one.
    pub init: Option<&'a LoraAdapter>,
    /// Where checkpoints go (`None`: none are written).
    pub checkpoint: Option<&'a Path>,
    /// Continue the interrupted run whose checkpoint is at `checkpoint`.
    pub resume: bool,
    /// The output layer's backward in f32 instead of int8 (slower).
    pub exact_output_grad: bool,
    /// Replayed text mixed into the training set (SFT only; never in the validation set).
    pub replay: Option<Replay>,
}

/// Per input ("train", "validation"): lines read, lines skipped with why, examples cut.
pub type LoadReports = Vec<(&'static str, LoadReport)>;

/// What [`train`] did.
pub struct Trained {
    pub outcome: Outcome,
    pub reports: LoadReports,
    pub train_examples: usize,
    pub val_examples: usize,
    /// The last validation loss, if there was a validation set.
    pub val_loss: Option<f32>,
}

impl Trained {
    /// Whether the run stopped before its last step (the checkpoint allows a resume).
    pub fn interrupted(&self) -> bool {
        self.outcome.steps < self.outcome.total
    }
}

impl<'a> TrainJob<'a> {
    /// A job with [`TrainConfig::default`], its sequence length capped at the model's context.
    pub fn new(model: &'a Model, examples: Examples) -> Self {
        let mut config = TrainConfig::default();
        config.seq_len = config.seq_len.min(model.config.ctx_train);
        TrainJob {
            model,
            config,
            examples,
            validation: Validation::None,
            on_bad: OnBadLine::Fail,
            init: None,
            checkpoint: None,
            resume: false,
            exact_output_grad: false,
            replay: None,
        }
    }

    /// Reads and tokenizes the examples and the validation set as this job's run sees them.
    pub fn data(&self) -> Result<(Data, LoadReports), TrainError> {
        let opts = DataOptions {
            seq_len: self.config.seq_len,
            on_bad: self.on_bad,
        };
        let dpo = matches!(self.config.method, Method::Dpo { .. });
        let mut reports = Vec::new();
        let (train, val) = match &self.validation {
            Validation::Set(v) => (&self.examples, Some(v)),
            _ => (&self.examples, None),
        };
        let split = match self.validation {
            Validation::Split(f) if !(0.0..1.0).contains(&f) => {
                return Err(TrainError::Config(
                    "the validation fraction must be in [0, 1)".into(),
                ))
            }
            Validation::Split(f) => f,
            _ => 0.0,
        };
        if dpo && self.replay.is_some() {
            return Err(TrainError::Config(
                "replayed text is for SFT, not preference pairs".into(),
            ));
        }
        let data = if dpo {
            let (all, rep) = preferences(train, self.model, &opts)?;
            reports.push(("train", rep));
            let (train, val) = match val {
                Some(v) => {
                    let (val, rep) = preferences(v, self.model, &opts)?;
                    reports.push(("validation", rep));
                    (all, val)
                }
                None => split_off(all, split, self.config.seed),
            };
            Data::Dpo { train, val }
        } else {
            let (all, rep) = sft(train, self.model, &opts)?;
            reports.push(("train", rep));
            let (train, val) = match val {
                Some(v) => {
                    let (val, rep) = sft(v, self.model, &opts)?;
                    reports.push(("validation", rep));
                    (all, val)
                }
                None => split_off(all, split, self.config.seed),
            };
            let train = match &self.replay {
                Some(r) => {
                    let (seqs, rep) = with_replay(train, r, self.model, &opts)?;
                    reports.push(("replay", rep));
                    seqs
                }
                None => train,
            };
            Data::Sft { train, val }
        };
        Ok((data, reports))
    }

    fn run(&self) -> Run<'_> {
        Run {
            model: self.model,
            config: self.config.clone(),
            checkpoint: self.checkpoint,
            resume: self.resume,
            init: self.init,
            exact_output_grad: self.exact_output_grad,
        }
    }

    /// Optimizer steps the job will take over `data`.
    pub fn total_steps(&self, data: &Data) -> usize {
        self.run().total_steps(data)
    }

    /// Trains on data from [`TrainJob::data`], calling `on_step` after every optimizer step.
    pub fn train_on(
        &self,
        data: Data,
        reports: LoadReports,
        on_step: &mut dyn FnMut(&Progress) -> Flow,
    ) -> Result<Trained, TrainError> {
        let (train_examples, val_examples) = data.sizes();
        let mut val_loss = None;
        let outcome = self.run().train(&data, &mut |p| {
            if p.val_loss.is_some() {
                val_loss = p.val_loss;
            }
            on_step(p)
        })?;
        Ok(Trained {
            outcome,
            reports,
            train_examples,
            val_examples,
            val_loss,
        })
    }
}

/// The one call from data to a trained adapter: reads the examples, splits off validation,
/// trains, and returns the adapter with what happened. Saving it is the caller's (the store's).
///
/// ```no_run
/// # use autodidact_train::{train, TrainJob, Examples, Flow};
/// # use autodidact_train::data::SftExample;
/// # use autodidact_model::{Model, Message};
/// let model = Model::load("model.gguf")?;
/// let examples = vec![SftExample::Chat(vec![
///     Message::new("user", "What is 2 plus 3?"),
///     Message::new("assistant", "5"),
/// ])];
/// let mut job = TrainJob::new(&model, Examples::Sft(examples));
/// job.config.epochs = 3;
/// let trained = train(&job, &mut |_progress| Flow::Continue)?;
/// println!("{} steps, final loss {:?}", trained.outcome.steps,
///          trained.outcome.history.last().map(|p| p.loss));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn train(
    job: &TrainJob,
    on_step: &mut dyn FnMut(&Progress) -> Flow,
) -> Result<Trained, TrainError> {
    job.config.check()?;
    let (data, reports) = job.data()?;
    job.train_on(data, reports, on_step)
}

fn sft(
    ex: &Examples,
    m: &Model,
    opts: &DataOptions,
) -> Result<(Vec<crate::Sequence>, LoadReport), TrainError> {
    match ex {
        Examples::File(p) => load_sft(p, m, opts),
        Examples::Sft(v) => encode_sft(v, m, opts),
        Examples::Dpo(_) => Err(TrainError::Config(
            "preference pairs need the DPO method".into(),
        )),
    }
}

/// `train` with the replayed texts appended, weighted so that they carry `share` of the
/// examples' total loss weight.
fn with_replay(
    mut train: Vec<crate::Sequence>,
    r: &Replay,
    m: &Model,
    opts: &DataOptions,
) -> Result<(Vec<crate::Sequence>, LoadReport), TrainError> {
    if !(r.share.is_finite() && r.share >= 0.0) {
        return Err(TrainError::Config(
            "the replay share must be a finite number ≥ 0".into(),
        ));
    }
    let texts: Vec<SftExample> = r.texts.iter().cloned().map(SftExample::Text).collect();
    let (mut seqs, rep) = encode_sft(&texts, m, opts)?;
    // A replayed text is a stretch of text, not a whole document: where it stops is not a
    // lesson, so its end-of-text token is not trained.
    for s in &mut seqs {
        if s.tokens.len() > 1 && s.tokens.last().copied() == m.tokenizer.eos {
            s.tokens.pop();
            s.labels.pop();
            if let Some(l) = s.labels.last_mut() {
                *l = None;
            }
        }
    }
    seqs.retain(|s| s.n_labels() > 0);
    let main: usize = train.iter().map(|s| s.n_labels()).sum();
    let replayed: usize = seqs.iter().map(|s| s.n_labels()).sum();
    if main == 0 || replayed == 0 || r.share == 0.0 {
        return Ok((train, rep));
    }
    let w = r.share * main as f32 / replayed as f32;
    for s in &mut seqs {
        s.weight = w;
    }
    if r.top_k > 0 {
        let base = Trainer {
            model: m,
            adapter: None,
            output_t: None,
        };
        for chunk in seqs.chunks_mut(DISTIL_BATCH) {
            let pack = Pack::new(&chunk.iter().collect::<Vec<_>>());
            let mut soft = base.distributions(&pack, r.top_k)?.into_iter();
            for s in chunk.iter_mut() {
                s.soft = Some(soft.by_ref().take(s.n_labels()).collect());
            }
        }
    }
    train.extend(seqs);
    Ok((train, rep))
}

fn preferences(
    ex: &Examples,
    m: &Model,
    opts: &DataOptions,
) -> Result<(Vec<crate::data::Preference>, LoadReport), TrainError> {
    match ex {
        Examples::File(p) => load_preferences(p, m, opts),
        Examples::Dpo(v) => encode_preferences(v, m, opts),
        Examples::Sft(_) => Err(TrainError::Config(
            "the DPO method needs preference pairs (prompt, chosen, rejected)".into(),
        )),
    }
}

/// Splits off the last `fraction` of examples (after a seeded shuffle) for validation.
pub fn split_off<T>(mut all: Vec<T>, fraction: f32, seed: u64) -> (Vec<T>, Vec<T>) {
    let n_val = ((all.len() as f32) * fraction).round() as usize;
    if n_val == 0 || n_val >= all.len() {
        return (all, Vec::new());
    }
    let mut s = seed ^ 0x5eed;
    for i in (1..all.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        all.swap(i, (s >> 33) as usize % (i + 1));
    }
    let val = all.split_off(all.len() - n_val);
    (all, val)
}
