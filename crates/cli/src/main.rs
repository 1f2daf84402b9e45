//! The `autodidact` binary: a personal AI that runs on its user's own device.
mod adapters;
mod bench;
mod chat;
mod improve;
mod memory;
mod serve;
mod store;
mod train;

use anyhow::{bail, Context, Result};
use autodidact_engine::{generate, AdapterCache, GenConfig, Request, SamplingParams};
use autodidact_model::{LoraAdapter, Model};
use autodidact_server::improve::SelfImprovement;
use autodidact_store::{ResolvedModel, Store, DEFAULT_MODEL};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "autodidact",
    version,
    about = "A personal AI that runs on your own device and teaches itself"
)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, short = 't', global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fetch a known model (default gemma3-270m) or import a local .gguf file.
    Pull {
        model: Option<String>,
        /// Register an imported file under this name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        /// Replace a different model already registered under that name.
        #[arg(long)]
        replace: bool,
    },
    /// List the models in the store.
    List,
    /// Chat with a model: interactive, or one answer to PROMPT.
    Run {
        #[arg(short, long, default_value = DEFAULT_MODEL)]
        model: String,
        prompt: Option<String>,
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        #[arg(short = 'n', long, default_value_t = 512)]
        max_tokens: usize,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 4096)]
        ctx: usize,
        /// A LoRA adapter: a stored name, a GGUF-LoRA file or a PEFT directory (default: the
        /// promoted self of `autodidact improve`, if any).
        #[arg(long, conflicts_with = "base")]
        adapter: Option<String>,
        /// The raw model, not the promoted self.
        #[arg(long)]
        base: bool,
        /// Chat without memory: nothing recalled into prompts, nothing learned.
        #[arg(long)]
        no_memory: bool,
        /// Whose memory (default: the OS user).
        #[arg(long, env = "AUTODIDACT_USER")]
        user: Option<String>,
    },
    /// Raw completion of PROMPT (no chat template); prints only the generated text.
    Generate {
        #[arg(short, long, default_value = DEFAULT_MODEL)]
        model: String,
        #[arg(short, long)]
        prompt: String,
        #[arg(short = 'n', long, default_value_t = 128)]
        max_tokens: usize,
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 40)]
        top_k: usize,
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        #[arg(long, default_value_t = 0.05)]
        min_p: f32,
        #[arg(long, default_value_t = 1.0)]
        repeat_penalty: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop when this text is generated (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        #[arg(long, default_value_t = 2048)]
        ctx: usize,
        /// A LoRA adapter: a stored name, a GGUF-LoRA file or a PEFT directory.
        #[arg(long)]
        adapter: Option<String>,
    },
    /// Print the token ids of TEXT as a JSON array.
    Tokenize {
        #[arg(short, long, default_value = DEFAULT_MODEL)]
        model: String,
        #[arg(long)]
        no_bos: bool,
        #[arg(long)]
        no_special: bool,
        text: String,
    },
    /// Perplexity of a text file, llama.cpp's method; the last line is `PPL = <value>`.
    Perplexity {
        #[arg(short, long, default_value = DEFAULT_MODEL)]
        model: String,
        #[arg(short, long)]
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// A LoRA adapter applied while scoring: a stored name, a GGUF-LoRA file or a PEFT
        /// directory (llama.cpp's `--lora`).
        #[arg(long)]
        adapter: Option<String>,
    },
    /// Throughput benchmark in the style of llama-bench.
    Bench(bench::BenchArgs),
    /// OpenAI-compatible API and web UI (http://127.0.0.1:8080 by default).
    Serve(serve::ServeArgs),
    /// Train a LoRA adapter (SFT or DPO) on a JSONL file into the adapter store.
    Train(train::TrainArgs),
    /// Training throughput and peak memory (LoRA r=16, batch 4 × 256 by default).
    BenchTrain(train::BenchTrainArgs),
    /// Write a copy of a model with every quantized matrix dequantized (exact f32, or f16).
    Convert {
        #[arg(short, long, default_value = DEFAULT_MODEL)]
        model: String,
        #[arg(long, value_enum)]
        outtype: adapters::FloatType,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Stored LoRA adapters: list, show, export, import, merge, rm.
    #[command(subcommand)]
    Adapters(adapters::AdaptersCmd),
    /// Skills the assistant practises: list, show.
    #[command(subcommand)]
    Skills(improve::SkillsCmd),
    /// Held-out accuracy per skill, asked in plain chat (greedy).
    Eval(improve::EvalArgs),
    /// Teach itself: verified practice rounds, each candidate gated before it becomes the current self.
    Improve(improve::ImproveArgs),
    /// Self-improvement runs: list, show.
    #[command(subcommand)]
    Runs(improve::RunsCmd),
    /// Return to an earlier promoted self (or the base with --to 0).
    Rollback(improve::RollbackArgs),
    /// What autodidact remembers about you: list, search, add, edit, forget, history, export, import, wipe, ingest.
    Memory(memory::MemoryArgs),
}

fn load(store: &Store, name: &str) -> Result<(Arc<Model>, ResolvedModel)> {
    store::load(store, name)
}

/// The adapter `autodidact improve` promoted for this base, unless `raw` asks for the base;
/// said on standard error either way, so the user knows which self is answering.
fn promoted_self(store: &Store, base: &ResolvedModel, raw: bool) -> Result<Option<String>> {
    let Some(cur) = autodidact_improve::current_self(store.home())? else {
        return Ok(None);
    };
    if raw {
        eprintln!(
            "answering as the base model (--base; the promoted self is v{})",
            cur.version
        );
        return Ok(None);
    }
    let ads = store.adapters();
    let fits = ads.meta(&cur.adapter).is_ok_and(|m| {
        m.check_base(&store.model_sha256(base).unwrap_or_default())
            .is_ok()
    });
    if !fits {
        eprintln!(
            "the promoted self v{} ({}) belongs to another base model; answering as {}",
            cur.version, cur.adapter, base.name
        );
        return Ok(None);
    }
    eprintln!(
        "answering as the promoted self v{} (adapter {}; --base for the raw model, `autodidact rollback` to go back)",
        cur.version, cur.adapter
    );
    Ok(Some(cur.adapter))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = cli.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        pool = pool.num_threads(n);
    }
    // One pool for the whole process (the engine's policy). This thread does the compute of
    // every command but `serve` (whose engine steps run on the pool while this thread serves
    // HTTP). As worker 0 of the pool it starts parallel sections on its own queue; from outside,
    // each one (hundreds per training step) would be injected while this thread sleeps on a latch.
    if !matches!(cli.cmd, Cmd::Serve(_)) {
        pool = pool.use_current_thread();
    }
    pool.build_global().context("starting the thread pool")?;
    let store = Store::open()?;
    match cli.cmd {
        Cmd::Pull {
            model,
            name,
            replace,
        } => store::pull(
            &store,
            model.as_deref().unwrap_or(DEFAULT_MODEL),
            name.as_deref(),
            replace,
        )?,
        Cmd::List => {
            let reg = store.models()?;
            if reg.is_empty() {
                println!("no models yet: run `autodidact pull`");
            }
            for (name, e) in reg {
                println!(
                    "{name}\t{:.1} MB\t{}",
                    e.size as f64 / 1e6,
                    e.path.display()
                );
            }
        }
        Cmd::Run {
            model,
            prompt,
            temperature,
            max_tokens,
            seed,
            ctx,
            adapter,
            base: raw,
            no_memory,
            user,
        } => {
            let (m, base) = load(&store, &model)?;
            let adapter = adapter.or(promoted_self(&store, &base, raw)?);
            let loaded = adapter
                .as_ref()
                .map(|a| adapters::resolve(&store, a, &m, &base))
                .transpose()?;
            let params = SamplingParams {
                temperature,
                max_tokens,
                seed: seed.unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0)
                }),
                ..Default::default()
            };
            let opts = chat::ChatOptions {
                params,
                n_ctx: serve::clamp_ctx(ctx, &m),
                prompt,
                adapter: loaded,
                adapter_name: adapter,
                home: store.home().to_path_buf(),
                memory: if no_memory {
                    None
                } else {
                    let chat = memory::chat_memory(&store)?;
                    let user = user.unwrap_or_else(autodidact_memory::os_user);
                    Some(chat::Memory {
                        user: chat.open(&user).map_err(memory::locked_hint)?,
                        chat,
                        session: format!("run {}", autodidact_store::now_secs()),
                    })
                },
            };
            chat::run(&m, opts)?;
        }
        Cmd::Generate {
            model,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            seed,
            stop,
            ctx,
            adapter,
        } => {
            let (m, base) = load(&store, &model)?;
            let adapter = adapters::resolve_opt(&store, adapter.as_deref(), &m, &base)?;
            let params = SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                repeat_penalty,
                seed,
                max_tokens,
                stop,
                ..Default::default()
            };
            let ids = m.tokenizer.encode(&prompt, true, true);
            let interrupted = ctrl_c_flag()?;
            let mut out = std::io::stdout().lock();
            generate(
                &m,
                GenConfig {
                    n_ctx: serve::clamp_ctx(ctx, &m),
                    ..GenConfig::default()
                },
                vec![Request {
                    prompt: ids,
                    params,
                    json: None,
                    adapter,
                }],
                |d| {
                    let _ = out.write_all(d.text.as_bytes());
                    let _ = out.flush();
                    !interrupted.swap(false, Ordering::SeqCst)
                },
            )?;
            writeln!(out)?;
        }
        Cmd::Tokenize {
            model,
            no_bos,
            no_special,
            text,
        } => {
            let (m, _) = load(&store, &model)?;
            let ids = m.tokenizer.encode(&text, !no_bos, !no_special);
            println!("{}", serde_json::to_string(&ids)?);
        }
        Cmd::Perplexity {
            model,
            file,
            ctx,
            adapter,
        } => {
            let (m, base) = load(&store, &model)?;
            let adapter = adapters::resolve_opt(&store, adapter.as_deref(), &m, &base)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            perplexity(&m, adapter.as_deref(), &text, serve::clamp_ctx(ctx, &m))?;
        }
        Cmd::Bench(args) => bench::run(&store, args)?,
        Cmd::Serve(args) => {
            let (m, base) = load(&store, &args.model)?;
            // Without --adapter or --base the server follows the current self from request to
            // request (a promotion or rollback reaches it); start-up says who answers now.
            let follow = args.adapter.is_none() && !args.base;
            if args.adapter.is_none() {
                promoted_self(&store, &base, args.base)?;
            }
            let improve = SelfImprovement::new(store.home().to_path_buf(), follow);
            let cache = AdapterCache::new(store.adapters(), Some(store.model_sha256(&base)?));
            let memory = if args.no_memory {
                None
            } else {
                Some(memory::chat_memory(&store)?)
            };
            serve::run(m, base.name, cache, memory, improve, args)?;
        }
        Cmd::Train(args) => {
            let (m, base) = load(&store, &args.model)?;
            train::run(&store, args, &m, &base)?;
        }
        Cmd::BenchTrain(args) => {
            let (m, _) = load(&store, &args.model)?;
            train::bench(args, &m)?;
        }
        Cmd::Convert {
            model,
            outtype,
            out,
        } => {
            let (m, base) = load(&store, &model)?;
            let mut w = autodidact_model::rewrite_gguf(&m, None, Some(outtype.ggml()))?;
            // The copy is the same base to every adapter trained on the original.
            w.set(
                autodidact_store::BASE_KEY,
                autodidact_model::gguf::Value::String(store.model_sha256(&base)?),
            );
            w.write(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", out.display());
        }
        Cmd::Adapters(cmd) => adapters::run(&store, cmd, |name| load(&store, name))?,
        Cmd::Skills(cmd) => improve::skills(&store, cmd)?,
        Cmd::Eval(args) => {
            let (m, resolved) = load(&store, &args.model)?;
            improve::eval(&store, args, &m, &resolved)?;
        }
        Cmd::Improve(args) => {
            let (m, resolved) = load(&store, &args.model)?;
            improve::improve(&store, args, &m, &resolved)?;
        }
        Cmd::Runs(cmd) => improve::runs(&store, cmd)?,
        Cmd::Rollback(args) => improve::rollback(&store, args)?,
        Cmd::Memory(args) => memory::run(store.home(), args, |name, as_self| {
            let (m, base) = load(&store, name)?;
            let me = match as_self {
                true => promoted_self(&store, &base, false)?,
                false => None,
            };
            let adapter = match me {
                Some(a) => Some(
                    AdapterCache::new(store.adapters(), store.model_sha256(&base).ok())
                        .get(&a, &m.config)?,
                ),
                None => None,
            };
            Ok((m, adapter))
        })?,
    }
    Ok(())
}

/// A flag set by Ctrl-C; the process keeps running so a reply can stop without ending the session.
pub fn ctrl_c_flag() -> Result<Arc<AtomicBool>> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    if let Some(f) = FLAG.get() {
        return Ok(f.clone());
    }
    let f = Arc::new(AtomicBool::new(false));
    let g = f.clone();
    ctrlc::set_handler(move || g.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    let _ = FLAG.set(f.clone());
    Ok(f)
}

fn perplexity(m: &Model, adapter: Option<&LoraAdapter>, text: &str, n_ctx: usize) -> Result<()> {
    let start = Instant::now();
    let r = autodidact_train::perplexity(m, adapter, text, n_ctx, None, &mut |done, total, ppl| {
        if done == 1 {
            eprintln!("{total} chunks of {n_ctx}");
        }
        eprint!("[{done}]{ppl:.4},");
    })
    .map_err(|e| anyhow::Error::new(e).context("check --ctx and the file"))?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "\n{secs:.1} s, {:.0} tokens/s",
        (r.chunks * n_ctx) as f64 / secs
    );
    println!("PPL = {:.4}", r.ppl);
    Ok(())
}
