//! aarch64 products of the Q8_0 family with the i8mm extension's `smmla`: one instruction
//! multiplies a 2×8 block of two weight rows by a 2×8 block of two tokens, so a 2×2 tile of dot
//! products advances 32 multiply-adds at a time (twice `sdot`'s 16). Prefill and batched decoding
//! have token pairs; a lone token (single-sequence decoding) and an odd row go to the `sdot` gemm.
//!
//! Each tile lane accumulates `s · (dx · dy)` block after block exactly as the scalar reference
//! does, so results equal [`crate::reference`] bit for bit.
#![allow(unsafe_op_in_unsafe_fn)]

use super::neon::{dotprod, h2f};
use crate::blocks::{BlockQ4_0, BlockQ5_0, BlockQ8_0};
use core::arch::aarch64::*;
use core::arch::asm;

/// `acc + a · bᵀ` for `a`, `b` as 2×8 row-major signed bytes: lanes `(a0·b0, a0·b1, a1·b0, a1·b1)`.
#[inline(always)]
unsafe fn smmla(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    asm!(
        "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// Two 32-byte rows regrouped as four 2×8 blocks: block `k` holds bytes `8k..8k+8` of each row.
#[inline(always)]
unsafe fn pair_rows(r0: [int8x16_t; 2], r1: [int8x16_t; 2]) -> [int8x16_t; 4] {
    let zip = |a: int8x16_t, b: int8x16_t| {
        let (a, b) = (vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b));
        (
            vreinterpretq_s8_s64(vzip1q_s64(a, b)),
            vreinterpretq_s8_s64(vzip2q_s64(a, b)),
        )
    };
    let (k0, k1) = zip(r0[0], r1[0]);
    let (k2, k3) = zip(r0[1], r1[1]);
    [k0, k1, k2, k3]
}

#[inline(always)]
unsafe fn load_act(y: &BlockQ8_0) -> [int8x16_t; 2] {
    [vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16))]
}

/// A weight block as 32 signed bytes and its scale (the same numbers as the `sdot` kernels use).
trait Unpack {
    unsafe fn unpack(&self) -> ([int8x16_t; 2], f32);
}

impl Unpack for BlockQ8_0 {
    #[inline(always)]
    unsafe fn unpack(&self) -> ([int8x16_t; 2], f32) {
        (load_act(self), h2f(self.d))
    }
}

impl Unpack for BlockQ4_0 {
    #[inline(always)]
    unsafe fn unpack(&self) -> ([int8x16_t; 2], f32) {
        let b = vld1q_u8(self.qs.as_ptr());
        let eight = vdupq_n_s8(8);
        let lo = vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f)));
        let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(b));
        ([vsubq_s8(lo, eight), vsubq_s8(hi, eight)], h2f(self.d))
    }
}

impl Unpack for BlockQ5_0 {
    #[inline(always)]
    unsafe fn unpack(&self) -> ([int8x16_t; 2], f32) {
        let b = vld1q_u8(self.qs.as_ptr());
        let lanes = vld1q_u8(super::neon::BIT_OF_LANE.as_ptr());
        let bit4 = |b0: u8, b1: u8| {
            let spread = vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1));
            vandq_u8(vtstq_u8(spread, lanes), vdupq_n_u8(0x10))
        };
        let lo = vorrq_u8(vandq_u8(b, vdupq_n_u8(0x0f)), bit4(self.qh[0], self.qh[1]));
        let hi = vorrq_u8(vshrq_n_u8::<4>(b), bit4(self.qh[2], self.qh[3]));
        let sixteen = vdupq_n_s8(16);
        (
            [
                vsubq_s8(vreinterpretq_s8_u8(lo), sixteen),
                vsubq_s8(vreinterpretq_s8_u8(hi), sixteen),
            ],
            h2f(self.d),
        )
    }
}

/// `out[t * stride + r] = w_r · a_t` in 2×2 tiles; the odd last row and token through `rest`.
#[inline(always)]
unsafe fn gemm_tiles<B: Unpack>(
    w: &[B],
    nb: usize,
    a: &[BlockQ8_0],
    ntok: usize,
    out: *mut f32,
    stride: usize,
    rest: unsafe fn(&[B], usize, &[BlockQ8_0], usize, *mut f32, usize),
) {
    let rows = w.len() / nb;
    let (r2, t2) = (rows / 2 * 2, ntok / 2 * 2);
    for r in (0..r2).step_by(2) {
        for t in (0..t2).step_by(2) {
            // Lanes (r, t), (r, t+1), (r+1, t), (r+1, t+1).
            let mut acc = vdupq_n_f32(0.0);
            for b in 0..nb {
                let (q0, d0) = w.get_unchecked(r * nb + b).unpack();
                let (q1, d1) = w.get_unchecked((r + 1) * nb + b).unpack();
                let y0 = a.get_unchecked(t * nb + b);
                let y1 = a.get_unchecked((t + 1) * nb + b);
                let wk = pair_rows(q0, q1);
                let yk = pair_rows(load_act(y0), load_act(y1));
                let mut s = vdupq_n_s32(0);
                for k in 0..4 {
                    s = smmla(s, wk[k], yk[k]);
                }
                let (e0, e1) = (h2f(y0.d), h2f(y1.d));
                let dx = vcombine_f32(vdup_n_f32(d0), vdup_n_f32(d1));
                let dy = vcombine_f32(
                    vset_lane_f32::<1>(e1, vdup_n_f32(e0)),
                    vset_lane_f32::<1>(e1, vdup_n_f32(e0)),
                );
                // Multiply then add, not fused: the reference's rounding, lane by lane.
                acc = vaddq_f32(acc, vmulq_f32(vcvtq_f32_s32(s), vmulq_f32(dx, dy)));
            }
            *out.add(t * stride + r) = vgetq_lane_f32::<0>(acc);
            *out.add((t + 1) * stride + r) = vgetq_lane_f32::<1>(acc);
            *out.add(t * stride + r + 1) = vgetq_lane_f32::<2>(acc);
            *out.add((t + 1) * stride + r + 1) = vgetq_lane_f32::<3>(acc);
        }
    }
    if t2 < ntok {
        rest(
            &w[..r2 * nb],
            nb,
            &a[t2 * nb..],
            1,
            out.add(t2 * stride),
            stride,
        );
    }
    if r2 < rows {
        rest(&w[r2 * nb..], nb, a, ntok, out.add(r2), stride);
    }
}

macro_rules! mmla_gemm {
    ($name:ident, $blk:ty) => {
        /// # Safety
        /// The CPU has i8mm and dotprod; `out` is valid at `t * stride + r` for every row and token.
        #[target_feature(enable = "neon,dotprod,i8mm")]
        pub unsafe fn $name(
            w: &[$blk],
            nb: usize,
            a: &[BlockQ8_0],
            ntok: usize,
            out: *mut f32,
            stride: usize,
        ) {
            gemm_tiles(w, nb, a, ntok, out, stride, dotprod::$name)
        }
    };
}
mmla_gemm!(gemm_q4_0, BlockQ4_0);
mmla_gemm!(gemm_q5_0, BlockQ5_0);
mmla_gemm!(gemm_q8_0, BlockQ8_0);
