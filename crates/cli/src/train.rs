//! `autodidact train` (LoRA SFT or DPO into the adapter store, with progress, Ctrl-C to pause and
//! `--resume`) and `autodidact bench-train` (training throughput and peak memory).
use anyhow::{bail, Context, Result};
use autodidact_model::{Model, Target};
use autodidact_store::{now_secs, AdapterMeta, ResolvedModel, Store};
use autodidact_train::data::{LoadReport, OnBadLine};
use autodidact_train::optim::{AdamW, Decay};
use autodidact_train::{
    Examples, Flow, Method, OutputGrad, Pack, Progress, Sequence, TrainConfig, TrainError,
    TrainJob, Trainer, Validation,
};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

#[derive(Clone, Copy, ValueEnum, Debug)]
pub enum MethodArg {
    Sft,
    Dpo,
}

#[derive(Args)]
pub struct TrainArgs {
    /// JSONL: {"messages": [...]}, {"prompt", "completion"} or {"text"} lines for SFT;
    /// {"prompt", "chosen", "rejected"} for DPO.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value_t = MethodArg::Sft)]
    pub method: MethodArg,
    #[arg(short, long, default_value = autodidact_store::DEFAULT_MODEL)]
    pub model: String,
    /// Adapter name in the store.
    #[arg(long)]
    pub out: String,
    #[arg(long, default_value_t = TrainConfig::default().rank)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank); default 2 × rank.
    #[arg(long)]
    pub alpha: Option<f32>,
    #[arg(long, default_value_t = TrainConfig::default().dropout)]
    pub dropout: f32,
    /// Comma-separated modules: q,k,v,o,gate,up,down (PEFT or GGUF names work too).
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    pub targets: String,
    /// Comma-separated tokens whose embedding rows train too (PEFT's trainable tokens): token
    /// texts such as <end_of_turn>, ids, or `template` for the chat template's markers, which a
    /// base model has never learned to predict.
    #[arg(long, value_name = "TOKENS")]
    pub trainable_tokens: Option<String>,
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f32,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Examples per forward pass.
    #[arg(long, default_value_t = TrainConfig::default().batch)]
    pub batch: usize,
    /// Forward passes per optimizer step.
    #[arg(long, default_value_t = TrainConfig::default().grad_accum)]
    pub grad_accum: usize,
    /// Longest example in tokens (longer ones are cut); default 512 or the model's context.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Warmup steps.
    #[arg(long, default_value_t = TrainConfig::default().warmup)]
    pub warmup: usize,
    #[arg(long, default_value = "cosine", value_parser = ["cosine", "linear", "constant"])]
    pub schedule: String,
    #[arg(long, default_value_t = TrainConfig::default().adamw.weight_decay)]
    pub weight_decay: f32,
    #[arg(long, default_value_t = TrainConfig::default().max_grad_norm)]
    pub max_grad_norm: f32,
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Checkpoint every N steps.
    #[arg(long, default_value_t = TrainConfig::default().save_every)]
    pub save_every: usize,
    /// Validation every N steps (0: only at the end).
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    pub eval_every: usize,
    /// Held-out data in the same format.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Hold out this fraction of --data for validation when --val is not given.
    #[arg(long, default_value_t = 0.0)]
    pub val_split: f32,
    /// DPO temperature.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f32,
    /// Skip malformed lines (reported) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Continue an interrupted run of the same command from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Replace an existing adapter of the same name (kept until the new run finishes).
    #[arg(long)]
    pub force: bool,
    /// Start from this stored adapter instead of a fresh one (its rank and targets are kept).
    #[arg(long)]
    pub from: Option<String>,
    /// The output layer's backward in f32 (slower) instead of int8.
    #[arg(long)]
    pub exact_output_grad: bool,
}

fn report(what: &str, rep: &LoadReport) {
    for (line, why) in rep.skipped.iter().take(10) {
        eprintln!("warning: {what}: line {line}: skipped: {why}");
    }
    if rep.skipped.len() > 10 {
        eprintln!("warning: {} more lines skipped", rep.skipped.len() - 10);
    }
    if rep.truncated > 0 {
        eprintln!("warning: {} examples were cut to --seq-len", rep.truncated);
    }
}

pub(crate) fn targets(s: &str) -> Result<Vec<Target>> {
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let t = Target::parse(part)
            .with_context(|| format!("unknown target module {part:?}: use q,k,v,o,gate,up,down"))?;
        if !v.contains(&t) {
            v.push(t);
        }
    }
    Ok(v)
}

/// `--trainable-tokens`: token texts, ids or `template`, each once.
fn trainable_tokens(s: &str, m: &Model) -> Result<Vec<u32>> {
    let mut out: Vec<u32> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let ids = if item == "template" {
            let t = autodidact_train::data::template_tokens(m);
            if t.is_empty() {
                bail!("--trainable-tokens template: this model's chat template writes no special tokens");
            }
            t
        } else if let Ok(id) = item.parse::<u32>() {
            if id as usize >= m.config.n_vocab {
                bail!(
                    "--trainable-tokens: id {id} is outside the vocabulary of {}",
                    m.config.n_vocab
                );
            }
            vec![id]
        } else if let Some(id) = m.tokenizer.token_id(item) {
            vec![id]
        } else {
            bail!("--trainable-tokens: {item:?} is not a token of this model's vocabulary");
        };
        for id in ids {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    if out.is_empty() {
        bail!("--trainable-tokens names no token");
    }
    Ok(out)
}

/// The flags as a training configuration (unset flags are [`TrainConfig::default`]'s values).
fn config(args: &TrainArgs, m: &Model) -> Result<TrainConfig> {
    let d = TrainConfig::default();
    let cfg = TrainConfig {
        method: match args.method {
            MethodArg::Sft => Method::Sft,
            MethodArg::Dpo => Method::Dpo { beta: args.beta },
        },
        rank: args.rank,
        alpha: args.alpha.unwrap_or(2.0 * args.rank as f32),
        dropout: args.dropout,
        targets: targets(&args.targets)?,
        tokens: match &args.trainable_tokens {
            Some(t) => trainable_tokens(t, m)?,
            None => Vec::new(),
        },
        lr: args.lr,
        epochs: args.epochs,
        batch: args.batch,
        grad_accum: args.grad_accum,
        seq_len: args.seq_len.unwrap_or(d.seq_len.min(m.config.ctx_train)),
        warmup: args.warmup,
        decay: Decay::parse(&args.schedule).context("--schedule")?,
        adamw: AdamW {
            weight_decay: args.weight_decay,
            ..d.adamw
        },
        max_grad_norm: args.max_grad_norm,
        seed: args.seed,
        save_every: args.save_every,
        eval_every: args.eval_every,
        max_steps: args.max_steps,
    };
    cfg.check().map_err(flag_words)?;
    Ok(cfg)
}

/// The library names settings; say which flag to change.
fn flag_words(e: TrainError) -> anyhow::Error {
    match e {
        TrainError::Data { path, line, what } => {
            anyhow::anyhow!("{path}:{line}: {what} (pass --skip-bad to skip such lines)")
        }
        e => anyhow::Error::new(e)
            .context("check the training flags (see `autodidact train --help`)"),
    }
}

pub fn run(store: &Store, args: TrainArgs, m: &Model, base: &ResolvedModel) -> Result<()> {
    keep_freed_memory();
    let ads = store.adapters();
    let dir = ads.path(&args.out)?;
    let ckpt = ads.checkpoint_file(&args.out)?;
    if args.resume && !ckpt.exists() {
        bail!(
            "nothing to resume: adapter {:?} has no unfinished run ({} does not exist)",
            args.out,
            ckpt.display()
        );
    }
    if !args.resume && !args.force && (ads.exists(&args.out) || ckpt.exists()) {
        bail!(
            "adapter {:?} exists (or has an unfinished run); pass --resume to continue it or --force to start over",
            args.out
        );
    }
    if !args.resume && ckpt.exists() {
        // --force: the unfinished run is abandoned; the finished adapter stays until replaced.
        std::fs::remove_file(&ckpt).with_context(|| format!("removing {}", ckpt.display()))?;
    }
    if !(0.0..1.0).contains(&args.val_split) {
        bail!("--val-split must be in [0, 1)");
    }
    let base_sha = store.model_sha256(base)?;
    let init = match &args.from {
        Some(name) => {
            let meta = ads.meta(name)?;
            meta.check_base(&base_sha)?;
            Some(ads.load(name, &m.config)?)
        }
        None => None,
    };
    let cfg = config(&args, m)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let job = TrainJob {
        model: m,
        config: cfg.clone(),
        examples: Examples::File(args.data.clone()),
        validation: match &args.val {
            Some(v) => Validation::Set(Examples::File(v.clone())),
            None => Validation::Split(args.val_split),
        },
        on_bad: if args.skip_bad {
            OnBadLine::Skip
        } else {
            OnBadLine::Fail
        },
        init: init.as_ref(),
        checkpoint: Some(&ckpt),
        resume: args.resume,
        exact_output_grad: args.exact_output_grad,
        replay: None,
    };
    let (data, reports) = job.data().map_err(flag_words)?;
    for (what, rep) in &reports {
        let file = match *what {
            "validation" => args.val.as_ref().unwrap_or(&args.data),
            _ => &args.data,
        };
        report(&file.display().to_string(), rep);
    }
    let total = job.total_steps(&data);
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
            .expect("the template is valid"),
    );
    let interrupted = crate::ctrl_c_flag()?;
    interrupted.store(false, Ordering::SeqCst);
    let mut last_val = None;
    let trained = job
        .train_on(data, reports, &mut |p: &Progress| {
            bar.set_position(p.step as u64);
            if p.val_loss.is_some() {
                last_val = p.val_loss;
            }
            let mut msg = format!("loss {:.4}  {:.0} tok/s", p.loss, p.tokens_per_s);
            if let Some(a) = p.reward_accuracy {
                msg += &format!("  acc {:.2}", a);
            }
            if let Some(v) = last_val {
                msg += &format!("  val {v:.4}");
            }
            bar.set_message(msg);
            if bar.is_hidden() {
                eprintln!("step {}/{}: {}", p.step, p.total, bar.message());
            }
            if interrupted.swap(false, Ordering::SeqCst) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })
        .map_err(flag_words)?;
    bar.finish();
    let outcome = &trained.outcome;
    if trained.interrupted() {
        eprintln!(
            "stopped at step {}/{}; the checkpoint is saved — continue with the same command plus --resume",
            outcome.steps, outcome.total
        );
        return Ok(());
    }
    let last = outcome.history.last();
    let meta = AdapterMeta {
        name: args.out.clone(),
        base_model: args.model.clone(),
        base_sha256: Some(base_sha),
        arch: m.config.arch.name().into(),
        rank: outcome.adapter.rank(),
        alpha: outcome.adapter.alpha,
        targets: outcome
            .adapter
            .targets()
            .iter()
            .map(|t| t.peft_name().to_string())
            .collect(),
        method: format!("{:?}", args.method).to_lowercase(),
        created: now_secs(),
        source: Some(args.data.display().to_string()),
        parent: args.from.clone(),
        steps: Some(outcome.steps),
        train_loss: last.map(|p| p.loss),
        val_loss: trained.val_loss,
        settings: serde_json::json!({
            "lr": cfg.lr, "epochs": cfg.epochs, "batch": cfg.batch, "grad_accum": cfg.grad_accum,
            "seq_len": cfg.seq_len, "warmup": cfg.warmup, "schedule": args.schedule,
            "weight_decay": args.weight_decay, "max_grad_norm": cfg.max_grad_norm,
            "seed": cfg.seed, "dropout": cfg.dropout, "beta": args.beta,
            "trainable_tokens": outcome.adapter.tokens.as_ref().map(|t| &t.ids),
            "train_examples": trained.train_examples, "val_examples": trained.val_examples,
        }),
    };
    ads.save(&outcome.adapter, &meta)?;
    eprintln!(
        "trained {} steps; adapter {} saved in {} (use it with --adapter {})",
        outcome.steps,
        args.out,
        dir.display(),
        args.out
    );
    Ok(())
}

#[derive(Args)]
pub struct BenchTrainArgs {
    #[arg(short, long, default_value = autodidact_store::DEFAULT_MODEL)]
    pub model: String,
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Timed optimizer steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    #[arg(long)]
    pub json: bool,
    /// The output layer's backward in f32 (slower) instead of int8.
    #[arg(long)]
    pub exact_output_grad: bool,
}

/// Keeps freed training buffers in the heap instead of unmapping them: a step allocates and
/// frees gigabytes of same-sized activation buffers, and glibc's default of returning large
/// blocks to the kernel made every one a fresh run of page faults (10 % of a step in `perf`).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator tuning; called before the training threads
        // allocate, with glibc's documented parameter numbers.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 1 << 30);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// Peak resident memory of this process so far, in bytes (Linux).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The anchor configuration of the LoRA issue: rank 16 on every linear layer, batch 4 × 256
/// tokens, loss on every token, AdamW — on pseudo-random tokens (speed does not depend on text).
pub fn bench(args: BenchTrainArgs, m: &Model) -> Result<()> {
    keep_freed_memory();
    let cfg = TrainConfig {
        rank: args.rank,
        alpha: 2.0 * args.rank as f32,
        lr: 1e-4,
        batch: args.batch,
        seq_len: args.seq_len,
        decay: Decay::Constant,
        seed: 1,
        save_every: 0,
        ..TrainConfig::default()
    };
    cfg.check()?;
    let vocab = m.config.n_vocab as u64;
    let mut s = 0x1234_5678u64;
    let seqs: Vec<Sequence> = (0..args.batch)
        .map(|_| {
            let tokens: Vec<u32> = (0..args.seq_len)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 33) % vocab) as u32
                })
                .collect();
            let labels = (0..tokens.len())
                .map(|i| tokens.get(i + 1).copied())
                .collect();
            Sequence::new(tokens, labels)
        })
        .collect();
    let mut adapter = autodidact_train::init_adapter(m, &cfg);
    let mut grads = adapter.clone();
    let mut adam = autodidact_train::optim::AdamState::new(&adapter);
    let refs: Vec<&Sequence> = seqs.iter().collect();
    let out_t = if args.exact_output_grad {
        None
    } else {
        autodidact_train::output_t::TransposedOutput::build(m)?
    };
    let mut times = Vec::new();
    for step in 0..=args.steps {
        let t0 = Instant::now();
        autodidact_train::optim::zero(&mut grads);
        let pack = Pack::new(&refs);
        let nl = pack.loss_rows.len();
        let tr = Trainer {
            model: m,
            adapter: Some(&adapter),
            output_t: out_t.as_ref(),
        };
        let tape = tr.forward(pack, OutputGrad::Now(vec![1.0 / nl as f32; nl]), None)?;
        tr.backward(tape, None, &mut grads)?;
        autodidact_train::optim::clip(&mut grads, 1.0);
        cfg.adamw.step(&mut adapter, &grads, &mut adam, cfg.lr);
        if step > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let tokens = (args.batch * args.seq_len) as f64;
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let tps = tokens / mean;
    let rss = peak_rss().unwrap_or(0);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "test": format!("train r{} b{}x{}", args.rank, args.batch, args.seq_len),
                "tokens_per_s": tps,
                "step_s": mean,
                "peak_rss_bytes": rss,
                "threads": rayon::current_num_threads(),
            })
        );
    } else {
        println!("| test | threads | step s | tokens/s | peak RSS MB |");
        println!("| ---- | ------: | -----: | -------: | ----------: |");
        println!(
            "| train r{} b{}x{} | {} | {:.2} | {:.1} | {:.0} |",
            args.rank,
            args.batch,
            args.seq_len,
            rayon::current_num_threads(),
            mean,
            tps,
            rss as f64 / 1e6
        );
    }
    Ok(())
}
