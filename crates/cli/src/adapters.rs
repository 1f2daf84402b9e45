//! `autodidact adapters list|show|export|import|merge|rm`, and `--adapter NAME|PATH` resolution
//! for `run`, `generate` and `serve`.
use anyhow::{bail, Context, Result};
use autodidact_kernels::GgmlType;
use autodidact_model::{LoraAdapter, Model};
use autodidact_store::{now_secs, AdapterMeta, ResolvedModel, Store};
use autodidact_train::peft::{export_peft, import_peft, PeftInfo};
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum AdaptersCmd {
    /// List stored adapters.
    List,
    /// Show how an adapter was made.
    Show { name: String },
    /// Write an adapter as PEFT (a directory) or llama.cpp GGUF-LoRA (a file).
    Export {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Gguf)]
        format: Format,
        /// Output directory (peft) or .gguf file (gguf).
        #[arg(long)]
        out: PathBuf,
    },
    /// Store an adapter trained elsewhere: a PEFT directory or a GGUF-LoRA file.
    Import {
        path: PathBuf,
        #[arg(long)]
        name: String,
        /// The base model it was trained on.
        #[arg(short, long, default_value = autodidact_store::DEFAULT_MODEL)]
        model: String,
    },
    /// Fold an adapter into a copy of its base model (a new standalone GGUF).
    Merge {
        name: String,
        #[arg(short, long, default_value = autodidact_store::DEFAULT_MODEL)]
        model: String,
        #[arg(long)]
        out: PathBuf,
        /// Store every quantized matrix as f32 or f16 (default: each adapted weight keeps its
        /// own type, and the rest are copied unchanged).
        #[arg(long, value_enum)]
        outtype: Option<FloatType>,
    },
    /// Delete an adapter.
    Rm { name: String },
}

/// A float type for dequantized copies (`adapters merge`, `convert`).
#[derive(Clone, Copy, ValueEnum)]
pub enum FloatType {
    F32,
    F16,
}

impl FloatType {
    pub fn ggml(self) -> GgmlType {
        match self {
            FloatType::F32 => GgmlType::F32,
            FloatType::F16 => GgmlType::F16,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Peft,
    Gguf,
}

/// `--adapter`: a stored name or a path to a GGUF-LoRA file or PEFT directory. A stored adapter
/// trained on another base than `base` is refused.
/// [`resolve`] for an optional `--adapter`.
pub fn resolve_opt(
    store: &Store,
    what: Option<&str>,
    m: &Model,
    base: &ResolvedModel,
) -> Result<Option<Arc<LoraAdapter>>> {
    what.map(|a| resolve(store, a, m, base)).transpose()
}

pub fn resolve(
    store: &Store,
    what: &str,
    m: &Model,
    base: &ResolvedModel,
) -> Result<Arc<LoraAdapter>> {
    let p = Path::new(what);
    if p.is_dir() && p.join(autodidact_train::peft::CONFIG_FILE).exists() {
        let (ad, _) = import_peft(p, &m.config)?;
        return Ok(Arc::new(ad));
    }
    if p.is_file() {
        return Ok(Arc::new(
            LoraAdapter::load_gguf(p, &m.config)
                .with_context(|| format!("loading adapter {}", p.display()))?,
        ));
    }
    let ads = store.adapters();
    let meta = ads.meta(what)?;
    meta.check_base(&store.model_sha256(base)?)?;
    Ok(Arc::new(ads.load(what, &m.config)?))
}

/// Loads a GGUF-LoRA file or PEFT directory for `m`.
fn read_any(path: &Path, m: &Model) -> Result<(LoraAdapter, &'static str)> {
    if path.is_dir() {
        let (ad, _) = import_peft(path, &m.config)?;
        Ok((ad, "peft"))
    } else {
        Ok((LoraAdapter::load_gguf(path, &m.config)?, "gguf"))
    }
}

pub fn run(
    store: &Store,
    cmd: AdaptersCmd,
    load: impl Fn(&str) -> Result<(Arc<Model>, ResolvedModel)>,
) -> Result<()> {
    let st = store.adapters();
    // Loads a stored adapter for the base it is paired with, refusing another base.
    let load_for = |name: &str, m: &Model, base: &ResolvedModel| -> Result<LoraAdapter> {
        st.meta(name)?.check_base(&store.model_sha256(base)?)?;
        Ok(st.load(name, &m.config)?)
    };
    match cmd {
        AdaptersCmd::List => {
            let entries = st.entries();
            if entries.is_empty() {
                println!("no adapters yet: train one with `autodidact train --data FILE.jsonl --out NAME`");
            }
            for e in entries {
                let run = if e.unfinished_run {
                    "\t(an unfinished training run: continue it with `train ... --resume`)"
                } else {
                    ""
                };
                match &e.meta {
                    Some(Ok(m)) => println!(
                        "{}\t{}\t{}\trank {}\t{}{run}",
                        e.name,
                        m.base_model,
                        m.method,
                        m.rank,
                        m.val_loss
                            .or(m.train_loss)
                            .map_or(String::new(), |l| format!("loss {l:.4}"))
                    ),
                    Some(Err(why)) => println!("{}\t(unreadable metadata: {why}){run}", e.name),
                    None => println!("{}\t(not trained yet){run}", e.name),
                }
            }
        }
        AdaptersCmd::Show { name } => {
            let dir = st.path(&name)?;
            let unfinished = st.checkpoint_file(&name)?.exists();
            if st.exists(&name) {
                let meta = st.meta(&name)?;
                println!("{}", serde_json::to_string_pretty(&meta)?);
            } else if !unfinished {
                bail!("no adapter named {name:?} (see `autodidact adapters list`)");
            }
            if unfinished {
                println!(
                    "unfinished run: {} (continue it with the same `train` command plus --resume)",
                    st.checkpoint_file(&name)?.display()
                );
            }
            println!("path: {}", dir.display());
        }
        AdaptersCmd::Export { name, format, out } => {
            let meta = st.meta(&name)?;
            let (m, base) = load(&meta.base_model)?;
            let ad = load_for(&name, &m, &base)?;
            match format {
                Format::Gguf => {
                    // llama.cpp refuses a LoRA file with any tensor but lora_a/lora_b pairs.
                    if let Some(t) = &ad.tokens {
                        bail!(
                            "{name} also trains the embedding rows of {} tokens, which llama.cpp's LoRA files have no place for; `autodidact adapters merge {name}` writes a model with them folded in",
                            t.ids.len()
                        );
                    }
                    ad.save_gguf(&out, &name)?
                }
                Format::Peft => export_peft(
                    &ad,
                    &m.config,
                    &out,
                    &PeftInfo {
                        base_model: &meta.base_model,
                        dropout: meta.settings["dropout"].as_f64().unwrap_or(0.0) as f32,
                    },
                )?,
            }
            println!("{}", out.display());
        }
        AdaptersCmd::Import { path, name, model } => {
            if st.path(&name)?.exists() {
                bail!("an adapter named {name:?} exists; remove it first (`autodidact adapters rm {name}`)");
            }
            let (m, base) = load(&model)?;
            let (ad, kind) = read_any(&path, &m)?;
            let meta = AdapterMeta {
                name: name.clone(),
                base_model: model,
                base_sha256: Some(store.model_sha256(&base)?),
                arch: ad.arch.name().into(),
                rank: ad.rank(),
                alpha: ad.alpha,
                targets: ad
                    .targets()
                    .iter()
                    .map(|t| t.peft_name().to_string())
                    .collect(),
                method: "import".into(),
                created: now_secs(),
                source: Some(format!("{kind}: {}", path.display())),
                ..AdapterMeta::default()
            };
            let dir = st.save(&ad, &meta)?;
            println!("{}", dir.display());
        }
        AdaptersCmd::Merge {
            name,
            model,
            out,
            outtype,
        } => {
            let (m, base) = load(&model)?;
            let ad = load_for(&name, &m, &base)?;
            ad.merged_gguf(&m, outtype.map(FloatType::ggml))?
                .write(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", out.display());
        }
        AdaptersCmd::Rm { name } => {
            st.remove(&name)?;
            println!("removed {name}");
        }
    }
    Ok(())
}
