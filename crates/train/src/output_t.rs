//! The output projection's backward `dh = dlogits · E` on the int8 kernels.
//!
//! With loss on every token, this product over the 262k-row tied embedding is the largest of a
//! step: in f32 it cost more than the rest of the backward together. `E` is transposed once to
//! `(n_embd, n_vocab)` and re-encoded as Q8_0 (blocks of 32 along the vocabulary), so the packed
//! VNNI kernel that runs the forward runs this product too, with the logit gradients quantized
//! per block as the forward quantizes activations. A test bounds the difference to the f32 path.
use crate::TrainError;
use autodidact_kernels::quant::quantize_row;
use autodidact_kernels::{
    matmul_packed, GgmlType, Kernels, PackedMatrix, QuantizedActs, WeightView,
};
use autodidact_model::Model;
use rayon::prelude::*;

/// Vocabulary entries per piece of the transposed matrix. The int8 kernel streams its
/// activations once per 16-row group, so each piece's slice of the logit gradients
/// (`rows × TILE` bytes) must stay in cache: a single 262k-wide matrix thrashed it.
const TILE: usize = 4096;

/// `Eᵀ` in pieces of `TILE` vocabulary columns, each a packed Q8_0 matrix `(n_embd, TILE)`.
pub struct TransposedOutput {
    pieces: Vec<PackedMatrix>,
    n_vocab: usize,
}

impl TransposedOutput {
    /// Builds the transposed Q8_0 copy, when this CPU has the packed int8 kernels.
    pub fn build(model: &Model) -> Result<Option<Self>, TrainError> {
        if Kernels::get().packed.is_none() {
            return Ok(None);
        }
        let c = &model.config;
        let (v, d) = (c.n_vocab, c.n_embd);
        if v % 32 != 0 {
            return Ok(None);
        }
        let w = model
            .weights
            .output
            .as_ref()
            .unwrap_or(&model.weights.token_embd);
        let file = model.gguf.bytes();
        let mut tile = Vec::new();
        let mut pieces = Vec::new();
        for v0 in (0..v).step_by(TILE) {
            let v1 = (v0 + TILE).min(v);
            let n = v1 - v0;
            tile.resize(n * d, 0.0);
            w.dequantize_rows(file, v0, v1, &mut tile)?;
            // Row i of the piece is column i of the tile, quantized along the vocabulary.
            let row_bytes = GgmlType::Q8_0.row_bytes(n)?;
            let mut bytes = vec![0u8; d * row_bytes];
            bytes
                .par_chunks_mut(row_bytes)
                .enumerate()
                .try_for_each(|(i, row)| {
                    let col: Vec<f32> = (0..n).map(|r| tile[r * d + i]).collect();
                    quantize_row(GgmlType::Q8_0, &col, row)
                })?;
            let view = WeightView::new(GgmlType::Q8_0, &bytes, d, n)?;
            match PackedMatrix::pack(&view) {
                Some(p) => pieces.push(p),
                None => return Ok(None),
            }
        }
        Ok(Some(TransposedOutput { pieces, n_vocab: v }))
    }

    /// `dh (n, n_embd) = dlogits (n, n_vocab) · E`, piece by piece.
    pub fn backward(&self, dlogits: &[f32], n: usize, dh: &mut [f32]) -> Result<(), TrainError> {
        let gemm = Kernels::get()
            .packed
            .ok_or_else(|| TrainError::Config("no packed kernels on this CPU".into()))?;
        let d = dh.len() / n.max(1);
        let mut acts = QuantizedActs::default();
        let mut slice = Vec::new();
        let mut part = vec![0f32; n * d];
        dh.fill(0.0);
        for (k, piece) in self.pieces.iter().enumerate() {
            let (v0, w) = (k * TILE, piece.cols);
            slice.clear();
            for r in 0..n {
                let at = r * self.n_vocab + v0;
                slice.extend_from_slice(&dlogits[at..at + w]);
            }
            acts.set(&slice, n, w);
            matmul_packed(gemm, piece, &mut acts, &mut part)?;
            dh.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }
}
