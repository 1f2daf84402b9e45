//! Weights repacked at load for 16-lane integer dot products: Q4_0, Q5_0 and Q8_0 rows
//! interleaved in groups of 16, so one 512-bit register holds four columns of sixteen rows and a
//! single `vpdpbusd` against a broadcast of four activation bytes advances sixteen dot products.
//!
//! Layout of one group (16 rows, `nb` blocks of 32 columns), 64-byte aligned:
//! - scales: `nb × 16` f16 (`[block][row]`), padded to a multiple of 64 bytes;
//! - then per block the quants as unsigned bytes `v = q + offset`, in eight column quads
//!   `k = 0..8`, each `[row 0..16][4 bytes]` (64 bytes):
//!   - Q8_0: the eight quads as bytes (512 bytes), offset 128;
//!   - Q4_0: four 64-byte nibble planes, plane `p` holding quad `p` in low nibbles and quad
//!     `p + 4` in high nibbles (256 bytes), offset 8;
//!   - Q5_0: the Q4_0 planes, then eight 64-bit masks giving bit 4 of quad `k`'s bytes
//!     (320 bytes), offset 16.
//!
//! The offset is folded out with the activation block's sum: `Σ (v − o)·a = Σ v·a − o·Σ a`.
use crate::blocks::{cast, BlockQ4_0, BlockQ5_0, BlockQ8K, BlockQ8_0, QK_K};
use crate::matmul::{check_shapes, QuantizedActs, SendPtr, WeightView};
use crate::{GgmlType, KernelError};
use half::f16;
use rayon::prelude::*;

/// Rows per interleaved group.
pub const GROUP: usize = 16;

/// Which source encoding a packed matrix holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackKind {
    Q4_0,
    Q5_0,
    Q8_0,
    /// Super-blocks of 256 against Q8_K activations; layouts in [`crate::packed_k`].
    Q4K,
    Q6K,
}

impl PackKind {
    pub fn of(ty: GgmlType) -> Option<PackKind> {
        match ty {
            GgmlType::Q4_0 => Some(PackKind::Q4_0),
            GgmlType::Q5_0 => Some(PackKind::Q5_0),
            GgmlType::Q8_0 => Some(PackKind::Q8_0),
            GgmlType::Q4K => Some(PackKind::Q4K),
            GgmlType::Q6K => Some(PackKind::Q6K),
            _ => None,
        }
    }

    /// Bytes of one block's quants for the 16 rows.
    pub fn block_bytes(self) -> usize {
        match self {
            PackKind::Q4_0 => 256,
            PackKind::Q5_0 => 320,
            PackKind::Q8_0 => 512,
            PackKind::Q4K => crate::packed_k::SUPER_BYTES,
            PackKind::Q6K => crate::packed_k::SUPER6_BYTES,
        }
    }

    /// K-quants: super-blocks of 256 against Q8_K activations.
    pub fn is_k(self) -> bool {
        matches!(self, PackKind::Q4K | PackKind::Q6K)
    }

    /// Columns per block.
    pub fn block_len(self) -> usize {
        match self {
            PackKind::Q4K | PackKind::Q6K => QK_K,
            _ => 32,
        }
    }

    /// What was added to each quant to make it unsigned.
    pub fn offset(self) -> i32 {
        match self {
            PackKind::Q4_0 => 8,
            PackKind::Q5_0 => 16,
            PackKind::Q8_0 => 128,
            PackKind::Q4K | PackKind::Q6K => 0,
        }
    }
}

/// A weight matrix in the interleaved layout above. Owns its memory.
pub struct PackedMatrix {
    pub kind: PackKind,
    pub rows: usize,
    pub cols: usize,
    /// Anonymous memory, page-aligned, on transparent huge pages where the kernel allows.
    buf: memmap2::MmapMut,
}

/// One thread's share of a packed product: groups `g0..` of the matrix against `ntok` tokens.
pub struct PackedTask<'a> {
    pub kind: PackKind,
    /// The task's groups, whole.
    pub data: &'a [u8],
    /// Blocks per row.
    pub nb: usize,
    /// `(ntok, nb)` Q8_0 activation blocks and their `(ntok, nb)` [`ActAux`].
    pub acts: &'a [BlockQ8_0],
    pub aux: &'a [ActAux],
    /// `(ntok, nb)` Q8_K activation blocks, for [`PackKind::Q4K`] (empty otherwise).
    pub acts_k: &'a [BlockQ8K],
    pub ntok: usize,
    /// Output element `(token 0, first row of the task)`; token `t` is `stride` further on.
    pub out: *mut f32,
    pub stride: usize,
    /// Rows of the task that exist (the last group may be partly padding).
    pub rows: usize,
}

/// What the packed kernels need of a Q8_0 activation block besides its quants, kept apart so a
/// kernel reaches each with one broadcast load: the weight offset `o` folded out,
/// `−o · Σ a`, and the block's scale in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct ActAux {
    pub corr: i32,
    pub d: f32,
}

/// Computes a [`PackedTask`]. Unsafe: `out` must be valid for every written index.
pub type PackedGemm = unsafe fn(&PackedTask);

impl PackedMatrix {
    pub(crate) fn scale_bytes(nb: usize) -> usize {
        (nb * GROUP * 2).div_ceil(64) * 64
    }

    pub(crate) fn group_bytes(kind: PackKind, nb: usize) -> usize {
        if kind.is_k() {
            return nb * kind.block_bytes();
        }
        Self::scale_bytes(nb) + nb * kind.block_bytes()
    }

    pub fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.groups() * Self::group_bytes(self.kind, self.cols / self.kind.block_len())]
    }

    /// Repacks `w`, or `None` when its type has no packed form (or memory cannot be mapped).
    pub fn pack(w: &WeightView) -> Option<PackedMatrix> {
        Self::pack_releasing(w, |_| {})
    }

    /// [`PackedMatrix::pack`], calling `done` with each byte range of `w.data` once it has been
    /// read for the last time, a few megabytes at a time: a caller that drops those source pages
    /// as they go never holds a large matrix twice.
    pub fn pack_releasing(
        w: &WeightView,
        mut done: impl FnMut(std::ops::Range<usize>),
    ) -> Option<PackedMatrix> {
        let kind = PackKind::of(w.ty)?;
        let nb = w.cols / kind.block_len();
        let gb = Self::group_bytes(kind, nb);
        let groups = w.rows.div_ceil(GROUP);
        // Populated up front: faulting pages in while both threads write them costs more than the
        // packing itself (zero-page reads turn into copy-on-write faults with TLB shootdowns).
        let mut buf = memmap2::MmapOptions::new()
            .len((groups * gb).max(1))
            .populate()
            .map_anon()
            .ok()?;
        let chunk = (4 << 20) / (GROUP * w.row_bytes()).max(1) + 1;
        for (c, chunk_buf) in buf[..groups * gb].chunks_mut(chunk * gb).enumerate() {
            let first = c * chunk;
            Self::pack_groups(w, kind, first, chunk_buf);
            let rows = (first * GROUP).min(w.rows)..((first + chunk) * GROUP).min(w.rows);
            done(rows.start * w.row_bytes()..rows.end * w.row_bytes());
        }
        Some(PackedMatrix {
            kind,
            rows: w.rows,
            cols: w.cols,
            buf,
        })
    }

    /// Packs groups `first..` of `w` into `dst` (whole groups).
    fn pack_groups(w: &WeightView, kind: PackKind, first: usize, dst: &mut [u8]) {
        let nb = w.cols / kind.block_len();
        let gb = Self::group_bytes(kind, nb);
        let sb = Self::scale_bytes(nb);
        dst.par_chunks_mut(gb).enumerate().for_each(|(g, dst)| {
            let g = first + g;
            if kind.is_k() {
                let rows: Vec<&[u8]> = (g * GROUP..((g + 1) * GROUP).min(w.rows))
                    .map(|r| w.row(r))
                    .collect();
                if kind == PackKind::Q4K {
                    crate::packed_k::pack_group(dst, &rows, nb);
                } else {
                    crate::packed_k::pack_group_q6k(dst, &rows, nb);
                }
                return;
            }
            let (scales, quants) = dst.split_at_mut(sb);
            let bb = kind.block_bytes();
            for b in 0..nb {
                // Padding rows: scale 0, and quants equal to the offset so they read as 0.
                let mut vals = [[kind.offset() as u8; 32]; GROUP];
                for (i, v) in vals.iter_mut().enumerate() {
                    let r = g * GROUP + i;
                    if r < w.rows {
                        let (d, row_vals) = unpack_block(kind, w.row(r), b);
                        scales[(b * GROUP + i) * 2..][..2].copy_from_slice(&d.to_le_bytes());
                        *v = row_vals;
                    }
                }
                put_block(kind, &mut quants[b * bb..(b + 1) * bb], &vals);
            }
        });
    }

    /// Row `r` in f32 (embedding lookups read the tied output matrix this way).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), KernelError> {
        if r >= self.rows || out.len() != self.cols {
            return Err(KernelError::Shape {
                op: "PackedMatrix::dequantize_row",
                detail: format!("row {r} of {}x{} into {}", self.rows, self.cols, out.len()),
            });
        }
        let nb = self.cols / self.kind.block_len();
        let gb = Self::group_bytes(self.kind, nb);
        let g = &self.bytes()[(r / GROUP) * gb..][..gb];
        match self.kind {
            PackKind::Q4K => {
                crate::packed_k::dequantize_row(g, r % GROUP, nb, out);
                return Ok(());
            }
            PackKind::Q6K => {
                crate::packed_k::dequantize_row_q6k(g, r % GROUP, nb, out);
                return Ok(());
            }
            _ => {}
        }
        let (scales, quants) = g.split_at(Self::scale_bytes(nb));
        let i = r % GROUP;
        let bb = self.kind.block_bytes();
        for b in 0..nb {
            let d =
                f16::from_le_bytes([scales[(b * GROUP + i) * 2], scales[(b * GROUP + i) * 2 + 1]]);
            let q = &quants[b * bb..(b + 1) * bb];
            for c in 0..32 {
                let v = get(self.kind, q, i, c) as i32 - self.kind.offset();
                out[b * 32 + c] = d.to_f32() * v as f32;
            }
        }
        Ok(())
    }
}

impl PackedMatrix {
    /// Rows `r0..r1` in f32 (`out` is `(r1 − r0) × cols`): whole groups are decoded block by
    /// block, several times faster than row by row (the training backward reads weights so).
    pub fn dequantize_rows(
        &self,
        r0: usize,
        r1: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let cols = self.cols;
        if r0 > r1 || r1 > self.rows || out.len() != (r1 - r0) * cols {
            return Err(KernelError::Shape {
                op: "PackedMatrix::dequantize_rows",
                detail: format!(
                    "rows {r0}..{r1} of {}x{} into {}",
                    self.rows,
                    cols,
                    out.len()
                ),
            });
        }
        let mut r = r0;
        while r < r1 {
            let whole = r.is_multiple_of(GROUP) && r + GROUP <= r1;
            let o = &mut out[(r - r0) * cols..];
            if whole && !self.kind.is_k() {
                self.dequantize_group(r / GROUP, &mut o[..GROUP * cols]);
                r += GROUP;
            } else {
                self.dequantize_row(r, &mut o[..cols])?;
                r += 1;
            }
        }
        Ok(())
    }

    /// Group `g` (16 rows) of a Q4_0/Q5_0/Q8_0 matrix into `out (16, cols)`.
    fn dequantize_group(&self, g: usize, out: &mut [f32]) {
        let nb = self.cols / 32;
        let gb = Self::group_bytes(self.kind, nb);
        let group = &self.bytes()[g * gb..][..gb];
        let (scales, quants) = group.split_at(Self::scale_bytes(nb));
        let bb = self.kind.block_bytes();
        let off = self.kind.offset() as f32;
        let mut v = [0u8; 32];
        for b in 0..nb {
            let q = &quants[b * bb..(b + 1) * bb];
            for i in 0..GROUP {
                let s = (b * GROUP + i) * 2;
                let d = f16::from_le_bytes([scales[s], scales[s + 1]]).to_f32();
                // The 32 unsigned quants of row i: 8 runs of 4, one per 64-byte lane group.
                for k in 0..8 {
                    for j in 0..4 {
                        v[k * 4 + j] = match self.kind {
                            PackKind::Q8_0 => q[k * 64 + i * 4 + j],
                            _ => {
                                let byte = q[(k % 4) * 64 + i * 4 + j];
                                let lo = if k < 4 { byte & 0x0f } else { byte >> 4 };
                                if self.kind == PackKind::Q5_0 {
                                    let bit = i * 4 + j;
                                    lo | (((q[256 + k * 8 + bit / 8] >> (bit % 8)) & 1) << 4)
                                } else {
                                    lo
                                }
                            }
                        };
                    }
                }
                let o = &mut out[i * self.cols + b * 32..][..32];
                for (o, &u) in o.iter_mut().zip(&v) {
                    *o = d * (u as f32 - off);
                }
            }
        }
    }
}

/// Scale and the 32 unsigned quants (`q + offset`) of block `b` of a source row.
fn unpack_block(kind: PackKind, row: &[u8], b: usize) -> (f16, [u8; 32]) {
    let mut v = [0u8; 32];
    match kind {
        PackKind::Q8_0 => {
            let x = &cast::<BlockQ8_0>(row)[b];
            for c in 0..32 {
                v[c] = (x.qs[c] as i32 + 128) as u8;
            }
            (x.d, v)
        }
        PackKind::Q4_0 => {
            let x = &cast::<BlockQ4_0>(row)[b];
            for c in 0..16 {
                v[c] = x.qs[c] & 0x0f;
                v[c + 16] = x.qs[c] >> 4;
            }
            (x.d, v)
        }
        PackKind::Q5_0 => {
            let x = &cast::<BlockQ5_0>(row)[b];
            let qh = u32::from_le_bytes(x.qh);
            for c in 0..16 {
                v[c] = (x.qs[c] & 0x0f) | ((((qh >> c) & 1) as u8) << 4);
                v[c + 16] = (x.qs[c] >> 4) | ((((qh >> (c + 16)) & 1) as u8) << 4);
            }
            (x.d, v)
        }
        PackKind::Q4K | PackKind::Q6K => unreachable!("K-quant groups are packed by packed_k"),
    }
}

/// Writes one packed block from the 16 rows' unsigned quants; every byte is written once.
fn put_block(kind: PackKind, q: &mut [u8], vals: &[[u8; 32]; GROUP]) {
    match kind {
        PackKind::Q4K | PackKind::Q6K => unreachable!("K-quant groups are packed by packed_k"),
        PackKind::Q8_0 => {
            for k in 0..8 {
                for (i, v) in vals.iter().enumerate() {
                    q[k * 64 + i * 4..][..4].copy_from_slice(&v[4 * k..4 * k + 4]);
                }
            }
        }
        PackKind::Q4_0 | PackKind::Q5_0 => {
            for p in 0..4 {
                for (i, v) in vals.iter().enumerate() {
                    for j in 0..4 {
                        q[p * 64 + i * 4 + j] = (v[4 * p + j] & 0x0f) | (v[4 * (p + 4) + j] << 4);
                    }
                }
            }
            if kind == PackKind::Q5_0 {
                for k in 0..8 {
                    let mut bits = 0u64;
                    for (i, v) in vals.iter().enumerate() {
                        for j in 0..4 {
                            bits |= (((v[4 * k + j] >> 4) & 1) as u64) << (i * 4 + j);
                        }
                    }
                    q[256 + k * 8..][..8].copy_from_slice(&bits.to_le_bytes());
                }
            }
        }
    }
}

/// Unsigned quant of row `i`, column `c` of one packed block.
fn get(kind: PackKind, q: &[u8], i: usize, c: usize) -> u8 {
    let (k, j) = (c / 4, c % 4);
    match kind {
        PackKind::Q4K | PackKind::Q6K => unreachable!("K-quant groups are read by packed_k"),
        PackKind::Q8_0 => q[k * 64 + i * 4 + j],
        PackKind::Q4_0 | PackKind::Q5_0 => {
            let b = q[(k % 4) * 64 + i * 4 + j];
            let lo = if k < 4 { b & 0x0f } else { b >> 4 };
            if kind == PackKind::Q5_0 {
                let bit = i * 4 + j;
                lo | (((q[256 + k * 8 + bit / 8] >> (bit % 8)) & 1) << 4)
            } else {
                lo
            }
        }
    }
}

/// Scalar reference of the packed product, the same integer sums and the same float steps as
/// the SIMD kernels: `acc = fma(float(Σ v·a − o·Σa), d_w · d_a, acc)` block by block.
///
/// # Safety
/// `t.out` must be valid for `t.out[tok * t.stride + r]`, `tok < t.ntok`, `r < t.rows`.
pub unsafe fn gemm_reference(t: &PackedTask) {
    let gb = PackedMatrix::group_bytes(t.kind, t.nb);
    if t.kind.is_k() {
        for r in 0..t.rows {
            let g = &t.data[(r / GROUP) * gb..][..gb];
            for tok in 0..t.ntok {
                let a = &t.acts_k[tok * t.nb..(tok + 1) * t.nb];
                *t.out.add(tok * t.stride + r) = if t.kind == PackKind::Q4K {
                    crate::packed_k::dot_reference(g, r % GROUP, t.nb, a)
                } else {
                    crate::packed_k::dot_reference_q6k(g, r % GROUP, t.nb, a)
                };
            }
        }
        return;
    }
    let sb = PackedMatrix::scale_bytes(t.nb);
    let bb = t.kind.block_bytes();
    for r in 0..t.rows {
        let g = &t.data[(r / GROUP) * gb..][..gb];
        let i = r % GROUP;
        for tok in 0..t.ntok {
            let mut acc = 0f32;
            for b in 0..t.nb {
                let a = &t.acts[tok * t.nb + b];
                let q = &g[sb + b * bb..][..bb];
                let mut s = t.aux[tok * t.nb + b].corr;
                for c in 0..32 {
                    s += get(t.kind, q, i, c) as i32 * a.qs[c] as i32;
                }
                let dw = f16::from_le_bytes([g[(b * GROUP + i) * 2], g[(b * GROUP + i) * 2 + 1]]);
                acc = (s as f32).mul_add(dw.to_f32() * t.aux[tok * t.nb + b].d, acc);
            }
            *t.out.add(tok * t.stride + r) = acc;
        }
    }
}

/// `out (n, w.rows) = acts (n, k) · wᵀ` with `gemm` over groups split across threads.
pub fn matmul_packed(
    gemm: PackedGemm,
    w: &PackedMatrix,
    acts: &mut QuantizedActs,
    out: &mut [f32],
) -> Result<(), KernelError> {
    matmul_packed_many(gemm, &mut [(w, out)], acts)
}

/// Several products of the same activations in one parallel section:
/// `out_i (n, w_i.rows) = acts (n, k) · w_iᵀ` for each `(w_i, out_i)`. Q, K and V (or gate and
/// up) then cost one fork-join instead of three, and the small matrices share the threads.
pub fn matmul_packed_many(
    gemm: PackedGemm,
    jobs: &mut [(&PackedMatrix, &mut [f32])],
    acts: &mut QuantizedActs,
) -> Result<(), KernelError> {
    for (w, out) in jobs.iter() {
        check_shapes("matmul_packed", w.rows, w.cols, acts, out)?;
        acts.prepare(w.kind);
    }
    let acts = &*acts;
    let n = acts.n;
    let threads = rayon::current_num_threads().max(1);
    // (job, first group, end group) of every task; each matrix in about 4 tasks per thread.
    let mut tasks = Vec::new();
    for (j, (w, _)) in jobs.iter().enumerate() {
        let groups = w.groups();
        let chunk = groups.div_ceil(threads * 4).clamp(1, 32);
        tasks.extend(
            (0..groups)
                .step_by(chunk)
                .map(|g0| (j, g0, (g0 + chunk).min(groups))),
        );
    }
    // The kernels write through raw pointers, each task to rows of its own.
    let (ws, outs): (Vec<&PackedMatrix>, Vec<SendPtr>) = jobs
        .iter_mut()
        .map(|(w, o)| (*w, SendPtr(o.as_mut_ptr())))
        .unzip();
    tasks.into_par_iter().for_each(|(j, g0, g1)| {
        let w = ws[j];
        let (blocks, aux, acts_k) = acts.packed_view(w.kind);
        let nb = w.cols / w.kind.block_len();
        let gb = PackedMatrix::group_bytes(w.kind, nb);
        let task = PackedTask {
            kind: w.kind,
            data: &w.bytes()[g0 * gb..g1 * gb],
            nb,
            acts: blocks,
            aux,
            acts_k,
            ntok: n,
            // SAFETY: row g0 * GROUP < rows, inside `out` (checked to be n * rows long).
            out: unsafe { outs[j].0.add(g0 * GROUP) },
            stride: w.rows,
            rows: (g1 * GROUP).min(w.rows) - g0 * GROUP,
        };
        // SAFETY: the task's rows of every token are its alone and lie inside its `out`.
        unsafe { gemm(&task) }
    });
    Ok(())
}
