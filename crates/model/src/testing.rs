//! Test support for this crate and every crate above it: tiny random models of both architectures
//! and every weight type, written with the project's own GGUF writer (the fast tier), and the one
//! place that finds the real default model and the vendored llama.cpp reference (the real-model tier).
#![allow(non_snake_case)]
use crate::gguf::{Array, GgufWriter, TensorData, Value};
use crate::Arch;
use autodidact_kernels::quant::quantize_to_vec;
use autodidact_kernels::GgmlType;
use std::path::PathBuf;

/// The file name the store gives the default model.
const DEFAULT_MODEL_FILE: &str = "gemma3-270m.gguf";

/// The default model's GGUF for real-model tests: `AUTODIDACT_TEST_MODEL` if set (and then only
/// it), else the first of `$AUTODIDACT_HOME/models/gemma3-270m.gguf` and
/// `~/.autodidact/models/gemma3-270m.gguf` that exists.
///
/// `None` (after saying on stderr where it looked and how to get the model) lets a test skip on a
/// developer machine without the model. Under CI (`CI` set) a missing model panics instead: CI
/// pulls the model before the tests, so a silent skip there would hide the whole tier.
pub fn real_model_path() -> Option<PathBuf> {
    // An explicit path is the only candidate: a typo there must not quietly fall back to the store.
    let candidates: Vec<PathBuf> = match std::env::var_os("AUTODIDACT_TEST_MODEL") {
        Some(p) => vec![PathBuf::from(p)],
        None => [
            std::env::var_os("AUTODIDACT_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".autodidact")),
        ]
        .into_iter()
        .flatten()
        .map(|home| home.join("models").join(DEFAULT_MODEL_FILE))
        .collect(),
    };
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Some(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    let why = format!(
        "real model not found (looked at: {}); run `autodidact pull gemma3-270m` or set \
         AUTODIDACT_TEST_MODEL to a GGUF file",
        if looked.is_empty() {
            "nothing: neither AUTODIDACT_TEST_MODEL, AUTODIDACT_HOME nor HOME is set".to_string()
        } else {
            looked.join(", ")
        }
    );
    assert!(std::env::var_os("CI").is_none(), "CI: {why}");
    eprintln!("SKIPPED this real-model test: {why}");
    None
}

/// llama.cpp's outputs for the default model and the perplexity texts, vendored in the
/// repository's `reference/` (a copy of the project's shared reference; a test keeps them equal).
/// `AUTODIDACT_REFERENCE` points the golden tests at another copy.
pub fn reference_dir() -> PathBuf {
    std::env::var_os("AUTODIDACT_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(vendored_reference_dir)
}

/// The repository's own `reference/`, found from this crate's source directory.
pub fn vendored_reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../reference")
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A small deterministic generator (an LCG): tests need reproducible values, not quality.
pub struct Rng(pub u64);
impl Rng {
    pub fn f(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Shape of a tiny model.
#[derive(Debug, Clone, Copy)]
pub struct TinySpec {
    pub arch: Arch,
    /// Type of every matrix (norms are F32).
    pub ty: GgmlType,
    pub seed: u64,
    pub d: usize,
    pub ff: usize,
    pub head_dim: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// At least 259: three specials and 256 byte tokens.
    pub vocab: usize,
    pub layers: usize,
    /// Gemma 3's sliding window.
    pub window: usize,
    /// The context length the file declares.
    pub ctx: usize,
    /// Name two of the spare tokens `<start_of_turn>` and `<end_of_turn>` (control tokens), as
    /// Gemma's vocabulary has them, so a chat turn ends with one token instead of spelled bytes.
    pub chat_markers: bool,
}

impl TinySpec {
    /// Dimensions every block format can hold (multiples of 256).
    pub fn new(arch: Arch, ty: GgmlType, seed: u64) -> Self {
        TinySpec {
            arch,
            ty,
            seed,
            d: 256,
            ff: 512,
            head_dim: 64,
            n_head: 4,
            n_head_kv: 2,
            vocab: 300,
            layers: 6,
            window: 8,
            ctx: 256,
            chat_markers: false,
        }
    }
}

impl TinySpec {
    /// A smaller model (d 64, 2 layers) for tests that run many forward and backward passes.
    pub fn small(arch: Arch, ty: GgmlType, seed: u64) -> Self {
        TinySpec {
            d: 64,
            ff: 128,
            head_dim: 16,
            n_head: 4,
            n_head_kv: 2,
            layers: 2,
            ..TinySpec::new(arch, ty, seed)
        }
    }
}

/// A tiny model: matrices in `ty`, norms in F32; returns the GGUF bytes.
pub fn tiny_model(arch: Arch, ty: GgmlType, seed: u64) -> Vec<u8> {
    tiny_model_with(&TinySpec::new(arch, ty, seed))
}

/// A tiny model of any [`TinySpec`].
pub fn tiny_model_with(spec: &TinySpec) -> Vec<u8> {
    let TinySpec {
        arch,
        ty,
        seed,
        d: D,
        ff: FF,
        head_dim: HD,
        n_head: NH,
        n_head_kv: NKV,
        vocab: VOCAB,
        layers: LAYERS,
        window,
        ctx: _,
        chat_markers,
    } = *spec;
    let mut rng = Rng(seed);
    let a = arch.name();
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String(a.into()));
    w.set(&format!("{a}.embedding_length"), Value::U32(D as u32));
    w.set(&format!("{a}.block_count"), Value::U32(LAYERS as u32));
    w.set(&format!("{a}.feed_forward_length"), Value::U32(FF as u32));
    w.set(&format!("{a}.attention.head_count"), Value::U32(NH as u32));
    w.set(
        &format!("{a}.attention.head_count_kv"),
        Value::U32(NKV as u32),
    );
    w.set(&format!("{a}.attention.key_length"), Value::U32(HD as u32));
    w.set(&format!("{a}.context_length"), Value::U32(spec.ctx as u32));
    w.set(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-6),
    );
    if arch == Arch::Gemma3 {
        w.set(
            &format!("{a}.attention.sliding_window"),
            Value::U32(window as u32),
        );
    }
    let mut tokens: Vec<String> = vec!["<pad>".into(), "<eos>".into(), "<bos>".into()];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
    }
    while tokens.len() < VOCAB {
        tokens.push(format!("t{}", tokens.len()));
    }
    let mut types = vec![3i32, 3, 3];
    types.extend(std::iter::repeat_n(6, 256));
    types.resize(VOCAB, 1);
    if chat_markers && VOCAB >= 261 {
        for (i, name) in [(259, "<start_of_turn>"), (260, "<end_of_turn>")] {
            tokens[i] = name.into();
            types[i] = 3;
        }
    }
    w.set("tokenizer.ggml.model", Value::String("llama".into()));
    w.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    w.set(
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0; VOCAB])),
    );
    w.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    w.set("tokenizer.ggml.bos_token_id", Value::U32(2));
    w.set("tokenizer.ggml.eos_token_id", Value::U32(1));
    let mat = |rng: &mut Rng,
               w: &mut GgufWriter,
               name: &str,
               rows: usize,
               cols: usize,
               scale: f32,
               ty: GgmlType| {
        let vals: Vec<f32> = (0..rows * cols).map(|_| rng.f() * scale).collect();
        w.add_tensor(TensorData {
            name: name.into(),
            dims: if rows == 1 {
                vec![cols as u64]
            } else {
                vec![cols as u64, rows as u64]
            },
            ty,
            data: quantize_to_vec(ty, &vals).expect("tiny dimensions fit every block size"),
        });
    };
    let s = 1.0 / (D as f32).sqrt();
    mat(&mut rng, &mut w, "token_embd.weight", VOCAB, D, 1.0, ty);
    mat(
        &mut rng,
        &mut w,
        "output_norm.weight",
        1,
        D,
        0.2,
        GgmlType::F32,
    );
    for il in 0..LAYERS {
        let n = |x: &str| format!("blk.{il}.{x}.weight");
        for (name, len) in [("attn_norm", D), ("ffn_norm", D)] {
            let vals: Vec<f32> = (0..len).map(|_| 1.0 + 0.1 * rng.f()).collect();
            w.add_tensor(TensorData {
                name: n(name),
                dims: vec![len as u64],
                ty: GgmlType::F32,
                data: f32_bytes(&vals),
            });
        }
        mat(&mut rng, &mut w, &n("attn_q"), NH * HD, D, s, ty);
        mat(&mut rng, &mut w, &n("attn_k"), NKV * HD, D, s, ty);
        mat(&mut rng, &mut w, &n("attn_v"), NKV * HD, D, s, ty);
        mat(&mut rng, &mut w, &n("attn_output"), D, NH * HD, s, ty);
        mat(&mut rng, &mut w, &n("ffn_gate"), FF, D, s, ty);
        mat(&mut rng, &mut w, &n("ffn_up"), FF, D, s, ty);
        mat(
            &mut rng,
            &mut w,
            &n("ffn_down"),
            D,
            FF,
            1.0 / (FF as f32).sqrt(),
            ty,
        );
        if arch == Arch::Gemma3 {
            for (name, len) in [
                ("attn_q_norm", HD),
                ("attn_k_norm", HD),
                ("post_attention_norm", D),
                ("post_ffw_norm", D),
            ] {
                let vals: Vec<f32> = (0..len).map(|_| 1.0 + 0.1 * rng.f()).collect();
                w.add_tensor(TensorData {
                    name: n(name),
                    dims: vec![len as u64],
                    ty: GgmlType::F32,
                    data: f32_bytes(&vals),
                });
            }
        }
    }
    w.to_bytes().expect("an in-memory GGUF always serializes")
}
