//! A BERT-family sentence encoder (all-MiniLM-L6-v2 and kin) from a Hugging Face directory:
//! `config.json`, `model.safetensors`, `tokenizer.json` or `vocab.txt`, and the
//! sentence-transformers pooling config. Post-LayerNorm encoder, exact (erf) GELU, mean pooling
//! over the tokens, L2 normalisation.
use crate::tokenizer::wordpiece::WordPiece;
use crate::ModelError;
use autodidact_kernels::{linear, Accumulate};
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_eps() -> f32 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

/// sentence-transformers' `1_Pooling/config.json` (the modes this encoder implements).
#[derive(Debug, Clone, Copy, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
}

struct Linear {
    // [out × in], row-major like PyTorch's.
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Linear {
    /// `y (n, out) = x (n, in) · wᵀ + b`.
    fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let out = self.b.len();
        let mut y = vec![0f32; n * out];
        for row in y.chunks_exact_mut(out) {
            row.copy_from_slice(&self.b);
        }
        linear(&mut y, x, &self.w, n, Accumulate::Add, 1.0);
        y
    }
}

struct LayerNorm {
    w: Vec<f32>,
    b: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn forward_inplace(&self, x: &mut [f32]) {
        let d = self.w.len();
        for row in x.chunks_exact_mut(d) {
            let mean = row.iter().sum::<f32>() / d as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.w).zip(&self.b) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

pub struct Bert {
    pub config: BertConfig,
    pub tokenizer: WordPiece,
    pub pooling: Pooling,
    /// Longest input in tokens, [CLS] and [SEP] included (sentence-transformers' max_seq_length).
    pub max_len: usize,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type0: Vec<f32>,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
}

fn bad(path: &Path, name: &str, what: impl Into<String>) -> ModelError {
    ModelError::BadTensor {
        path: path.display().to_string(),
        name: name.to_string(),
        what: what.into(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Invalid(format!("{}: {e}", path.display())))
}

/// Erf by Abramowitz & Stegun 7.1.26 in f64 (error below 1.5e-7): the exact GELU BERT uses.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

fn gelu_erf(x: f32) -> f32 {
    (0.5 * x as f64 * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2))) as f32
}

impl Bert {
    /// Loads a sentence-transformers / Hugging Face BERT directory.
    pub fn load(dir: &Path) -> Result<Bert, ModelError> {
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        if config.hidden_act != "gelu" {
            return Err(ModelError::Invalid(format!(
                "{}: hidden_act {:?} (this encoder implements \"gelu\")",
                dir.display(),
                config.hidden_act
            )));
        }
        if config
            .position_embedding_type
            .as_deref()
            .is_some_and(|p| p != "absolute")
        {
            return Err(ModelError::Invalid(format!(
                "{}: only absolute position embeddings are implemented",
                dir.display()
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(ModelError::Invalid(format!(
                "{}: hidden_size {} is not a multiple of {} heads",
                dir.display(),
                config.hidden_size,
                config.num_attention_heads
            )));
        }
        let pool_path = dir.join("1_Pooling/config.json");
        let pooling = if pool_path.exists() {
            let p: PoolingConfig = read_json(&pool_path)?;
            match (p.pooling_mode_mean_tokens, p.pooling_mode_cls_token) {
                (true, false) => Pooling::Mean,
                (false, true) => Pooling::Cls,
                _ => {
                    return Err(ModelError::Invalid(format!(
                        "{}: only mean or CLS pooling alone is implemented",
                        pool_path.display()
                    )))
                }
            }
        } else {
            Pooling::Mean
        };
        let st_path = dir.join("sentence_bert_config.json");
        let max_len = if st_path.exists() {
            let v: serde_json::Value = read_json(&st_path)?;
            v["max_seq_length"].as_u64().map(|n| n as usize)
        } else {
            None
        }
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);
        let tokenizer = WordPiece::from_dir(dir)?;

        let path = dir.join("model.safetensors");
        let file = std::fs::File::open(&path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        // SAFETY: the file is opened read-only and only read while mapped; the store does not
        // rewrite model files in place (pulls replace them by rename).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let st =
            SafeTensors::deserialize(&map).map_err(|e| bad(&path, "(header)", e.to_string()))?;
        // Checkpoints saved from `BertModel` have bare names; from task heads, a `bert.` prefix.
        let prefix = if st.tensor("bert.embeddings.word_embeddings.weight").is_ok() {
            "bert."
        } else {
            ""
        };
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
            let full = format!("{prefix}{name}");
            let t = st
                .tensor(&full)
                .map_err(|_| ModelError::MissingTensor(full.clone()))?;
            if t.shape() != shape {
                return Err(ModelError::TensorShape {
                    name: full,
                    found: t.shape().iter().map(|&d| d as u64).collect(),
                    expected: shape.iter().map(|&d| d as u64).collect(),
                });
            }
            if t.dtype() != Dtype::F32 {
                return Err(bad(
                    &path,
                    &full,
                    format!("dtype {:?}, expected F32", t.dtype()),
                ));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let (h, ff) = (config.hidden_size, config.intermediate_size);
        let lin = |name: &str, out: usize, inn: usize| -> Result<Linear, ModelError> {
            Ok(Linear {
                w: get(&format!("{name}.weight"), &[out, inn])?,
                b: get(&format!("{name}.bias"), &[out])?,
            })
        };
        let norm = |name: &str| -> Result<LayerNorm, ModelError> {
            Ok(LayerNorm {
                w: get(&format!("{name}.weight"), &[h])?,
                b: get(&format!("{name}.bias"), &[h])?,
                eps: config.layer_norm_eps,
            })
        };
        let word = get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position = get(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let types = st
            .tensor(&format!("{prefix}embeddings.token_type_embeddings.weight"))
            .map(|t| t.shape()[0])
            .unwrap_or(1);
        let token_type0 =
            get("embeddings.token_type_embeddings.weight", &[types, h])?[..h].to_vec();
        let emb_norm = norm("embeddings.LayerNorm")?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                q: lin(&format!("{p}.attention.self.query"), h, h)?,
                k: lin(&format!("{p}.attention.self.key"), h, h)?,
                v: lin(&format!("{p}.attention.self.value"), h, h)?,
                attn_out: lin(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: lin(&format!("{p}.intermediate.dense"), ff, h)?,
                down: lin(&format!("{p}.output.dense"), h, ff)?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(ModelError::Invalid(format!(
                "{}: tokenizer has {} tokens, the embeddings {}",
                dir.display(),
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        Ok(Bert {
            config,
            tokenizer,
            pooling,
            max_len,
            word,
            position,
            token_type0,
            emb_norm,
            layers,
        })
    }

    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Final hidden states [n × hidden] of one token sequence (no padding, so no mask).
    pub fn hidden_states(&self, ids: &[u32]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let n = ids.len().min(self.config.max_position_embeddings);
        let mut x = vec![0f32; n * h];
        for (t, (row, &id)) in x.chunks_exact_mut(h).zip(ids).enumerate() {
            let id = (id as usize).min(self.config.vocab_size - 1);
            let w = &self.word[id * h..(id + 1) * h];
            let p = &self.position[t * h..(t + 1) * h];
            for j in 0..h {
                row[j] = w[j] + p[j] + self.token_type0[j];
            }
        }
        self.emb_norm.forward_inplace(&mut x);
        let heads = self.config.num_attention_heads;
        let hd = h / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        for l in &self.layers {
            // q, k, v: [n × h], head `a` in columns a·hd..(a+1)·hd.
            let (q, k, v) = (l.q.forward(&x, n), l.k.forward(&x, n), l.v.forward(&x, n));
            let mut ctx = vec![0f32; n * h];
            let per_head: Vec<Vec<f32>> = (0..heads)
                .into_par_iter()
                .map(|a| {
                    let mut out = vec![0f32; n * hd];
                    let mut scores = vec![0f32; n];
                    for i in 0..n {
                        let qi = &q[i * h + a * hd..i * h + (a + 1) * hd];
                        for (j, s) in scores.iter_mut().enumerate() {
                            let kj = &k[j * h + a * hd..j * h + (a + 1) * hd];
                            *s = qi.iter().zip(kj).map(|(x, y)| x * y).sum::<f32>() * scale;
                        }
                        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let mut sum = 0f32;
                        for s in scores.iter_mut() {
                            *s = (*s - max).exp();
                            sum += *s;
                        }
                        let o = &mut out[i * hd..(i + 1) * hd];
                        for (j, s) in scores.iter().enumerate() {
                            let vj = &v[j * h + a * hd..j * h + (a + 1) * hd];
                            let w = s / sum;
                            for (o, v) in o.iter_mut().zip(vj) {
                                *o += w * v;
                            }
                        }
                    }
                    out
                })
                .collect();
            for (a, out) in per_head.iter().enumerate() {
                for i in 0..n {
                    ctx[i * h + a * hd..i * h + (a + 1) * hd]
                        .copy_from_slice(&out[i * hd..(i + 1) * hd]);
                }
            }
            let mut y = l.attn_out.forward(&ctx, n);
            for (y, x) in y.iter_mut().zip(&x) {
                *y += x;
            }
            l.attn_norm.forward_inplace(&mut y);
            // Feed-forward: [n × ff] then back to [n × h].
            let mut up = l.up.forward(&y, n);
            up.par_chunks_mut(4096)
                .for_each(|c| c.iter_mut().for_each(|v| *v = gelu_erf(*v)));
            let mut z = l.down.forward(&up, n);
            for (z, y) in z.iter_mut().zip(&y) {
                *z += y;
            }
            l.out_norm.forward_inplace(&mut z);
            x = z;
        }
        x
    }

    /// The sentence vector of `text`: pooled as configured, unit length.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let ids = self.tokenizer.encode(text, self.max_len);
        let hs = self.hidden_states(&ids);
        let h = self.config.hidden_size;
        let mut v = match self.pooling {
            Pooling::Cls => hs[..h].to_vec(),
            Pooling::Mean => {
                let mut m = vec![0f32; h];
                for row in hs.chunks_exact(h) {
                    for (m, x) in m.iter_mut().zip(row) {
                        *m += x;
                    }
                }
                let n = (hs.len() / h) as f32;
                m.iter_mut().for_each(|x| *x /= n);
                m
            }
        };
        // sentence-transformers' Normalize: x / max(‖x‖, 1e-12).
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (-2.0, -0.995_322_265),
        ] {
            assert!((super::erf(x) - want).abs() < 2e-7, "erf({x})");
        }
    }
}
