//! Trained LoRA adapters under `adapters/NAME/`: `adapter.gguf` (llama.cpp's GGUF-LoRA),
//! `meta.json` (how it was made, and the sha256 of the base it belongs to) and, while a run is
//! unfinished, `checkpoint.safetensors`.
use crate::fsutil::{check_name, write_atomic};
use crate::StoreError;
use autodidact_model::LoraAdapter;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub const ADAPTER_FILE: &str = "adapter.gguf";
pub const META_FILE: &str = "meta.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// Where an adapter came from and how it was trained.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdapterMeta {
    pub name: String,
    /// The base model's registered name or path.
    pub base_model: String,
    /// The base model file's sha256; adapters saved before it was recorded have none.
    #[serde(default)]
    pub base_sha256: Option<String>,
    pub arch: String,
    pub rank: usize,
    pub alpha: f32,
    pub targets: Vec<String>,
    /// `sft`, `dpo` or `import`.
    pub method: String,
    /// Unix seconds.
    pub created: u64,
    #[serde(default)]
    pub source: Option<String>,
    /// The adapter this one started from, if any.
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub steps: Option<usize>,
    #[serde(default)]
    pub train_loss: Option<f32>,
    #[serde(default)]
    pub val_loss: Option<f32>,
    /// Any further settings of the run, as given.
    #[serde(default)]
    pub settings: serde_json::Value,
}

impl AdapterMeta {
    /// Refuses pairing this adapter with a base whose sha256 differs from the recorded one.
    pub fn check_base(&self, base_sha256: &str) -> Result<(), StoreError> {
        match &self.base_sha256 {
            Some(s) if s != base_sha256 => Err(StoreError::BaseMismatch {
                adapter: self.name.clone(),
                expected: s.clone(),
                found: base_sha256.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// What is on disk under one adapter name.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterEntry {
    pub name: String,
    /// Metadata of the finished adapter, if there is one (an error text if it does not parse).
    pub meta: Option<Result<AdapterMeta, String>>,
    /// An unfinished training run's checkpoint is present (`resume` continues it; when `meta`
    /// is also there, the finished adapter is the previous one, kept until the new run ends).
    pub unfinished_run: bool,
}

/// Identifies one version of an adapter file, so caches notice a retrain or a removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: u64,
}

impl FileStamp {
    pub fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: m.len(),
            modified: m.modified().ok(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&m),
        })
    }
}

/// The adapters directory.
#[derive(Debug, Clone)]
pub struct Adapters {
    pub dir: PathBuf,
}

impl Adapters {
    pub fn new(dir: PathBuf) -> Self {
        Adapters { dir }
    }

    /// The directory of adapter `name` (checked to be a safe name).
    pub fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_name("adapter", name)?;
        Ok(self.dir.join(name))
    }

    pub fn adapter_file(&self, name: &str) -> Result<PathBuf, StoreError> {
        Ok(self.path(name)?.join(ADAPTER_FILE))
    }

    pub fn checkpoint_file(&self, name: &str) -> Result<PathBuf, StoreError> {
        Ok(self.path(name)?.join(CHECKPOINT_FILE))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.adapter_file(name).is_ok_and(|p| p.is_file())
    }

    /// Names of the finished adapters, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| e.meta.is_some())
            .map(|e| e.name)
            .collect()
    }

    /// Everything under the directory: finished adapters and unfinished runs, sorted by name.
    pub fn entries(&self) -> Vec<AdapterEntry> {
        let mut v: Vec<AdapterEntry> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                check_name("adapter", &name).ok()?;
                let d = e.path();
                let finished = d.join(ADAPTER_FILE).is_file();
                let unfinished_run = d.join(CHECKPOINT_FILE).is_file();
                if !finished && !unfinished_run {
                    return None;
                }
                let meta = finished.then(|| self.meta(&name).map_err(|e| e.to_string()));
                Some(AdapterEntry {
                    name,
                    meta,
                    unfinished_run,
                })
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn meta(&self, name: &str) -> Result<AdapterMeta, StoreError> {
        let d = self.path(name)?;
        if !d.join(ADAPTER_FILE).is_file() {
            return Err(StoreError::UnknownAdapter(name.to_string()));
        }
        let p = d.join(META_FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| StoreError::io(&p, e))?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: p,
            what: "adapter metadata",
            detail: e.to_string(),
        })
    }

    /// The current version of adapter `name`'s file, or `None` when it is gone.
    pub fn stamp(&self, name: &str) -> Option<FileStamp> {
        FileStamp::of(&self.adapter_file(name).ok()?)
    }

    /// Writes an adapter and its metadata (each file atomically; the adapter first, so metadata
    /// never describes a file that is not there), replacing any of that name, and removes the
    /// finished run's checkpoint.
    pub fn save(&self, ad: &LoraAdapter, meta: &AdapterMeta) -> Result<PathBuf, StoreError> {
        let d = self.path(&meta.name)?;
        std::fs::create_dir_all(&d).map_err(|e| StoreError::io(&d, e))?;
        ad.save_gguf(&d.join(ADAPTER_FILE), &meta.name)?;
        let json = serde_json::to_vec_pretty(meta).expect("metadata serializes");
        write_atomic(&d.join(META_FILE), &json)?;
        let ck = d.join(CHECKPOINT_FILE);
        if ck.exists() {
            std::fs::remove_file(&ck).map_err(|e| StoreError::io(&ck, e))?;
        }
        Ok(d)
    }

    /// Loads the stored adapter for a base of configuration `c`.
    pub fn load(
        &self,
        name: &str,
        c: &autodidact_model::Config,
    ) -> Result<LoraAdapter, StoreError> {
        let p = self.adapter_file(name)?;
        if !p.is_file() {
            return Err(StoreError::UnknownAdapter(name.to_string()));
        }
        Ok(LoraAdapter::load_gguf(&p, c)?)
    }

    /// Deletes an adapter (and any unfinished run of that name).
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let d = self.path(name)?;
        if !d.join(ADAPTER_FILE).exists() && !d.join(CHECKPOINT_FILE).exists() {
            return Err(StoreError::UnknownAdapter(name.to_string()));
        }
        std::fs::remove_dir_all(&d).map_err(|e| StoreError::io(&d, e))
    }
}
