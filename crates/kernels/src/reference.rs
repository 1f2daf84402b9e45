//! Scalar reference dot products between one weight row and one activation row.
//!
//! These define the arithmetic; every SIMD kernel must agree with them (integer parts exactly,
//! float accumulation within rounding).
use crate::blocks::{BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0};
use crate::quant::scale_min_k4;
use half::{bf16, f16};

pub fn dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut s = 0i32;
        for j in 0..16 {
            s += ((x.qs[j] & 0x0f) as i32 - 8) * y.qs[j] as i32;
            s += ((x.qs[j] >> 4) as i32 - 8) * y.qs[j + 16] as i32;
        }
        sum += s as f32 * (x.d.to_f32() * y.d.to_f32());
    }
    sum
}

pub fn dot_q5_0_q8_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let qh = u32::from_le_bytes(x.qh);
        let mut s = 0i32;
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            s += (((x.qs[j] & 0x0f) as u32 | h0) as i32 - 16) * y.qs[j] as i32;
            s += (((x.qs[j] >> 4) as u32 | h1) as i32 - 16) * y.qs[j + 16] as i32;
        }
        sum += s as f32 * (x.d.to_f32() * y.d.to_f32());
    }
    sum
}

pub fn dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let s: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&p, &q)| p as i32 * q as i32)
                .sum();
        sum += s as f32 * (x.d.to_f32() * y.d.to_f32());
    }
    sum
}

pub fn dot_q4k_q8k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut sumi = 0i32;
        let mut summ = 0i32;
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &x.scales);
            let q = &x.qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            let mut s = 0i32;
            for l in 0..32 {
                s += ((q[l] >> shift) & 0x0f) as i32 * y.qs[32 * j + l] as i32;
            }
            sumi += sc as i32 * s;
            summ += m as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
        }
        sum += y.d * x.d.to_f32() * sumi as f32 - y.d * x.dmin.to_f32() * summ as f32;
    }
    sum
}

pub fn dot_q5k_q8k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut sumi = 0i32;
        let mut summ = 0i32;
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &x.scales);
            let q = &x.qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            let mut s = 0i32;
            for l in 0..32 {
                let hi = if x.qh[l] & (1 << j) != 0 { 16 } else { 0 };
                s += (((q[l] >> shift) & 0x0f) as i32 + hi) * y.qs[32 * j + l] as i32;
            }
            sumi += sc as i32 * s;
            summ += m as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
        }
        sum += y.d * x.d.to_f32() * sumi as f32 - y.d * x.dmin.to_f32() * summ as f32;
    }
    sum
}

/// The 6-bit value of element `i` (0..256) of a Q6_K block, unbiased (-32..32).
#[inline]
pub fn q6k_value(x: &BlockQ6K, i: usize) -> i32 {
    let n = i / 128;
    let r = i % 128;
    let l = r % 32;
    let part = r / 32;
    let ql = x.ql[64 * n + l + 32 * (part % 2)];
    let low = if part < 2 { ql & 0x0f } else { ql >> 4 };
    let high = (x.qh[32 * n + l] >> (2 * part)) & 3;
    (low | (high << 4)) as i32 - 32
}

pub fn dot_q6k_q8k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let mut s = 0i32;
            for l in 0..16 {
                s += q6k_value(x, 16 * j + l) * y.qs[16 * j + l] as i32;
            }
            sumi += x.scales[j] as i32 * s;
        }
        sum += y.d * x.d.to_f32() * sumi as f32;
    }
    sum
}

pub fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    w.iter().zip(a).map(|(x, y)| x * y).sum()
}

pub fn dot_f16_f32(w: &[f16], a: &[f32]) -> f32 {
    w.iter().zip(a).map(|(x, y)| x.to_f32() * y).sum()
}

pub fn dot_bf16_f32(w: &[bf16], a: &[f32]) -> f32 {
    w.iter().zip(a).map(|(x, y)| x.to_f32() * y).sum()
}

/// `y += a * x` with `x` in f16.
pub fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
    for (v, h) in y.iter_mut().zip(x) {
        *v += a * h.to_f32();
    }
}

/// Scalar `gemm`s with the SIMD ones' contract: `out[t * stride + r] = w_r · a_t`.
macro_rules! scalar_gemm {
    ($name:ident, $blk:ty, $act:ty, $dot:ident) => {
        /// # Safety
        /// `out` must be valid for writes at `t * stride + r` for every row `r` of `w` and `t < ntok`,
        /// and `a` must hold `ntok * nb` blocks.
        pub unsafe fn $name(
            w: &[$blk],
            nb: usize,
            a: &[$act],
            ntok: usize,
            out: *mut f32,
            stride: usize,
        ) {
            for r in 0..w.len() / nb {
                for t in 0..ntok {
                    // SAFETY: the caller guarantees the output index is in bounds.
                    unsafe {
                        *out.add(t * stride + r) =
                            $dot(&w[r * nb..(r + 1) * nb], &a[t * nb..(t + 1) * nb])
                    };
                }
            }
        }
    };
}
scalar_gemm!(gemm_q4_0, BlockQ4_0, BlockQ8_0, dot_q4_0_q8_0);
scalar_gemm!(gemm_q5_0, BlockQ5_0, BlockQ8_0, dot_q5_0_q8_0);
scalar_gemm!(gemm_q8_0, BlockQ8_0, BlockQ8_0, dot_q8_0_q8_0);
scalar_gemm!(gemm_q4k, BlockQ4K, BlockQ8K, dot_q4k_q8k);
scalar_gemm!(gemm_q5k, BlockQ5K, BlockQ8K, dot_q5k_q8k);
scalar_gemm!(gemm_q6k, BlockQ6K, BlockQ8K, dot_q6k_q8k);
