//! Training checkpoints: the adapter, AdamW's moments and the step, in one safetensors file written
//! atomically (temp file, fsync, rename). The data position and every random draw are functions
//! of (seed, step), so the step is all a resumed run needs to continue exactly where it stopped.
use crate::optim::{tensors, tensors_mut, AdamState};
use crate::TrainError;
use autodidact_model::gguf::write_atomic;
use autodidact_model::LoraAdapter;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

pub struct Checkpoint {
    pub step: usize,
    /// Identifies the settings, data and base model the run was started with.
    pub fingerprint: String,
    pub adapter: LoraAdapter,
    pub adam: AdamState,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// FNV-1a: a stable, dependency-free hash for fingerprints (not for security).
pub fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let mut named: Vec<(String, Vec<u8>, usize)> = Vec::new();
        for (i, t) in tensors(&self.adapter).iter().enumerate() {
            named.push((format!("param.{i}"), f32_bytes(t), t.len()));
        }
        for (i, (m, v)) in self.adam.m.iter().zip(&self.adam.v).enumerate() {
            named.push((format!("adam_m.{i}"), f32_bytes(m), m.len()));
            named.push((format!("adam_v.{i}"), f32_bytes(v), v.len()));
        }
        let views: Vec<(String, TensorView)> = named
            .iter()
            .map(|(n, b, len)| {
                let view = TensorView::new(Dtype::F32, vec![*len], b)
                    .expect("the byte length is 4 × the element count by construction");
                (n.clone(), view)
            })
            .collect();
        let meta = HashMap::from([
            ("step".to_string(), self.step.to_string()),
            ("adam_step".to_string(), self.adam.step.to_string()),
            ("fingerprint".to_string(), self.fingerprint.clone()),
        ]);
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| TrainError::Format {
            path: path.display().to_string(),
            what: e.to_string(),
        })?;
        write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Loads a checkpoint into the shape of `template` (the run's freshly built adapter).
    pub fn load(path: &Path, template: &LoraAdapter) -> Result<Self, TrainError> {
        let bad = |what: String| TrainError::Format {
            path: path.display().to_string(),
            what,
        };
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let num = |k: &str| -> Result<u64, TrainError> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("missing {k}")))
        };
        let read = |name: &str, out: &mut [f32]| -> Result<(), TrainError> {
            let t = st.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
            if t.dtype() != Dtype::F32 || t.data().len() != out.len() * 4 {
                return Err(bad(format!(
                    "{name} does not fit this run's adapter (different rank or targets?)"
                )));
            }
            for (o, c) in out.iter_mut().zip(t.data().chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            Ok(())
        };
        let mut adapter = template.clone();
        for (i, t) in tensors_mut(&mut adapter).into_iter().enumerate() {
            read(&format!("param.{i}"), t)?;
        }
        let mut adam = AdamState::new(template);
        adam.step = num("adam_step")?;
        for (i, (m, v)) in adam.m.iter_mut().zip(adam.v.iter_mut()).enumerate() {
            read(&format!("adam_m.{i}"), m)?;
            read(&format!("adam_v.{i}"), v)?;
        }
        Ok(Checkpoint {
            step: num("step")? as usize,
            fingerprint: meta.get("fingerprint").cloned().unwrap_or_default(),
            adapter,
            adam,
        })
    }
}
