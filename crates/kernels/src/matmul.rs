//! Quantized matrix products `Y = X · Wᵀ` with activations quantized on the fly, rows split across threads.
use crate::blocks::{
    cast, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0, QK_K,
};
use crate::packed::{ActAux, PackKind};
use crate::quant::{quantize_q8_0_row, quantize_q8k_row};
use crate::simd::Kernels;
use crate::{GgmlType, KernelError};
use half::{bf16, f16};
use rayon::prelude::*;

/// A 2-D weight matrix in its stored type: `rows` rows of `cols` elements, row-major.
#[derive(Clone, Copy, Debug)]
pub struct WeightView<'a> {
    pub ty: GgmlType,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> WeightView<'a> {
    pub fn new(
        ty: GgmlType,
        data: &'a [u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self, KernelError> {
        let row_bytes = ty.row_bytes(cols)?;
        if data.len() != row_bytes * rows {
            return Err(KernelError::Shape {
                op: "WeightView::new",
                detail: format!("{} bytes for {rows}x{cols} {}", data.len(), ty.name()),
            });
        }
        Ok(WeightView {
            ty,
            data,
            rows,
            cols,
        })
    }

    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Rows `start..end` as a weight of their own (a slice of the matrix).
    pub fn rows_range(&self, start: usize, end: usize) -> WeightView<'a> {
        let rb = self.row_bytes();
        WeightView {
            ty: self.ty,
            data: &self.data[start * rb..end * rb],
            rows: end - start,
            cols: self.cols,
        }
    }
}

/// Activations `(n, k)` in f32 plus their Q8_0 and Q8_K encodings, each made once on demand and
/// reused by every weight that multiplies the same input (Q, K and V; gate and up).
#[derive(Default)]
pub struct QuantizedActs {
    pub n: usize,
    pub k: usize,
    pub f32: Vec<f32>,
    q8_0: Vec<BlockQ8_0>,
    /// Sum of each Q8_0 block's quants.
    q8_0_sums: Vec<i32>,
    /// Per weight offset in use, the packed kernels' [`ActAux`] of every Q8_0 block.
    q8_0_aux: Vec<(i32, Vec<ActAux>)>,
    q8k: Vec<BlockQ8K>,
    have_q8_0: bool,
    have_q8k: bool,
}

impl QuantizedActs {
    /// Replaces the content with `x` of shape `(n, k)`, keeping allocations.
    pub fn set(&mut self, x: &[f32], n: usize, k: usize) {
        debug_assert_eq!(x.len(), n * k);
        self.n = n;
        self.k = k;
        self.f32.clear();
        self.f32.extend_from_slice(x);
        self.have_q8_0 = false;
        self.have_q8k = false;
    }

    pub fn from_f32(x: &[f32], n: usize, k: usize) -> Self {
        let mut a = QuantizedActs::default();
        a.set(x, n, k);
        a
    }

    fn ensure(&mut self, ty: GgmlType) {
        match ty {
            GgmlType::Q8_0 if !self.have_q8_0 => {
                let zero = BlockQ8_0 {
                    d: f16::ZERO,
                    qs: [0; 32],
                };
                self.q8_0.resize(self.n * self.k / 32, zero);
                self.q8_0
                    .par_chunks_mut((self.k / 32).max(1))
                    .zip(self.f32.par_chunks(self.k.max(1)))
                    .for_each(|(blocks, row)| quantize_q8_0_row(row, blocks));
                self.q8_0_sums.clear();
                self.q8_0_sums.extend(
                    self.q8_0
                        .iter()
                        .map(|b| b.qs.iter().map(|&q| q as i32).sum::<i32>()),
                );
                self.q8_0_aux.clear();
                self.have_q8_0 = true;
            }
            GgmlType::Q8K if !self.have_q8k => {
                let zero = BlockQ8K {
                    d: 0.0,
                    qs: [0; QK_K],
                    bsums: [0; 16],
                };
                self.q8k.resize(self.n * self.k / QK_K, zero);
                self.q8k
                    .par_chunks_mut((self.k / QK_K).max(1))
                    .zip(self.f32.par_chunks(self.k.max(1)))
                    .for_each(|(blocks, row)| quantize_q8k_row(row, blocks));
                self.have_q8k = true;
            }
            _ => {}
        }
    }
}

impl QuantizedActs {
    /// Makes the encodings a packed weight of `kind` reads: Q8_0 blocks with their [`ActAux`]
    /// for the kind's offset, or Q8_K blocks. Each is made once per input and kept (Q, K and V of
    /// one layer read the same ones).
    pub(crate) fn prepare(&mut self, kind: PackKind) {
        if kind.is_k() {
            self.ensure(GgmlType::Q8K);
            return;
        }
        self.ensure(GgmlType::Q8_0);
        let offset = kind.offset();
        if self.q8_0_aux.iter().any(|(o, _)| *o == offset) {
            return;
        }
        let aux = self
            .q8_0
            .iter()
            .zip(&self.q8_0_sums)
            .map(|(b, &sum)| ActAux {
                corr: -offset * sum,
                d: b.d.to_f32(),
            })
            .collect();
        self.q8_0_aux.push((offset, aux));
    }

    /// What a packed weight of `kind` reads, `(Q8_0 blocks, their aux, Q8_K blocks)` with the
    /// unused ones empty; [`QuantizedActs::prepare`] must have run for `kind`.
    pub(crate) fn packed_view(&self, kind: PackKind) -> (&[BlockQ8_0], &[ActAux], &[BlockQ8K]) {
        if kind.is_k() {
            return (&[], &[], &self.q8k);
        }
        let aux = self
            .q8_0_aux
            .iter()
            .find(|(o, _)| *o == kind.offset())
            .map_or(&[][..], |(_, a)| &a[..]);
        (&self.q8_0, aux, &[])
    }
}

/// One activation row in the encoding a weight type needs.
#[derive(Clone, Copy)]
enum ActRow<'a> {
    F32(&'a [f32]),
    Q8_0(&'a [BlockQ8_0]),
    Q8K(&'a [BlockQ8K]),
}

#[inline]
fn dot_row(k: &Kernels, ty: GgmlType, w: &[u8], a: ActRow) -> f32 {
    match (ty, a) {
        (GgmlType::Q4_0, ActRow::Q8_0(a)) => (k.q4_0)(cast::<BlockQ4_0>(w), a),
        (GgmlType::Q5_0, ActRow::Q8_0(a)) => (k.q5_0)(cast::<BlockQ5_0>(w), a),
        (GgmlType::Q8_0, ActRow::Q8_0(a)) => (k.q8_0)(cast::<BlockQ8_0>(w), a),
        (GgmlType::Q4K, ActRow::Q8K(a)) => (k.q4k)(cast::<BlockQ4K>(w), a),
        (GgmlType::Q5K, ActRow::Q8K(a)) => (k.q5k)(cast::<BlockQ5K>(w), a),
        (GgmlType::Q6K, ActRow::Q8K(a)) => (k.q6k)(cast::<BlockQ6K>(w), a),
        (GgmlType::F32, ActRow::F32(a)) => (k.f32)(cast::<f32>(w), a),
        (GgmlType::F16, ActRow::F32(a)) => (k.f16)(cast::<f16>(w), a),
        (GgmlType::BF16, ActRow::F32(a)) => (k.bf16)(cast::<bf16>(w), a),
        _ => unreachable!("activation encoding chosen from the weight type"),
    }
}

#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: each task writes a disjoint set of output elements.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `out (n, rows)` must hold the product of `acts (n, cols)` with a `rows × cols` weight.
pub(crate) fn check_shapes(
    op: &'static str,
    rows: usize,
    cols: usize,
    acts: &QuantizedActs,
    out: &[f32],
) -> Result<(), KernelError> {
    if acts.k != cols || out.len() != acts.n * rows {
        return Err(KernelError::Shape {
            op,
            detail: format!(
                "weight {rows}x{cols}, activations {}x{}, output {}",
                acts.n,
                acts.k,
                out.len()
            ),
        });
    }
    Ok(())
}

/// `out (n, w.rows) = acts (n, k) · wᵀ`, using the process-wide kernels and thread pool.
pub fn matmul(
    w: &WeightView,
    acts: &mut QuantizedActs,
    out: &mut [f32],
) -> Result<(), KernelError> {
    matmul_threads(Kernels::get(), w, acts, out)
}

/// As [`matmul`] with an explicit kernel table (tests compare levels with it).
pub fn matmul_threads(
    kernels: &Kernels,
    w: &WeightView,
    acts: &mut QuantizedActs,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_shapes("matmul", w.rows, w.cols, acts, out)?;
    if w.ty == GgmlType::Q8K {
        return Err(KernelError::Unsupported {
            ty: w.ty,
            op: "matmul",
        });
    }
    let act_ty = w.ty.act_type();
    acts.ensure(act_ty);
    let acts = &*acts;
    let n = acts.n;
    let rows = w.rows;
    let row_bytes = w.row_bytes();
    let act_row = |t: usize| -> ActRow {
        match act_ty {
            GgmlType::Q8_0 => {
                let per = acts.k / 32;
                ActRow::Q8_0(&acts.q8_0[t * per..(t + 1) * per])
            }
            GgmlType::Q8K => {
                let per = acts.k / QK_K;
                ActRow::Q8K(&acts.q8k[t * per..(t + 1) * per])
            }
            _ => ActRow::F32(&acts.f32[t * acts.k..(t + 1) * acts.k]),
        }
    };
    let threads = rayon::current_num_threads().max(1);
    // Enough chunks to balance load, few enough that scheduling stays cheap; a chunk's weights
    // stay in cache while every token passes over them.
    let chunk = rows.div_ceil(threads * 4).clamp(16, 256).min(rows.max(1));
    let ptr = SendPtr(out.as_mut_ptr());
    let nb = w.cols / w.ty.block_len();
    (0..rows.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let p = ptr;
        let r0 = c * chunk;
        let r1 = (r0 + chunk).min(rows);
        let wd = &w.data[r0 * row_bytes..r1 * row_bytes];
        // SAFETY: rows r0..r1 of every token's output row are this task's alone and lie inside
        // `out`, whose length was checked to be n * rows; activations hold n * nb blocks.
        unsafe {
            let o = p.0.add(r0);
            match w.ty {
                GgmlType::Q4_0 => (kernels.gemm_q4_0)(cast(wd), nb, &acts.q8_0, n, o, rows),
                GgmlType::Q5_0 => (kernels.gemm_q5_0)(cast(wd), nb, &acts.q8_0, n, o, rows),
                GgmlType::Q8_0 => (kernels.gemm_q8_0)(cast(wd), nb, &acts.q8_0, n, o, rows),
                GgmlType::Q4K => (kernels.gemm_q4k)(cast(wd), nb, &acts.q8k, n, o, rows),
                GgmlType::Q5K => (kernels.gemm_q5k)(cast(wd), nb, &acts.q8k, n, o, rows),
                GgmlType::Q6K => (kernels.gemm_q6k)(cast(wd), nb, &acts.q8k, n, o, rows),
                _ => {
                    for r in r0..r1 {
                        let wrow = &w.data[r * row_bytes..(r + 1) * row_bytes];
                        for t in 0..n {
                            *p.0.add(t * rows + r) = dot_row(kernels, w.ty, wrow, act_row(t));
                        }
                    }
                }
            }
        }
    });
    Ok(())
}
