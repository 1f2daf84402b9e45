//! Tensors of a decoder-only transformer, bound by their GGUF names and shape-checked at load.
//! Field names mirror the GGUF tensor names (`blk.N.attn_q.weight` → `attn_q`).
use crate::config::{Arch, Config};
use crate::gguf::GgufFile;
use crate::ModelError;
use autodidact_kernels::quant::dequantize_row;
use autodidact_kernels::{
    matmul, matmul_packed, matmul_packed_many, GgmlType, KernelError, Kernels, PackedMatrix,
    QuantizedActs, WeightView,
};

/// A weight matrix: located by offset in the file so it can borrow from the mapping, or repacked
/// at load into the layout of the CPU's fastest kernel.
pub struct Matrix {
    pub ty: GgmlType,
    pub offset: usize,
    pub len: usize,
    pub rows: usize,
    pub cols: usize,
    pub packed: Option<PackedMatrix>,
}

impl Matrix {
    pub fn view<'a>(&self, file: &'a [u8]) -> WeightView<'a> {
        WeightView {
            ty: self.ty,
            data: &file[self.offset..self.offset + self.len],
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// `out (n, rows) = acts (n, cols) · selfᵀ`.
    pub fn matmul(
        &self,
        file: &[u8],
        acts: &mut QuantizedActs,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        match (&self.packed, Kernels::get().packed) {
            (Some(p), Some(gemm)) => matmul_packed(gemm, p, acts, out),
            _ => matmul(&self.view(file), acts, out),
        }
    }

    /// `out_i (n, m_i.rows) = acts (n, cols) · m_iᵀ` for every `(m_i, out_i)`: one parallel
    /// section for all when every matrix is packed, one product after another otherwise.
    pub fn matmul_many(
        file: &[u8],
        jobs: &mut [(&Matrix, &mut [f32])],
        acts: &mut QuantizedActs,
    ) -> Result<(), KernelError> {
        if let Some(gemm) = Kernels::get().packed {
            if jobs.iter().all(|(m, _)| m.packed.is_some()) {
                let mut packed: Vec<(&PackedMatrix, &mut [f32])> = jobs
                    .iter_mut()
                    .filter_map(|(m, out)| Some((m.packed.as_ref()?, &mut **out)))
                    .collect();
                return matmul_packed_many(gemm, &mut packed, acts);
            }
        }
        for (m, out) in jobs.iter_mut() {
            m.matmul(file, acts, out)?;
        }
        Ok(())
    }

    /// Row `r` in f32 (embedding lookups).
    pub fn dequantize_row(
        &self,
        file: &[u8],
        r: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        match &self.packed {
            Some(p) => p.dequantize_row(r, out),
            None => dequantize_row(self.ty, self.view(file).row(r), out),
        }
    }

    /// Rows `r0..r1` in f32, `out` being `(r1 − r0) × cols` (the training backward's tiles).
    pub fn dequantize_rows(
        &self,
        file: &[u8],
        r0: usize,
        r1: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        match &self.packed {
            Some(p) => p.dequantize_rows(r0, r1, out),
            None => {
                let v = self.view(file).rows_range(r0, r1);
                dequantize_row(self.ty, v.data, out)
            }
        }
    }

    /// Repacks into the fast kernel's layout when this CPU has one for the type, and lets the
    /// mapped pages go.
    fn pack(&mut self, g: &GgufFile) {
        if Kernels::get().packed.is_none() {
            return;
        }
        let offset = self.offset;
        let packed = PackedMatrix::pack_releasing(&self.view(g.bytes()), |done| {
            g.release(offset + done.start, done.len())
        });
        if let Some(p) = packed {
            self.packed = Some(p);
            g.release(self.offset, self.len);
        }
    }
}

pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub attn_q: Matrix,
    pub attn_k: Matrix,
    pub attn_v: Matrix,
    pub attn_q_norm: Option<Vec<f32>>,
    pub attn_k_norm: Option<Vec<f32>>,
    pub attn_output: Matrix,
    pub post_attention_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub ffn_gate: Matrix,
    pub ffn_up: Matrix,
    pub ffn_down: Matrix,
    pub post_ffw_norm: Option<Vec<f32>>,
}

pub struct Weights {
    pub token_embd: Matrix,
    pub output_norm: Vec<f32>,
    /// `None` when the output projection is tied to `token_embd`.
    pub output: Option<Matrix>,
    /// Llama 3 RoPE frequency divisors, one per rotated pair.
    pub rope_freqs: Option<Vec<f32>>,
    pub layers: Vec<LayerWeights>,
}

fn matrix(g: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
    let (info, _) = g.tensor_data(name)?;
    let want = vec![cols as u64, rows as u64];
    if info.dims != want {
        return Err(ModelError::TensorShape {
            name: name.into(),
            found: info.dims.clone(),
            expected: want,
        });
    }
    Ok(Matrix {
        ty: info.ty,
        offset: info.offset as usize,
        len: info.size as usize,
        rows,
        cols,
        packed: None,
    })
}

/// A 1-D tensor of any type, decoded to f32.
fn vector(g: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
    let (info, data) = g.tensor_data(name)?;
    if info.dims != [len as u64] {
        return Err(ModelError::TensorShape {
            name: name.into(),
            found: info.dims.clone(),
            expected: vec![len as u64],
        });
    }
    let mut out = vec![0f32; len];
    dequantize_row(info.ty, data, &mut out)?;
    Ok(out)
}

fn opt_vector(g: &GgufFile, name: &str, len: usize) -> Result<Option<Vec<f32>>, ModelError> {
    if g.tensor_info(name).is_none() {
        return Ok(None);
    }
    vector(g, name, len).map(Some)
}

impl Weights {
    pub fn load(g: &GgufFile, c: &Config) -> Result<Self, ModelError> {
        let d = c.n_embd;
        let gemma = c.arch == Arch::Gemma3;
        let mut layers = Vec::with_capacity(c.n_layer);
        for il in 0..c.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            // Gemma 3 requires its extra norms; Llama has none of them.
            let gemma_vec = |s: &str, len: usize| -> Result<Option<Vec<f32>>, ModelError> {
                if gemma {
                    vector(g, &n(s), len).map(Some)
                } else {
                    opt_vector(g, &n(s), len)
                }
            };
            layers.push(LayerWeights {
                attn_norm: vector(g, &n("attn_norm"), d)?,
                attn_q: matrix(g, &n("attn_q"), c.q_dim(), d)?,
                attn_k: matrix(g, &n("attn_k"), c.kv_dim(), d)?,
                attn_v: matrix(g, &n("attn_v"), c.kv_dim(), d)?,
                attn_q_norm: gemma_vec("attn_q_norm", c.head_dim)?,
                attn_k_norm: gemma_vec("attn_k_norm", c.head_dim)?,
                attn_output: matrix(g, &n("attn_output"), d, c.q_dim())?,
                post_attention_norm: gemma_vec("post_attention_norm", d)?,
                ffn_norm: vector(g, &n("ffn_norm"), d)?,
                ffn_gate: matrix(g, &n("ffn_gate"), c.n_ff, d)?,
                ffn_up: matrix(g, &n("ffn_up"), c.n_ff, d)?,
                ffn_down: matrix(g, &n("ffn_down"), d, c.n_ff)?,
                post_ffw_norm: gemma_vec("post_ffw_norm", d)?,
            });
        }
        let output = if g.tensor_info("output.weight").is_some() {
            Some(matrix(g, "output.weight", c.n_vocab, d)?)
        } else {
            None
        };
        let mut w = Weights {
            token_embd: matrix(g, "token_embd.weight", c.n_vocab, d)?,
            output_norm: vector(g, "output_norm.weight", d)?,
            output,
            rope_freqs: opt_vector(g, "rope_freqs.weight", c.head_dim / 2)?,
            layers,
        };
        w.pack(g);
        Ok(w)
    }

    fn pack(&mut self, g: &GgufFile) {
        self.token_embd.pack(g);
        if let Some(o) = &mut self.output {
            o.pack(g);
        }
        for l in &mut self.layers {
            for m in [
                &mut l.attn_q,
                &mut l.attn_k,
                &mut l.attn_v,
                &mut l.attn_output,
                &mut l.ffn_gate,
                &mut l.ffn_up,
                &mut l.ffn_down,
            ] {
                m.pack(g);
            }
        }
    }
}
