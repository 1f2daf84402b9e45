//! The engine's cache of loaded LoRA adapters. The store (`autodidact-store`) owns where adapters
//! live; this keeps each loaded one shared by every sequence that asks for it — so a new adapter is
//! served without reloading the base — and follows the store: a retrained adapter is reloaded, a
//! removed one stops being served, and one trained on another base is refused.
use crate::EngineError;
use autodidact_model::{Config, LoraAdapter};
use autodidact_store::{AdapterMeta, Adapters, FileStamp, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Stored adapters plus the ones loaded so far, keyed by the version of the file they came from.
pub struct AdapterCache {
    pub adapters: Adapters,
    /// The sha256 of the base model served, checked against each adapter's record.
    base_sha256: Option<String>,
    loaded: Mutex<HashMap<String, (FileStamp, Arc<LoraAdapter>)>>,
}

impl AdapterCache {
    pub fn new(adapters: Adapters, base_sha256: Option<String>) -> Self {
        AdapterCache {
            adapters,
            base_sha256,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// Names of the finished adapters in the store, sorted.
    pub fn names(&self) -> Vec<String> {
        self.adapters.names()
    }

    pub fn meta(&self, name: &str) -> Result<AdapterMeta, EngineError> {
        Ok(self.adapters.meta(name)?)
    }

    /// The adapter `name` as the store has it now: loaded on first use, reloaded when its file
    /// changed, and an error once it is removed (sequences using an older copy keep theirs).
    pub fn get(&self, name: &str, c: &Config) -> Result<Arc<LoraAdapter>, EngineError> {
        let file = self.adapters.adapter_file(name)?;
        let lock = || self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let Some(stamp) = FileStamp::of(&file) else {
            lock().remove(name);
            return Err(StoreError::UnknownAdapter(name.to_string()).into());
        };
        if let Some((s, a)) = lock().get(name) {
            if *s == stamp {
                return Ok(a.clone());
            }
        }
        if let Some(base) = &self.base_sha256 {
            self.adapters.meta(name)?.check_base(base)?;
        }
        let ad = Arc::new(LoraAdapter::load_gguf(&file, c)?);
        lock().insert(name.to_string(), (stamp, ad.clone()));
        Ok(ad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autodidact_kernels::GgmlType;
    use autodidact_model::testing::tiny_model;
    use autodidact_model::{Arch, Model, Target};

    fn setup() -> (tempfile::TempDir, Model, AdapterCache) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.gguf");
        std::fs::write(&p, tiny_model(Arch::Gemma3, GgmlType::F32, 7)).unwrap();
        let m = Model::load(&p).unwrap();
        let cache = AdapterCache::new(
            Adapters::new(d.path().join("adapters")),
            Some("base".into()),
        );
        (d, m, cache)
    }

    fn meta(base: &str) -> AdapterMeta {
        AdapterMeta {
            name: "x".into(),
            base_sha256: Some(base.into()),
            ..AdapterMeta::default()
        }
    }

    #[test]
    fn the_cache_follows_the_store() {
        let (_d, m, cache) = setup();
        let mut ad = LoraAdapter::zeros(&m.config, 2, 4.0, &[Target::Q]);
        cache.adapters.save(&ad, &meta("base")).unwrap();
        let first = cache.get("x", &m.config).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get("x", &m.config).unwrap()));
        // Retrained under the same name: the new weights are served.
        ad.alpha = 8.0;
        cache.adapters.save(&ad, &meta("base")).unwrap();
        let second = cache.get("x", &m.config).unwrap();
        assert_eq!(second.alpha, 8.0);
        // Removed: no longer served, though sequences holding it keep their copy.
        cache.adapters.remove("x").unwrap();
        assert!(matches!(
            cache.get("x", &m.config),
            Err(EngineError::Store(StoreError::UnknownAdapter(_)))
        ));
        assert_eq!(first.alpha, 4.0);
    }

    #[test]
    fn an_adapter_of_another_base_is_refused() {
        let (_d, m, cache) = setup();
        let ad = LoraAdapter::zeros(&m.config, 2, 4.0, &[Target::Q]);
        cache.adapters.save(&ad, &meta("other")).unwrap();
        assert!(matches!(
            cache.get("x", &m.config),
            Err(EngineError::Store(StoreError::BaseMismatch { .. }))
        ));
    }
}
