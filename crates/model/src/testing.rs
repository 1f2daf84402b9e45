//! Tiny random models of both architectures and every weight type, written with the project's own
//! GGUF writer: the fast test tier of this crate and of every crate above it.
#![allow(non_snake_case)]
use crate::gguf::{Array, GgufWriter, TensorData, Value};
use crate::Arch;
use autodidact_kernels::quant::quantize_to_vec;
use autodidact_kernels::GgmlType;

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
