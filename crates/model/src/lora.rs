//! LoRA adapters: low-rank `B·A` updates of a model's linear layers, applied beside the frozen base
//! at run time, and stored in llama.cpp's GGUF-LoRA format.
//!
//! A layer's output becomes `y = W·x + (alpha / rank) · B·(A·x)` with `A (rank, in)` and
//! `B (out, rank)`, the shapes PEFT stores. GGUF lists dimensions innermost first, so llama.cpp's
//! `lora_a` has dims `[in, rank]` and `lora_b` `[rank, out]`: the same row-major bytes.
use crate::config::{Arch, Config};
use crate::gguf::{Array, GgufFile, GgufWriter, TensorData, Value, KEY_ARCHITECTURE};
use crate::model::Model;
use crate::ModelError;
use autodidact_kernels::quant::dequantize_to_vec;
use autodidact_kernels::vec::add_inplace;
use autodidact_kernels::{sgemm, Accumulate, GgmlType, MatMut, MatRef};
use std::path::Path;

pub const KEY_GENERAL_TYPE: &str = "general.type";
pub const KEY_ADAPTER_TYPE: &str = "adapter.type";
pub const KEY_LORA_ALPHA: &str = "adapter.lora.alpha";
/// The token ids of an adapter's [`TokenRows`], in the order of [`TOKEN_ROWS_TENSOR`]'s rows.
pub const KEY_TOKEN_ROWS: &str = "adapter.token_rows";
/// An adapter's [`TokenRows`] delta, dims `[n_embd, ids]`.
pub const TOKEN_ROWS_TENSOR: &str = "token_embd.rows_delta";

/// A linear layer LoRA can target. The order is the order of a layer's [`LayerLora::pairs`].
/// Serialized by its short name (`q` … `down`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The GGUF tensor stem: `blk.N.<stem>.weight`.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Target::Q => "attn_q",
            Target::K => "attn_k",
            Target::V => "attn_v",
            Target::O => "attn_output",
            Target::Gate => "ffn_gate",
            Target::Up => "ffn_up",
            Target::Down => "ffn_down",
        }
    }

    /// The Hugging Face module name PEFT targets (`q_proj` …).
    pub fn peft_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The Hugging Face block holding the module.
    pub fn peft_parent(self) -> &'static str {
        match self {
            Target::Q | Target::K | Target::V | Target::O => "self_attn",
            Target::Gate | Target::Up | Target::Down => "mlp",
        }
    }

    /// The short name (`q`, `gate` …), as flags and records spell it.
    pub fn short_name(self) -> &'static str {
        self.peft_name().trim_end_matches("_proj")
    }

    /// Accepts the short name (`q`), PEFT's (`q_proj`) and GGUF's (`attn_q`).
    pub fn parse(s: &str) -> Option<Target> {
        let s = s.trim();
        Target::ALL.into_iter().find(|t| {
            s == t.gguf_name() || s == t.peft_name() || s == t.peft_name().trim_end_matches("_proj")
        })
    }

    /// `(out, in)` of the base weight in `c`.
    pub fn shape(self, c: &Config) -> (usize, usize) {
        match self {
            Target::Q => (c.q_dim(), c.n_embd),
            Target::K | Target::V => (c.kv_dim(), c.n_embd),
            Target::O => (c.n_embd, c.q_dim()),
            Target::Gate | Target::Up => (c.n_ff, c.n_embd),
            Target::Down => (c.n_embd, c.n_ff),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One adapted matrix: `a (rank, in)`, `b (out, rank)`, row-major f32.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub rank: usize,
    pub n_in: usize,
    pub n_out: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl LoraPair {
    pub fn zeros(rank: usize, n_in: usize, n_out: usize) -> Self {
        LoraPair {
            rank,
            n_in,
            n_out,
            a: vec![0.0; rank * n_in],
            b: vec![0.0; n_out * rank],
        }
    }

    /// `y (n, out) += scale · x (n, in) · Aᵀ · Bᵀ`; `u (n, rank)` receives `x · Aᵀ`.
    pub fn apply(&self, scale: f32, x: &[f32], n: usize, u: &mut Vec<f32>, y: &mut [f32]) {
        u.resize(n * self.rank, 0.0);
        sgemm(
            MatMut::new(u, n, self.rank),
            MatRef::new(x, n, self.n_in),
            MatRef::new(&self.a, self.rank, self.n_in).t(),
            Accumulate::Overwrite,
            1.0,
        );
        sgemm(
            MatMut::new(y, n, self.n_out),
            MatRef::new(u, n, self.rank),
            MatRef::new(&self.b, self.n_out, self.rank).t(),
            Accumulate::Add,
            scale,
        );
    }
}

/// The adapted matrices of one transformer block, indexed by [`Target`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerLora {
    pub pairs: [Option<LoraPair>; 7],
}

impl LayerLora {
    pub fn get(&self, t: Target) -> Option<&LoraPair> {
        self.pairs[t.index()].as_ref()
    }

    pub fn get_mut(&mut self, t: Target) -> Option<&mut LoraPair> {
        self.pairs[t.index()].as_mut()
    }

    pub fn set(&mut self, t: Target, p: Option<LoraPair>) {
        self.pairs[t.index()] = p;
    }
}

/// Trained changes to a few rows of the token embedding (PEFT's "trainable tokens").
///
/// A pretrained base never saw its chat template's markers: after an answer, Gemma 3's base
/// gives `<end_of_turn>` about 29 nats, ten times an ordinary token, and LoRA on the layers
/// alone can only reach it by turning the whole final hidden state, which drowned every other
/// lesson of a training step (README, "Measured"). Learning the marker's own row is what
/// PEFT's `trainable_token_indices` is for. Where the output projection is the embedding itself
/// (tied, as in Gemma) a row's change moves both the token's input embedding and its logit, as
/// PEFT does for tied weights; with a separate output matrix, only the input.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRows {
    pub ids: Vec<u32>,
    /// `(ids, n_embd)`: added to the embedding rows of `ids`, before any embedding scale.
    pub delta: Vec<f32>,
}

impl TokenRows {
    /// No change yet to the rows of `ids` of an `n_embd`-wide embedding.
    pub fn zeros(ids: Vec<u32>, n_embd: usize) -> Self {
        let delta = vec![0.0; ids.len() * n_embd];
        TokenRows { ids, delta }
    }

    pub fn n_embd(&self) -> usize {
        self.delta.len() / self.ids.len().max(1)
    }

    /// Where token `t`'s row is among `ids`, if it has one.
    pub fn index(&self, t: u32) -> Option<usize> {
        self.ids.iter().position(|&i| i == t)
    }

    /// The change to token `t`'s row, if it has one.
    pub fn row(&self, t: u32) -> Option<&[f32]> {
        let d = self.n_embd();
        let j = self.index(t)?;
        Some(&self.delta[j * d..(j + 1) * d])
    }

    /// `row += delta_t`: token `t`'s embedding row (unscaled), if it has a change.
    pub fn add_to_embedding(&self, t: u32, row: &mut [f32]) {
        if let Some(delta) = self.row(t) {
            add_inplace(row, delta);
        }
    }

    /// `logits[id] += h · delta_id` for each row's token: one position's logits `(n_vocab)` from
    /// its final-normed hidden state `h`, where the output is tied to the embedding.
    pub fn add_logits(&self, h: &[f32], logits: &mut [f32]) {
        let d = self.n_embd();
        for (&id, delta) in self.ids.iter().zip(self.delta.chunks(d)) {
            logits[id as usize] += h.iter().zip(delta).map(|(a, b)| a * b).sum::<f32>();
        }
    }

    fn check(&self, c: &Config) -> Result<(), ModelError> {
        let mut seen = std::collections::BTreeSet::new();
        if self.ids.is_empty() || self.delta.len() != self.ids.len() * c.n_embd {
            return Err(ModelError::Invalid(format!(
                "adapter's token rows are {} values for {} tokens, the model's embedding is {} wide",
                self.delta.len(),
                self.ids.len(),
                c.n_embd
            )));
        }
        for &t in &self.ids {
            if t as usize >= c.n_vocab || !seen.insert(t) {
                return Err(ModelError::Invalid(format!(
                    "adapter's token rows name token {t} twice or outside the vocabulary of {}",
                    c.n_vocab
                )));
            }
        }
        Ok(())
    }
}

/// A LoRA adapter for one base architecture and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    pub arch: Arch,
    pub alpha: f32,
    pub layers: Vec<LayerLora>,
    /// Embedding rows trained beside the layers, if any.
    pub tokens: Option<TokenRows>,
}

impl LoraAdapter {
    /// An adapter with zero `A` and `B` of rank `rank` on `targets` of every layer.
    pub fn zeros(c: &Config, rank: usize, alpha: f32, targets: &[Target]) -> Self {
        let layers = (0..c.n_layer)
            .map(|_| {
                let mut l = LayerLora::default();
                for &t in targets {
                    let (out, inn) = t.shape(c);
                    l.set(t, Some(LoraPair::zeros(rank, inn, out)));
                }
                l
            })
            .collect();
        LoraAdapter {
            arch: c.arch,
            alpha,
            layers,
            tokens: None,
        }
    }

    /// `alpha / rank`, as PEFT and llama.cpp scale the update.
    pub fn scale(&self, p: &LoraPair) -> f32 {
        self.alpha / p.rank as f32
    }

    /// The rank of the first pair (adapters trained here use one rank throughout).
    pub fn rank(&self) -> usize {
        self.pairs().next().map_or(0, |(_, _, p)| p.rank)
    }

    /// Targets adapted in at least one layer.
    pub fn targets(&self) -> Vec<Target> {
        let mut t: Vec<Target> = self.pairs().map(|(_, t, _)| t).collect();
        t.sort();
        t.dedup();
        t
    }

    /// Every pair with its layer and target.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, Target, &LoraPair)> {
        self.layers.iter().enumerate().flat_map(|(il, l)| {
            Target::ALL
                .into_iter()
                .filter_map(move |t| l.get(t).map(|p| (il, t, p)))
        })
    }

    pub fn n_params(&self) -> usize {
        self.pairs()
            .map(|(_, _, p)| p.a.len() + p.b.len())
            .sum::<usize>()
            + self.tokens.as_ref().map_or(0, |t| t.delta.len())
    }

    /// Checks that the adapter fits a model of config `c`.
    pub fn check(&self, c: &Config) -> Result<(), ModelError> {
        if self.arch != c.arch {
            return Err(ModelError::Invalid(format!(
                "adapter is for {} models, this model is {}",
                self.arch.name(),
                c.arch.name()
            )));
        }
        if self.layers.len() != c.n_layer {
            return Err(ModelError::Invalid(format!(
                "adapter has {} layers, the model {}",
                self.layers.len(),
                c.n_layer
            )));
        }
        for (il, t, p) in self.pairs() {
            let (out, inn) = t.shape(c);
            if p.n_in != inn
                || p.n_out != out
                || p.rank == 0
                || p.a.len() != p.rank * inn
                || p.b.len() != out * p.rank
            {
                return Err(ModelError::Invalid(format!(
                    "adapter tensor blk.{il}.{} is {}x{} of rank {}, the model's weight is {out}x{inn}",
                    t.gguf_name(),
                    p.n_out,
                    p.n_in,
                    p.rank
                )));
            }
        }
        if let Some(t) = &self.tokens {
            t.check(c)?;
        }
        Ok(())
    }

    /// The llama.cpp GGUF-LoRA encoding (F32 tensors). Token rows, which llama.cpp's format has
    /// no place for, go in a tensor and a key of their own (see [`KEY_TOKEN_ROWS`]).
    pub fn to_gguf(&self, name: &str) -> GgufWriter {
        let mut w = GgufWriter::new();
        w.set(KEY_ARCHITECTURE, Value::String(self.arch.name().into()));
        w.set(KEY_GENERAL_TYPE, Value::String("adapter".into()));
        w.set("general.name", Value::String(name.into()));
        w.set(KEY_ADAPTER_TYPE, Value::String("lora".into()));
        w.set(KEY_LORA_ALPHA, Value::F32(self.alpha));
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        for (il, t, p) in self.pairs() {
            let stem = format!("blk.{il}.{}.weight", t.gguf_name());
            w.add_tensor(TensorData {
                name: format!("{stem}.lora_a"),
                dims: vec![p.n_in as u64, p.rank as u64],
                ty: GgmlType::F32,
                data: bytes(&p.a),
            });
            w.add_tensor(TensorData {
                name: format!("{stem}.lora_b"),
                dims: vec![p.rank as u64, p.n_out as u64],
                ty: GgmlType::F32,
                data: bytes(&p.b),
            });
        }
        if let Some(t) = &self.tokens {
            w.set(KEY_TOKEN_ROWS, Value::Array(Array::U32(t.ids.clone())));
            w.add_tensor(TensorData {
                name: TOKEN_ROWS_TENSOR.into(),
                dims: vec![t.n_embd() as u64, t.ids.len() as u64],
                ty: GgmlType::F32,
                data: bytes(&t.delta),
            });
        }
        w
    }

    /// Writes the GGUF-LoRA file atomically.
    pub fn save_gguf(&self, path: &Path, name: &str) -> Result<(), ModelError> {
        self.to_gguf(name).write(path)
    }

    pub fn load_gguf(path: &Path, c: &Config) -> Result<Self, ModelError> {
        Self::from_gguf(&GgufFile::open(path)?, c)
    }

    /// Reads a GGUF-LoRA file (ours or llama.cpp's) and checks it against the model config.
    pub fn from_gguf(g: &GgufFile, c: &Config) -> Result<Self, ModelError> {
        let bad = |what: String| ModelError::Invalid(format!("{}: {what}", g.path));
        match g.get_str(KEY_GENERAL_TYPE)? {
            Some("adapter") => {}
            other => {
                return Err(bad(format!(
                    "general.type is {other:?}, not \"adapter\" (is this a base model?)"
                )))
            }
        }
        match g.get_str(KEY_ADAPTER_TYPE)? {
            Some("lora") => {}
            other => return Err(bad(format!("adapter.type is {other:?}, not \"lora\""))),
        }
        let arch = match g.get_str(KEY_ARCHITECTURE)? {
            Some("gemma3") => Arch::Gemma3,
            Some("llama") => Arch::Llama,
            other => {
                return Err(bad(format!(
                    "adapter architecture {other:?} is not supported"
                )))
            }
        };
        let mut ad = LoraAdapter {
            arch,
            alpha: 0.0,
            layers: vec![LayerLora::default(); c.n_layer],
            tokens: None,
        };
        let alpha = g.get_f32(KEY_LORA_ALPHA)?;
        for info in &g.tensors {
            let name = info.name.as_str();
            if name == TOKEN_ROWS_TENSOR {
                let ids = match g.get_array(KEY_TOKEN_ROWS)? {
                    Some(Array::U32(v)) => v.clone(),
                    _ => return Err(bad(format!("{name} without a {KEY_TOKEN_ROWS} list"))),
                };
                let n = info.n_elements() as usize;
                if info.dims.len() != 2 || info.dims[1] as usize != ids.len() {
                    return Err(bad(format!("{name} does not hold {} rows", ids.len())));
                }
                let (_, data) = g.tensor_data(name)?;
                let delta = dequantize_to_vec(info.ty, data, n)?;
                ad.tokens = Some(TokenRows { ids, delta });
                continue;
            }
            if name.ends_with("_norm.weight") {
                // llama.cpp skips norm deltas too; an adapter of linear layers loses nothing.
                continue;
            }
            let (stem, is_a) = if let Some(s) = name.strip_suffix(".weight.lora_a") {
                (s, true)
            } else if let Some(s) = name.strip_suffix(".weight.lora_b") {
                (s, false)
            } else {
                return Err(bad(format!("tensor {name} is not a LoRA tensor")));
            };
            let (il, t) = parse_stem(stem)
                .ok_or_else(|| bad(format!("tensor {name} names no adaptable layer")))?;
            if il >= c.n_layer {
                return Err(bad(format!(
                    "tensor {name} is for layer {il}, the model has {}",
                    c.n_layer
                )));
            }
            if info.dims.len() != 2 {
                return Err(bad(format!("tensor {name} is not 2-D")));
            }
            let (inner, outer) = (info.dims[0] as usize, info.dims[1] as usize);
            let (_, data) = g.tensor_data(name)?;
            let vals = dequantize_to_vec(info.ty, data, inner * outer)?;
            let (out, inn) = t.shape(c);
            let layer = &mut ad.layers[il];
            let pair = layer.pairs[t.index()].get_or_insert_with(|| LoraPair {
                rank: 0,
                n_in: inn,
                n_out: out,
                a: Vec::new(),
                b: Vec::new(),
            });
            if is_a {
                // dims [in, rank]
                if inner != inn {
                    return Err(bad(format!(
                        "{name} has {inner} columns, the model's {} has {inn} inputs (wrong base model?)",
                        t.gguf_name()
                    )));
                }
                pair.a = vals;
                if pair.rank != 0 && pair.rank != outer {
                    return Err(bad(format!(
                        "{name}: rank {outer} differs from lora_b's {}",
                        pair.rank
                    )));
                }
                pair.rank = outer;
            } else {
                // dims [rank, out]
                if outer != out {
                    return Err(bad(format!(
                        "{name} has {outer} rows, the model's {} has {out} outputs (wrong base model?)",
                        t.gguf_name()
                    )));
                }
                pair.b = vals;
                if pair.rank != 0 && pair.rank != inner {
                    return Err(bad(format!(
                        "{name}: rank {inner} differs from lora_a's {}",
                        pair.rank
                    )));
                }
                pair.rank = inner;
            }
        }
        for (il, t, p) in ad.pairs() {
            if p.a.is_empty() || p.b.is_empty() {
                return Err(bad(format!(
                    "blk.{il}.{} has only one of lora_a and lora_b",
                    t.gguf_name()
                )));
            }
        }
        if ad.tokens.is_none() && g.get_array(KEY_TOKEN_ROWS)?.is_some() {
            return Err(bad(format!(
                "{KEY_TOKEN_ROWS} lists token rows but there is no {TOKEN_ROWS_TENSOR} tensor"
            )));
        }
        if ad.pairs().next().is_none() && ad.tokens.is_none() {
            return Err(bad("no LoRA tensors".into()));
        }
        // llama.cpp treats a missing alpha as "scale 1", i.e. alpha = rank.
        ad.alpha = alpha.unwrap_or(ad.rank() as f32);
        ad.check(c)?;
        Ok(ad)
    }

    /// Adds `scale · B·A` into f32 copies of the base weights: `w (out, in)` for each pair (merge).
    pub fn merge_into(&self, il: usize, t: Target, w: &mut [f32]) {
        if let Some(p) = self.layers.get(il).and_then(|l| l.get(t)) {
            sgemm(
                MatMut::new(w, p.n_out, p.n_in),
                MatRef::new(&p.b, p.n_out, p.rank),
                MatRef::new(&p.a, p.rank, p.n_in),
                Accumulate::Add,
                self.scale(p),
            );
        }
    }
}

impl LoraAdapter {
    /// A copy of base model `m` with the adapter folded into its weights (`autodidact adapters
    /// merge`); see [`rewrite_gguf`] for `out_ty`.
    pub fn merged_gguf(
        &self,
        m: &Model,
        out_ty: Option<GgmlType>,
    ) -> Result<GgufWriter, ModelError> {
        self.check(&m.config)?;
        rewrite_gguf(m, Some(self), out_ty)
    }
}

/// A copy of model `m`, with `adapter` (if any) folded into its weights. With `out_ty` `None`
/// each adapted weight is re-encoded in its own type and the rest copied byte for byte; with a
/// type, every quantized matrix is stored in that type instead, so `Some(F32)` holds exactly the
/// dequantized base plus the adapter (as llama.cpp's `export-lora`/`quantize` to f32 do).
pub fn rewrite_gguf(
    m: &Model,
    adapter: Option<&LoraAdapter>,
    out_ty: Option<GgmlType>,
) -> Result<GgufWriter, ModelError> {
    let g = &m.gguf;
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        w.set(k, v.clone());
    }
    for (k, v) in m.tokenizer.taken_metadata() {
        w.set(k, v);
    }
    for info in &g.tensors {
        let (_, data) = g.tensor_data(&info.name)?;
        let adapted = adapter.and_then(|ad| {
            let (il, t) = parse_stem(info.name.strip_suffix(".weight")?)?;
            ad.layers.get(il)?.get(t)?;
            Some((ad, il, t))
        });
        // Norms and other f32 vectors keep their type; quantized matrices take `out_ty`.
        let ty = match out_ty {
            Some(t) if info.ty != GgmlType::F32 && info.dims.len() == 2 => t,
            _ => info.ty,
        };
        // Token rows fold into the embedding (and so, where tied, into the output too).
        let rows = adapter
            .and_then(|ad| ad.tokens.as_ref())
            .filter(|_| info.name == "token_embd.weight");
        let data = if adapted.is_some() || rows.is_some() || ty != info.ty {
            let mut vals = dequantize_to_vec(info.ty, data, info.n_elements() as usize)?;
            if let Some((ad, il, t)) = adapted {
                ad.merge_into(il, t, &mut vals);
            }
            if let Some(r) = rows {
                let d = r.n_embd();
                for &id in &r.ids {
                    r.add_to_embedding(id, &mut vals[id as usize * d..(id as usize + 1) * d]);
                }
            }
            autodidact_kernels::quant::quantize_to_vec(ty, &vals)?
        } else {
            data.to_vec()
        };
        w.add_tensor(TensorData {
            name: info.name.clone(),
            dims: info.dims.clone(),
            ty,
            data,
        });
    }
    Ok(w)
}

/// `blk.N.attn_q` → `(N, Q)`.
fn parse_stem(stem: &str) -> Option<(usize, Target)> {
    let rest = stem.strip_prefix("blk.")?;
    let (n, name) = rest.split_once('.')?;
    let t = Target::ALL.into_iter().find(|t| t.gguf_name() == name)?;
    Some((n.parse().ok()?, t))
}
