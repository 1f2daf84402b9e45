//! Linear layers in training: the frozen base weight (forward on the quantized inference kernels,
//! backward `dX = dY·W` on f32 tiles dequantized as needed) and its trainable LoRA branch.
use crate::TrainError;
use autodidact_kernels::{sgemm, Accumulate, MatMut, MatRef};
use autodidact_model::{LoraAdapter, LoraPair, Matrix, Target};
use rayon::prelude::*;

/// Dequantized tiles hold at most this many elements (16 MiB of f32): enough rows that the GEMM
/// runs at full speed, few enough that the 262k-row output matrix never exists in f32 at once.
const TILE_ELEMS: usize = 1 << 22;

/// `dx (n, cols) += dy (n, rows) · W (rows, cols)` for a frozen base weight in its stored type.
pub fn base_backward(
    w: &Matrix,
    file: &[u8],
    dy: &[f32],
    n: usize,
    dx: &mut [f32],
    buf: &mut Vec<f32>,
) -> Result<(), TrainError> {
    let (rows, cols) = (w.rows, w.cols);
    let tile = (TILE_ELEMS / cols).clamp(1, rows.max(1));
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + tile).min(rows);
        buf.resize((r1 - r0) * cols, 0.0);
        // Chunks of whole 16-row groups, decoded in parallel.
        const ROWS: usize = 256;
        buf.par_chunks_mut(ROWS * cols)
            .enumerate()
            .try_for_each(|(i, chunk)| {
                let a = r0 + i * ROWS;
                w.dequantize_rows(file, a, a + chunk.len() / cols, chunk)
            })?;
        sgemm(
            MatMut::new(dx, n, cols),
            MatRef::strided(&dy[r0..], n, r1 - r0, rows, 1),
            MatRef::new(buf, r1 - r0, cols),
            Accumulate::Add,
            1.0,
        );
        r0 = r1;
    }
    Ok(())
}

/// Dropout on the LoRA branch's input, as PEFT's `lora_dropout`: each (step, layer, target)
/// draws its own mask from a counter-based hash, so the backward pass regenerates it instead of
/// storing it, and a resumed run draws the same masks.
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    pub p: f32,
    pub seed: u64,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Dropout {
    /// `x` with dropped elements zeroed and kept ones scaled by `1 / (1 − p)`.
    fn apply(&self, il: usize, t: Target, x: &[f32]) -> Vec<f32> {
        let keep = 1.0 - self.p;
        let base = splitmix(self.seed ^ ((il as u64) << 40) ^ ((t as u64) << 36));
        x.par_iter()
            .enumerate()
            .map(|(i, &v)| {
                let r = splitmix(base ^ i as u64);
                let u = (r >> 40) as f32 / (1u64 << 24) as f32;
                if u < keep {
                    v / keep
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// The LoRA branch of one layer: which adapter and dropout it runs with.
pub struct LoraCtx<'a> {
    pub adapter: Option<&'a LoraAdapter>,
    pub dropout: Option<Dropout>,
}

impl LoraCtx<'_> {
    fn pair(&self, il: usize, t: Target) -> Option<(&LoraPair, f32)> {
        let ad = self.adapter?;
        let p = ad.layers[il].get(t)?;
        Some((p, ad.scale(p)))
    }

    fn input<'x>(&self, il: usize, t: Target, x: &'x [f32]) -> std::borrow::Cow<'x, [f32]> {
        match self.dropout {
            Some(d) if d.p > 0.0 => std::borrow::Cow::Owned(d.apply(il, t, x)),
            _ => std::borrow::Cow::Borrowed(x),
        }
    }

    /// `y (n, out) += s · drop(x) · Aᵀ · Bᵀ`; returns `u = drop(x) · Aᵀ (n, rank)` for the backward.
    pub fn forward(&self, il: usize, t: Target, x: &[f32], n: usize, y: &mut [f32]) -> Vec<f32> {
        let Some((p, s)) = self.pair(il, t) else {
            return Vec::new();
        };
        let x = self.input(il, t, x);
        let mut u = Vec::new();
        p.apply(s, &x, n, &mut u, y);
        u
    }

    /// Given `dy (n, out)`: `dB += s·dyᵀ·u`, `dA += (s·dy·B)ᵀ·drop(x)`, `dx += drop'(s·dy·B·A)`.
    pub fn backward(&self, g: LoraBackward, grads: &mut LoraAdapter) {
        let LoraBackward {
            il,
            t,
            x,
            u,
            dy,
            n,
            dx,
        } = g;
        let (Some((p, s)), Some(gp)) = (self.pair(il, t), grads.layers[il].get_mut(t)) else {
            return;
        };
        let r = p.rank;
        sgemm(
            MatMut::new(&mut gp.b, p.n_out, r),
            MatRef::new(dy, n, p.n_out).t(),
            MatRef::new(u, n, r),
            Accumulate::Add,
            s,
        );
        let mut du = vec![0f32; n * r];
        sgemm(
            MatMut::new(&mut du, n, r),
            MatRef::new(dy, n, p.n_out),
            MatRef::new(&p.b, p.n_out, r),
            Accumulate::Overwrite,
            s,
        );
        let xd = self.input(il, t, x);
        sgemm(
            MatMut::new(&mut gp.a, r, p.n_in),
            MatRef::new(&du, n, r).t(),
            MatRef::new(&xd, n, p.n_in),
            Accumulate::Add,
            1.0,
        );
        match self.dropout {
            Some(d) if d.p > 0.0 => {
                let mut dxd = vec![0f32; n * p.n_in];
                sgemm(
                    MatMut::new(&mut dxd, n, p.n_in),
                    MatRef::new(&du, n, r),
                    MatRef::new(&p.a, r, p.n_in),
                    Accumulate::Overwrite,
                    1.0,
                );
                // The mask is linear: applying it to the gradient is its own adjoint.
                let masked = d.apply(il, t, &dxd);
                dx.iter_mut().zip(masked).for_each(|(a, b)| *a += b);
            }
            _ => sgemm(
                MatMut::new(dx, n, p.n_in),
                MatRef::new(&du, n, r),
                MatRef::new(&p.a, r, p.n_in),
                Accumulate::Add,
                1.0,
            ),
        }
    }
}

/// The operands of one LoRA backward.
pub struct LoraBackward<'a> {
    pub il: usize,
    pub t: Target,
    /// The branch's input `(n, in)` before dropout.
    pub x: &'a [f32],
    /// `drop(x) · Aᵀ` saved by the forward.
    pub u: &'a [f32],
    pub dy: &'a [f32],
    pub n: usize,
    pub dx: &'a mut [f32],
}
