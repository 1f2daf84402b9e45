//! The adapter store: trained LoRA adapters under `AUTODIDACT_HOME/adapters/NAME/`, each an
//! `adapter.gguf` (llama.cpp's GGUF-LoRA) with a `meta.json`, loaded on first use and shared by
//! every sequence that asks for them — so a new adapter is served without reloading the base.
use crate::EngineError;
use autodidact_model::gguf::write_atomic;
use autodidact_model::{Config, LoraAdapter};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const ADAPTER_FILE: &str = "adapter.gguf";
pub const META_FILE: &str = "meta.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// What `adapters show` prints: where an adapter came from and how it was trained.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdapterMeta {
    pub name: String,
    /// The base model's registered name or path.
    pub base_model: String,
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

/// A directory of adapters plus the ones loaded so far.
pub struct AdapterStore {
    pub dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<LoraAdapter>>>,
}

/// Names become directory names: keep them to a safe alphabet.
pub fn check_name(name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(EngineError::BadParam(format!(
            "adapter name {name:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

fn io(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Model(autodidact_model::ModelError::Io {
        path: path.display().to_string(),
        source: e,
    })
}

impl AdapterStore {
    pub fn new(dir: PathBuf) -> Self {
        AdapterStore {
            dir,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Names of the stored adapters, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(ADAPTER_FILE).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }

    pub fn meta(&self, name: &str) -> Result<AdapterMeta, EngineError> {
        check_name(name)?;
        let p = self.path(name).join(META_FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
        serde_json::from_str(&text).map_err(|e| {
            EngineError::BadParam(format!(
                "{} is not valid adapter metadata: {e}",
                p.display()
            ))
        })
    }

    /// Writes an adapter and its metadata atomically (each file), replacing any of that name.
    pub fn save(&self, ad: &LoraAdapter, meta: &AdapterMeta) -> Result<PathBuf, EngineError> {
        check_name(&meta.name)?;
        let d = self.path(&meta.name);
        std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
        ad.save_gguf(&d.join(ADAPTER_FILE), &meta.name)?;
        let json = serde_json::to_vec_pretty(meta).expect("metadata serializes");
        write_atomic(&d.join(META_FILE), &json)?;
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&meta.name);
        Ok(d)
    }

    /// Deletes an adapter and forgets it if loaded (sequences using it keep their copy).
    pub fn remove(&self, name: &str) -> Result<(), EngineError> {
        check_name(name)?;
        let d = self.path(name);
        if !d.join(ADAPTER_FILE).exists() {
            return Err(EngineError::UnknownAdapter(name.to_string()));
        }
        std::fs::remove_dir_all(&d).map_err(|e| io(&d, e))?;
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(())
    }

    /// The adapter `name`, loaded from disk on first use and checked against the base model.
    pub fn get(&self, name: &str, c: &Config) -> Result<Arc<LoraAdapter>, EngineError> {
        check_name(name)?;
        if let Some(a) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(a.clone());
        }
        let p = self.path(name).join(ADAPTER_FILE);
        if !p.exists() {
            return Err(EngineError::UnknownAdapter(name.to_string()));
        }
        let ad = Arc::new(LoraAdapter::load_gguf(&p, c)?);
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), ad.clone());
        Ok(ad)
    }
}
