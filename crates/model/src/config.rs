//! Hyperparameters of the supported architectures, read from GGUF metadata.
use crate::gguf::GgufFile;
use crate::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Gemma3,
    Llama,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Gemma3 => "gemma3",
            Arch::Llama => "llama",
        }
    }
}

/// How RoPE pairs dimensions: NEOX rotates (i, i + d/2), the original rotates (2i, 2i + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    Neox,
    Norm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    GeluTanh,
    Silu,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub ctx_train: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// RoPE base of sliding-window layers (Gemma 3 uses 10 000 there).
    pub rope_base_swa: f32,
    /// Linear RoPE scaling of full-attention layers: position multiplier (1 / factor).
    pub rope_freq_scale: f32,
    pub rope_style: RopeStyle,
    pub activation: Activation,
    /// Window of sliding-window layers, and which layers slide.
    pub sliding_window: Option<usize>,
    pub swa_layers: Vec<bool>,
    /// Multiplier of token embeddings (Gemma: √n_embd).
    pub embed_scale: f32,
    /// Multiplier of queries before q·k.
    pub attn_scale: f32,
    pub qk_norm: bool,
    pub post_norms: bool,
    pub final_logit_softcap: Option<f32>,
}

impl Config {
    pub fn from_gguf(g: &GgufFile) -> Result<Self, ModelError> {
        let arch_s = g
            .get_str(crate::gguf::KEY_ARCHITECTURE)?
            .ok_or_else(|| ModelError::MissingKey(crate::gguf::KEY_ARCHITECTURE.into()))?;
        let arch = match arch_s {
            "gemma3" => Arch::Gemma3,
            "llama" => Arch::Llama,
            other => return Err(ModelError::UnsupportedArch(other.to_string())),
        };
        let a = arch.name();
        let req = |k: &str| -> Result<usize, ModelError> {
            let key = format!("{a}.{k}");
            g.get_u64(&key)?
                .map(|v| v as usize)
                .ok_or(ModelError::MissingKey(key))
        };
        let opt_f = |k: &str| g.get_f32(&format!("{a}.{k}"));
        let n_embd = req("embedding_length")?;
        let n_layer = req("block_count")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = g
            .get_u64(&format!("{a}.attention.head_count_kv"))?
            .map(|v| v as usize)
            .unwrap_or(n_head);
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 || n_layer == 0 {
            return Err(ModelError::Invalid(format!(
                "head counts {n_head}/{n_head_kv} or layer count {n_layer} make no model"
            )));
        }
        let head_dim = g
            .get_u64(&format!("{a}.attention.key_length"))?
            .map(|v| v as usize)
            .unwrap_or(n_embd / n_head);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(ModelError::Invalid(format!(
                "head dimension {head_dim} must be even"
            )));
        }
        let n_ff = req("feed_forward_length")?;
        let ctx_train = req("context_length")?;
        let rms_eps = opt_f("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6);
        let n_vocab = g
            .get_u64(&format!("{a}.vocab_size"))?
            .map(|v| v as usize)
            .or_else(|| {
                g.get("tokenizer.ggml.tokens")
                    .and_then(|v| v.as_array())
                    .map(|a| a.len())
            })
            .ok_or_else(|| ModelError::MissingKey("tokenizer.ggml.tokens".into()))?;
        let scale_type = g.get_str(&format!("{a}.rope.scaling.type"))?;
        let factor = opt_f("rope.scaling.factor")?.filter(|f| *f > 0.0);
        let rope_freq_scale = match (scale_type, factor) {
            (Some("linear") | None, Some(f)) => 1.0 / f,
            _ => 1.0,
        };
        Ok(match arch {
            Arch::Gemma3 => {
                let window = req("attention.sliding_window")?;
                // Every sixth layer attends globally; the rest slide.
                let swa_layers = (0..n_layer).map(|il| il % 6 < 5).collect();
                Config {
                    arch,
                    n_embd,
                    n_layer,
                    n_head,
                    n_head_kv,
                    head_dim,
                    n_ff,
                    n_vocab,
                    ctx_train,
                    rms_eps,
                    rope_base: opt_f("rope.freq_base")?.unwrap_or(1_000_000.0),
                    rope_base_swa: 10_000.0,
                    rope_freq_scale,
                    rope_style: RopeStyle::Neox,
                    activation: Activation::GeluTanh,
                    sliding_window: Some(window),
                    swa_layers,
                    embed_scale: (n_embd as f32).sqrt(),
                    attn_scale: 1.0 / (head_dim as f32).sqrt(),
                    qk_norm: true,
                    post_norms: true,
                    final_logit_softcap: opt_f("final_logit_softcapping")?,
                }
            }
            Arch::Llama => {
                let base = opt_f("rope.freq_base")?.unwrap_or(10_000.0);
                Config {
                    arch,
                    n_embd,
                    n_layer,
                    n_head,
                    n_head_kv,
                    head_dim,
                    n_ff,
                    n_vocab,
                    ctx_train,
                    rms_eps: opt_f("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
                    rope_base: base,
                    rope_base_swa: base,
                    rope_freq_scale,
                    rope_style: RopeStyle::Norm,
                    activation: Activation::Silu,
                    sliding_window: None,
                    swa_layers: vec![false; n_layer],
                    embed_scale: 1.0,
                    attn_scale: 1.0 / (head_dim as f32).sqrt(),
                    qk_norm: false,
                    post_norms: false,
                    final_logit_softcap: None,
                }
            }
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
