//! `autodidact adapters list|show|export|import|merge|rm`, and `--adapter NAME|PATH` resolution
//! for `run`, `generate` and `serve`.
use anyhow::{bail, Context, Result};
use autodidact_engine::{AdapterMeta, AdapterStore};
use autodidact_kernels::GgmlType;
use autodidact_model::{LoraAdapter, Model};
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
        #[arg(short, long, default_value = crate::store::DEFAULT_MODEL)]
        model: String,
    },
    /// Fold an adapter into a copy of its base model (a new standalone GGUF).
    Merge {
        name: String,
        #[arg(short, long, default_value = crate::store::DEFAULT_MODEL)]
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

pub fn store(home: &Path) -> AdapterStore {
    AdapterStore::new(home.join("adapters"))
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `--adapter`: a stored name or a path to a GGUF-LoRA file or PEFT directory.
pub fn resolve(home: &Path, what: &str, m: &Model) -> Result<Arc<LoraAdapter>> {
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
    Ok(store(home).get(what, &m.config)?)
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

pub fn run(home: &Path, cmd: AdaptersCmd, load: impl Fn(&str) -> Result<Arc<Model>>) -> Result<()> {
    let st = store(home);
    match cmd {
        AdaptersCmd::List => {
            let names = st.names();
            if names.is_empty() {
                println!("no adapters yet: train one with `autodidact train --data FILE.jsonl --out NAME`");
            }
            for n in names {
                match st.meta(&n) {
                    Ok(m) => println!(
                        "{n}\t{}\t{}\trank {}\t{}",
                        m.base_model,
                        m.method,
                        m.rank,
                        m.val_loss
                            .or(m.train_loss)
                            .map_or(String::new(), |l| format!("loss {l:.4}"))
                    ),
                    Err(_) => println!("{n}\t(no metadata)"),
                }
            }
        }
        AdaptersCmd::Show { name } => {
            let meta = st.meta(&name)?;
            println!("{}", serde_json::to_string_pretty(&meta)?);
            println!("path: {}", st.path(&name).display());
        }
        AdaptersCmd::Export { name, format, out } => {
            let meta = st.meta(&name)?;
            let m = load(&meta.base_model)?;
            let ad = st.get(&name, &m.config)?;
            match format {
                Format::Gguf => ad.save_gguf(&out, &name)?,
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
            autodidact_engine::adapters::check_name(&name)?;
            if st.path(&name).exists() {
                bail!("an adapter named {name:?} exists; remove it first (`autodidact adapters rm {name}`)");
            }
            let m = load(&model)?;
            let (ad, kind) = read_any(&path, &m)?;
            let meta = AdapterMeta {
                name: name.clone(),
                base_model: model,
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
            let m = load(&model)?;
            let ad = st.get(&name, &m.config)?;
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
