//! The training loop shared by SFT and DPO: deterministic data order, gradient accumulation,
//! clipping, AdamW with a schedule, validation, periodic checkpoints and exact resume.
use crate::checkpoint::{fnv1a, Checkpoint, FNV_OFFSET};
use crate::data::Preference;
use crate::graph::{OutputGrad, Pack, Sequence, Trainer};
use crate::linear::Dropout;
use crate::optim::{clip, zero, AdamState, AdamW, Decay, Schedule};
use crate::output_t::TransposedOutput;
use crate::TrainError;
use autodidact_model::{LoraAdapter, Model, Target, TokenRows};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    Sft,
    /// Direct preference optimization with temperature `beta`.
    Dpo {
        beta: f32,
    },
}

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub method: Method,
    pub rank: usize,
    pub alpha: f32,
    pub dropout: f32,
    pub targets: Vec<Target>,
    /// Token ids whose embedding rows train beside the layers (see [`TokenRows`]): a base
    /// model's chat-template markers, which it has never learned to predict.
    pub tokens: Vec<u32>,
    pub lr: f32,
    pub epochs: usize,
    /// Examples per forward pass (packed into one activation matrix).
    pub batch: usize,
    /// Forward passes per optimizer step.
    pub grad_accum: usize,
    pub seq_len: usize,
    pub warmup: usize,
    pub decay: Decay,
    pub adamw: AdamW,
    pub max_grad_norm: f32,
    pub seed: u64,
    /// Checkpoint every this many steps (and at the end).
    pub save_every: usize,
    /// Validation every this many steps (and at the end).
    pub eval_every: usize,
    pub max_steps: Option<usize>,
}

impl Default for TrainConfig {
    /// PEFT's usual LoRA recipe on every linear layer: rank 16, alpha 32, AdamW at 2e-4 with a
    /// cosine schedule, batches of 4 up to 512 tokens, one epoch.
    fn default() -> Self {
        TrainConfig {
            method: Method::Sft,
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: Target::ALL.to_vec(),
            tokens: Vec::new(),
            lr: 2e-4,
            epochs: 1,
            batch: 4,
            grad_accum: 1,
            seq_len: 512,
            warmup: 0,
            decay: Decay::Cosine,
            adamw: AdamW::default(),
            max_grad_norm: 1.0,
            seed: 42,
            save_every: 20,
            eval_every: 0,
            max_steps: None,
        }
    }
}

impl TrainConfig {
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |s: &str| Err(TrainError::Config(s.into()));
        if self.rank == 0 {
            return bad("rank must be at least 1");
        }
        if self.batch == 0 || self.grad_accum == 0 || self.epochs == 0 {
            return bad("batch, grad_accum and epochs must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("the learning rate must be a positive number");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout must be in [0, 1)");
        }
        if self.targets.is_empty() {
            return bad("at least one target module is needed");
        }
        if self.seq_len < 2 {
            return bad("the sequence length must be at least 2");
        }
        if let Method::Dpo { beta } = self.method {
            if !(beta > 0.0 && beta.is_finite()) {
                return bad("the DPO beta must be a positive number");
            }
        }
        Ok(())
    }
}

/// The examples of a run.
pub enum Data {
    Sft {
        train: Vec<Sequence>,
        val: Vec<Sequence>,
    },
    Dpo {
        train: Vec<Preference>,
        val: Vec<Preference>,
    },
}

impl Data {
    /// (training, validation) example counts.
    pub fn sizes(&self) -> (usize, usize) {
        match self {
            Data::Sft { train, val } => (train.len(), val.len()),
            Data::Dpo { train, val } => (train.len(), val.len()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Data::Sft { train, .. } => train.len(),
            Data::Dpo { train, .. } => train.len(),
        }
    }

    fn hash(&self) -> u64 {
        let mut h = FNV_OFFSET;
        let mut add = |t: &[u32]| {
            for x in t {
                h = fnv1a(&x.to_le_bytes(), h);
            }
            h = fnv1a(b"|", h);
        };
        match self {
            Data::Sft { train, val } => {
                for s in train.iter().chain(val) {
                    add(&s.tokens);
                    let l: Vec<u32> = s.labels.iter().map(|l| l.map_or(u32::MAX, |v| v)).collect();
                    add(&l);
                    add(&[s.weight.to_bits()]);
                    // The reference distributions follow from the tokens; their size is the
                    // setting (their values are recomputed on resume and may differ in the
                    // last bit across thread counts, so they stay out of the fingerprint).
                    if let Some(soft) = &s.soft {
                        add(&[
                            soft.len() as u32,
                            soft.first().map_or(0, |t| t.ids.len() as u32),
                        ]);
                    }
                }
            }
            Data::Dpo { train, val } => {
                for p in train.iter().chain(val) {
                    add(&p.prompt);
                    add(&p.chosen);
                    add(&p.rejected);
                }
            }
        }
        h
    }
}

/// Reported after every optimizer step.
#[derive(Debug, Clone)]
pub struct Progress {
    pub step: usize,
    pub total: usize,
    pub epoch: usize,
    pub loss: f32,
    pub lr: f32,
    pub grad_norm: f32,
    /// Tokens through the model (forward and backward) per second in this run.
    pub tokens_per_s: f64,
    pub tokens: u64,
    pub elapsed_s: f64,
    /// Validation loss, on steps that evaluate.
    pub val_loss: Option<f32>,
    /// DPO: fraction of pairs whose chosen answer gains on the rejected one.
    pub reward_accuracy: Option<f32>,
    pub checkpointed: bool,
}

/// What the caller of [`Run::train`] wants after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop now, with a checkpoint of this step to resume from (Ctrl-C).
    Stop,
}

pub struct Outcome {
    pub adapter: LoraAdapter,
    /// Steps done, counting those before a resume.
    pub steps: usize,
    pub total: usize,
    pub resumed_from: Option<usize>,
    pub history: Vec<Progress>,
}

/// A deterministic generator for initialization and shuffling.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A fresh adapter as PEFT makes one: `A` Kaiming-uniform (bound `1/√in`), `B` zero, so
/// training starts from the base model's exact behaviour.
pub fn init_adapter(m: &Model, cfg: &TrainConfig) -> LoraAdapter {
    let mut ad = LoraAdapter::zeros(&m.config, cfg.rank, cfg.alpha, &cfg.targets);
    let mut rng = SplitMix(cfg.seed ^ 0xa5a5_a5a5);
    for p in ad
        .layers
        .iter_mut()
        .flat_map(|l| l.pairs.iter_mut().flatten())
    {
        let bound = 1.0 / (p.n_in as f32).sqrt();
        p.a.iter_mut()
            .for_each(|v| *v = (2.0 * rng.uniform() - 1.0) * bound);
    }
    // Zero, as PEFT starts its trainable tokens: training starts from the base exactly.
    if !cfg.tokens.is_empty() {
        ad.tokens = Some(TokenRows::zeros(cfg.tokens.clone(), m.config.n_embd));
    }
    ad
}

/// The example order of `epoch`: a Fisher-Yates shuffle seeded by (seed, epoch).
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix(seed ^ (epoch as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    for i in (1..n).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Everything a run needs besides its data.
pub struct Run<'a> {
    pub model: &'a Model,
    pub config: TrainConfig,
    /// Where checkpoints go; with `resume`, where the run continues from. `None`: no checkpoints.
    pub checkpoint: Option<&'a Path>,
    pub resume: bool,
    /// Start from this adapter instead of a fresh one (its rank, alpha and targets are kept).
    pub init: Option<&'a LoraAdapter>,
    /// Run the output projection's backward in f32 instead of int8 (slower, see `output_t`).
    pub exact_output_grad: bool,
}

struct StepStats {
    loss: f64,
    tokens: u64,
    accuracy: Option<f32>,
}

impl Run<'_> {
    fn fingerprint(&self, data: &Data) -> String {
        let c = &self.config;
        let settings = format!(
            "{:?}|{}|{}|{}|{:?}|{}|{}|{}|{}|{}|{}|{:?}|{:?}|{}|{}|{:?}{}",
            c.method,
            c.rank,
            c.alpha,
            c.dropout,
            c.targets,
            c.lr,
            c.epochs,
            c.batch,
            c.grad_accum,
            c.seq_len,
            c.warmup,
            c.decay,
            c.adamw,
            c.max_grad_norm,
            c.seed,
            c.max_steps,
            // Only when asked for, so a checkpoint made before token rows existed resumes.
            if c.tokens.is_empty() {
                String::new()
            } else {
                format!("|tokens {:?}", c.tokens)
            }
        );
        let h = fnv1a(settings.as_bytes(), data.hash());
        let mut h = fnv1a(&self.model.gguf.file_size().to_le_bytes(), h);
        if let Some(init) = self.init {
            for p in init.layers.iter().flat_map(|l| l.pairs.iter().flatten()) {
                for v in p.a.iter().chain(&p.b) {
                    h = fnv1a(&v.to_le_bytes(), h);
                }
            }
            if let Some(t) = &init.tokens {
                for id in &t.ids {
                    h = fnv1a(&id.to_le_bytes(), h);
                }
                for v in &t.delta {
                    h = fnv1a(&v.to_le_bytes(), h);
                }
            }
        }
        format!("{h:016x}")
    }

    pub fn total_steps(&self, data: &Data) -> usize {
        let per = self.config.batch * self.config.grad_accum;
        let all = self.config.epochs * data.len().div_ceil(per);
        self.config.max_steps.map_or(all, |m| m.min(all))
    }

    /// Trains, calling `on_step` after every optimizer step.
    pub fn train(
        &self,
        data: &Data,
        on_step: &mut dyn FnMut(&Progress) -> Flow,
    ) -> Result<Outcome, TrainError> {
        let cfg = &self.config;
        cfg.check()?;
        if cfg.seq_len > self.model.config.ctx_train {
            return Err(TrainError::Config(format!(
                "the sequence length {} exceeds the model's context of {}",
                cfg.seq_len, self.model.config.ctx_train
            )));
        }
        let fingerprint = self.fingerprint(data);
        let mut adapter = match self.init {
            // Its rank, targets and token rows are kept; rows asked for it lacks start at zero.
            Some(a) => {
                let mut a = a.clone();
                match &a.tokens {
                    None if !cfg.tokens.is_empty() => {
                        a.tokens = Some(TokenRows::zeros(
                            cfg.tokens.clone(),
                            self.model.config.n_embd,
                        ))
                    }
                    Some(t) if !cfg.tokens.is_empty() && t.ids != cfg.tokens => {
                        return Err(TrainError::Config(format!(
                            "the starting adapter trains the rows of tokens {:?}, not the {:?} asked for",
                            t.ids, cfg.tokens
                        )))
                    }
                    _ => {}
                }
                a
            }
            None => init_adapter(self.model, cfg),
        };
        let mut adam = AdamState::new(&adapter);
        let mut start = 0;
        let mut resumed_from = None;
        if self.resume {
            let Some(path) = self.checkpoint else {
                return Err(TrainError::Config(
                    "resuming needs the checkpoint of the interrupted run".into(),
                ));
            };
            let ck = Checkpoint::load(path, &adapter)?;
            if ck.fingerprint != fingerprint {
                return Err(TrainError::Config(format!(
                    "{} was made with other settings, data or base model; \
                     resume with exactly the original settings and data",
                    path.display()
                )));
            }
            adapter = ck.adapter;
            adam = ck.adam;
            start = ck.step;
            resumed_from = Some(ck.step);
        }
        let total = self.total_steps(data);
        let per_step = cfg.batch * cfg.grad_accum;
        let steps_per_epoch = data.len().div_ceil(per_step);
        let sched = Schedule {
            peak: cfg.lr,
            warmup: cfg.warmup,
            total,
            decay: cfg.decay,
        };
        let mut grads = adapter.clone();
        let out_t = if self.exact_output_grad {
            None
        } else {
            TransposedOutput::build(self.model)?
        };
        let mut ref_cache: Vec<Option<[f64; 2]>> = vec![None; data.len()];
        let mut history = Vec::new();
        let t0 = Instant::now();
        let mut tokens = 0u64;
        let mut order = (usize::MAX, Vec::new());
        let mut steps = start;
        for step in start..total {
            let epoch = step / steps_per_epoch;
            if order.0 != epoch {
                order = (epoch, epoch_order(data.len(), cfg.seed, epoch));
            }
            let j = step % steps_per_epoch;
            let ids = &order.1[j * per_step..((j + 1) * per_step).min(data.len())];
            zero(&mut grads);
            let dropout = (cfg.dropout > 0.0).then_some(cfg.dropout);
            let stats = match data {
                Data::Sft { train, .. } => self.sft_step(
                    train,
                    ids,
                    &adapter,
                    &mut grads,
                    (step, dropout, out_t.as_ref()),
                )?,
                Data::Dpo { train, .. } => self.dpo_step(
                    train,
                    ids,
                    &adapter,
                    &mut grads,
                    (step, dropout, out_t.as_ref()),
                    &mut ref_cache,
                )?,
            };
            if !stats.loss.is_finite() {
                return Err(TrainError::Diverged {
                    step,
                    loss: stats.loss as f32,
                });
            }
            let grad_norm = clip(&mut grads, cfg.max_grad_norm);
            let lr = sched.lr(step);
            cfg.adamw.step(&mut adapter, &grads, &mut adam, lr);
            tokens += stats.tokens;
            let done = step + 1;
            let last = done == total;
            let val_loss = if (cfg.eval_every > 0 && done % cfg.eval_every == 0) || last {
                self.validate(data, &adapter)?
            } else {
                None
            };
            let save = |adapter: &LoraAdapter, adam: &AdamState| match self.checkpoint {
                Some(path) => Checkpoint {
                    step: done,
                    fingerprint: fingerprint.clone(),
                    adapter: adapter.clone(),
                    adam: adam.clone(),
                }
                .save(path),
                None => Ok(()),
            };
            let checkpointed = self.checkpoint.is_some()
                && ((cfg.save_every > 0 && done % cfg.save_every == 0) || last);
            if checkpointed {
                save(&adapter, &adam)?;
            }
            let elapsed_s = t0.elapsed().as_secs_f64();
            let p = Progress {
                step: done,
                total,
                epoch,
                loss: stats.loss as f32,
                lr,
                grad_norm,
                tokens_per_s: tokens as f64 / elapsed_s.max(1e-9),
                tokens,
                elapsed_s,
                val_loss,
                reward_accuracy: stats.accuracy,
                checkpointed,
            };
            let flow = on_step(&p);
            history.push(p);
            steps = done;
            if flow == Flow::Stop {
                if !checkpointed {
                    save(&adapter, &adam)?;
                }
                break;
            }
        }
        Ok(Outcome {
            adapter,
            steps,
            total,
            resumed_from,
            history,
        })
    }

    fn dropout(&self, step: usize, micro: usize, p: Option<f32>) -> Option<Dropout> {
        p.map(|p| Dropout {
            p,
            seed: fnv1a(
                &[step.to_le_bytes(), micro.to_le_bytes()].concat(),
                self.config.seed,
            ),
        })
    }

    /// One SFT step: mean cross-entropy over every trained token of the step's examples, each
    /// token weighted by its sequence's weight (1 unless replayed text is mixed in).
    fn sft_step(
        &self,
        train: &[Sequence],
        ids: &[usize],
        adapter: &LoraAdapter,
        grads: &mut LoraAdapter,
        (step, dropout, out_t): (usize, Option<f32>, Option<&TransposedOutput>),
    ) -> Result<StepStats, TrainError> {
        let tr = Trainer {
            model: self.model,
            adapter: Some(adapter),
            output_t: out_t,
        };
        let total: f64 = ids
            .iter()
            .map(|&i| train[i].weight as f64 * train[i].n_labels() as f64)
            .sum();
        let total = if total > 0.0 { total } else { 1.0 };
        let mut loss = 0f64;
        let mut tokens = 0u64;
        for (micro, chunk) in ids.chunks(self.config.batch).enumerate() {
            let seqs: Vec<&Sequence> = chunk.iter().map(|&i| &train[i]).collect();
            let pack = Pack::new(&seqs);
            tokens += pack.len() as u64;
            let w: Vec<f32> = pack.loss_seq.iter().map(|&s| seqs[s].weight).collect();
            let coefs = w.iter().map(|&w| (w as f64 / total) as f32).collect();
            let tape = tr.forward(
                pack,
                OutputGrad::Now(coefs),
                self.dropout(step, micro, dropout),
            )?;
            loss -= tape
                .logp
                .iter()
                .zip(&w)
                .map(|(&v, &w)| v as f64 * w as f64)
                .sum::<f64>();
            tr.backward(tape, None, grads)?;
        }
        Ok(StepStats {
            loss: loss / total,
            tokens,
            accuracy: None,
        })
    }

    /// Reference log-probabilities of each pair's chosen and rejected answer, under the policy
    /// training starts from: the base with the adapter off, or the adapter the run continues
    /// (DPO after SFT measures its preference against the SFT model, as in the DPO paper).
    fn reference(&self, prefs: &[&Preference]) -> Result<Vec<[f64; 2]>, TrainError> {
        let base = Trainer {
            model: self.model,
            adapter: self.init,
            output_t: None,
        };
        let seqs: Vec<Sequence> = prefs
            .iter()
            .flat_map(|p| [p.sequence(true), p.sequence(false)])
            .collect();
        let refs: Vec<&Sequence> = seqs.iter().collect();
        let lp = base
            .forward(Pack::new(&refs), OutputGrad::None, None)?
            .seq_logp();
        Ok(lp.chunks(2).map(|c| [c[0], c[1]]).collect())
    }

    /// One DPO step: `−log σ(β·((π_c − ref_c) − (π_r − ref_r)))` averaged over the step's pairs.
    fn dpo_step(
        &self,
        train: &[Preference],
        ids: &[usize],
        adapter: &LoraAdapter,
        grads: &mut LoraAdapter,
        (step, dropout, out_t): (usize, Option<f32>, Option<&TransposedOutput>),
        ref_cache: &mut [Option<[f64; 2]>],
    ) -> Result<StepStats, TrainError> {
        let Method::Dpo { beta } = self.config.method else {
            return Err(TrainError::Config(
                "preference data needs the DPO method".into(),
            ));
        };
        let beta = beta as f64;
        let tr = Trainer {
            model: self.model,
            adapter: Some(adapter),
            output_t: out_t,
        };
        let n = ids.len() as f64;
        let (mut loss, mut correct, mut tokens) = (0f64, 0usize, 0u64);
        for (micro, chunk) in ids.chunks(self.config.batch).enumerate() {
            let missing: Vec<usize> = chunk
                .iter()
                .copied()
                .filter(|&i| ref_cache[i].is_none())
                .collect();
            if !missing.is_empty() {
                let prefs: Vec<&Preference> = missing.iter().map(|&i| &train[i]).collect();
                for (&i, r) in missing.iter().zip(self.reference(&prefs)?) {
                    ref_cache[i] = Some(r);
                }
            }
            let seqs: Vec<Sequence> = chunk
                .iter()
                .flat_map(|&i| [train[i].sequence(true), train[i].sequence(false)])
                .collect();
            let refs: Vec<&Sequence> = seqs.iter().collect();
            let pack = Pack::new(&refs);
            tokens += pack.len() as u64;
            let tape = tr.forward(pack, OutputGrad::Later, self.dropout(step, micro, dropout))?;
            let lp = tape.seq_logp();
            // d(loss)/d(log π_c) = −β·σ(−m)/n and the opposite for the rejected answer; the
            // per-token coefficient multiplies −log p, so it takes the opposite sign.
            let mut seq_coef = vec![0f32; seqs.len()];
            for (k, &i) in chunk.iter().enumerate() {
                let [rc, rr] = ref_cache[i].expect("filled above");
                let margin = beta * ((lp[2 * k] - rc) - (lp[2 * k + 1] - rr));
                loss += -sigmoid(margin).ln();
                correct += (margin > 0.0) as usize;
                let g = beta * sigmoid(-margin) / n;
                seq_coef[2 * k] = g as f32;
                seq_coef[2 * k + 1] = -g as f32;
            }
            let coefs: Vec<f32> = tape.pack().loss_seq.iter().map(|&s| seq_coef[s]).collect();
            tr.backward(tape, Some(&coefs), grads)?;
        }
        Ok(StepStats {
            loss: loss / n,
            tokens,
            accuracy: Some(correct as f32 / n as f32),
        })
    }

    /// Mean validation loss (token cross-entropy for SFT, DPO loss for DPO), if there is a set.
    fn validate(&self, data: &Data, adapter: &LoraAdapter) -> Result<Option<f32>, TrainError> {
        let tr = Trainer {
            model: self.model,
            adapter: Some(adapter),
            output_t: None,
        };
        match data {
            Data::Sft { val, .. } if !val.is_empty() => {
                let s = score_with(&tr, val, self.config.batch)?;
                Ok(Some(s.nll as f32))
            }
            Data::Dpo { val, .. } if !val.is_empty() => {
                let Method::Dpo { beta } = self.config.method else {
                    return Ok(None);
                };
                let mut sum = 0f64;
                for chunk in val.chunks(self.config.batch) {
                    let prefs: Vec<&Preference> = chunk.iter().collect();
                    let reference = self.reference(&prefs)?;
                    let seqs: Vec<Sequence> = chunk
                        .iter()
                        .flat_map(|p| [p.sequence(true), p.sequence(false)])
                        .collect();
                    let refs: Vec<&Sequence> = seqs.iter().collect();
                    let lp = tr
                        .forward(Pack::new(&refs), OutputGrad::None, None)?
                        .seq_logp();
                    for (k, [rc, rr]) in reference.iter().enumerate() {
                        let m = beta as f64 * ((lp[2 * k] - rc) - (lp[2 * k + 1] - rr));
                        sum -= sigmoid(m).ln();
                    }
                }
                Ok(Some((sum / val.len() as f64) as f32))
            }
            _ => Ok(None),
        }
    }
}

/// Held-out negative log-likelihood of a set of sequences: the mean over every labelled token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NllScore {
    /// Mean negative log-likelihood per labelled token (nats).
    pub nll: f64,
    /// `exp(nll)`.
    pub perplexity: f64,
    /// Labelled tokens scored.
    pub tokens: usize,
}

/// Scores `seqs` (their labelled tokens) under the base model with `adapter` applied, if any,
/// `batch` sequences per forward pass. Nothing is trained.
pub fn score_nll(
    model: &Model,
    adapter: Option<&LoraAdapter>,
    seqs: &[Sequence],
    batch: usize,
) -> Result<NllScore, TrainError> {
    let tr = Trainer {
        model,
        adapter,
        output_t: None,
    };
    score_with(&tr, seqs, batch.max(1))
}

fn score_with(tr: &Trainer, seqs: &[Sequence], batch: usize) -> Result<NllScore, TrainError> {
    let (mut sum, mut n) = (0f64, 0usize);
    for chunk in seqs.chunks(batch) {
        let refs: Vec<&Sequence> = chunk.iter().filter(|s| s.n_labels() > 0).collect();
        if refs.is_empty() {
            continue;
        }
        let tape = tr.forward(Pack::new(&refs), OutputGrad::None, None)?;
        sum -= tape.logp.iter().map(|&v| v as f64).sum::<f64>();
        n += tape.logp.len();
    }
    let nll = sum / n.max(1) as f64;
    Ok(NllScore {
        nll,
        perplexity: nll.exp(),
        tokens: n,
    })
}
