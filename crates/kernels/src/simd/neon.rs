//! aarch64 dot products: plain NEON, and the dotprod extension's `sdot`. One body, compiled per
//! level by `neon_kernels!`. The integer sums are exact and the float steps are the scalar
//! reference's, in its order, so every quantized product equals [`crate::reference`] bit for bit.
//!
//! `sdot` and the f16 widening are inline assembly: `vdotq_s32` is unstable in Rust 1.96 and the
//! f16 vector types are too. Both instructions need no more than the function's target features
//! (`fcvt`/`fcvtl` are base AArch64; `sdot` only runs in the `dotprod` module).
#![allow(unsafe_op_in_unsafe_fn)]

use core::arch::aarch64::*;
use core::arch::asm;
use half::f16;

/// A scale from f16, exactly: `fcvt` is base AArch64, where `half` falls back to software on
/// cores without FEAT_FP16 (Cortex-A53/A55 class).
#[inline(always)]
pub(crate) unsafe fn h2f(h: f16) -> f32 {
    let out: f32;
    asm!(
        "fcvt {o:s}, {i:h}",
        i = in(vreg) h.to_bits() as i16,
        o = lateout(vreg) out,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// Eight f16 values at `p` widened to f32, low four first.
#[inline(always)]
pub(crate) unsafe fn widen_f16x8(p: *const f16) -> (float32x4_t, float32x4_t) {
    let h = vld1q_u16(p as *const u16);
    let lo: float32x4_t;
    let hi: float32x4_t;
    asm!(
        "fcvtl {lo:v}.4s, {h:v}.4h",
        "fcvtl2 {hi:v}.4s, {h:v}.8h",
        h = in(vreg) h,
        // Written before `h` is last read, so not `lateout`: it must not share `h`'s register.
        lo = out(vreg) lo,
        hi = lateout(vreg) hi,
        options(pure, nomem, nostack, preserves_flags)
    );
    (lo, hi)
}

/// `acc + Σ a·b` over 16 signed bytes, four products per lane, with `sdot`. Only inlined into
/// functions compiled with `dotprod`.
#[inline(always)]
unsafe fn dot16_sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// `acc + Σ a·b` over 16 signed bytes with base NEON: widening multiplies into i16 (a product of
/// two bytes fits), pairs added into i32 lanes.
#[inline(always)]
unsafe fn dot16_mull(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

/// Bit `i % 8` of each byte lane `i`: with a broadcast byte, `vtstq_u8` spreads its bits over lanes.
pub(crate) const BIT_OF_LANE: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

macro_rules! neon_kernels {
    ($modname:ident, $features:literal, $dot16:ident) => {
        pub mod $modname {
            use super::{h2f, widen_f16x8, BIT_OF_LANE};
            use crate::blocks::{
                BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0,
            };
            use core::arch::aarch64::*;
            use half::{bf16, f16};

            #[inline(always)]
            unsafe fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
                super::$dot16(acc, a, b)
            }

            /// Σ q·y over 32 signed bytes (`q` as elements 0..16 and 16..32), as four partial sums.
            #[inline(always)]
            unsafe fn dot32(q: [int8x16_t; 2], y: *const i8) -> int32x4_t {
                let acc = dot16(vdupq_n_s32(0), q[0], vld1q_s8(y));
                dot16(acc, q[1], vld1q_s8(y.add(16)))
            }

            /// Low nibbles (elements 0..16) and high nibbles (16..32) of 16 bytes.
            #[inline(always)]
            unsafe fn nibbles(p: *const u8) -> [uint8x16_t; 2] {
                let b = vld1q_u8(p);
                [vandq_u8(b, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(b)]
            }

            /// 0x10 in each byte lane whose bit is set in `bits` (lane `i` ↔ bit `i`).
            #[inline(always)]
            unsafe fn bit4_of(bits: [u8; 2]) -> uint8x16_t {
                let spread = vcombine_u8(vdup_n_u8(bits[0]), vdup_n_u8(bits[1]));
                let set = vtstq_u8(spread, vld1q_u8(BIT_OF_LANE.as_ptr()));
                vandq_u8(set, vdupq_n_u8(0x10))
            }

            /// A block of 32 weights as signed bytes plus its scale, for the Q8_0-activation family.
            #[inline(always)]
            unsafe fn unpack_q4_0(x: &BlockQ4_0) -> ([int8x16_t; 2], f32) {
                let [lo, hi] = nibbles(x.qs.as_ptr());
                let eight = vdupq_n_s8(8);
                (
                    [
                        vsubq_s8(vreinterpretq_s8_u8(lo), eight),
                        vsubq_s8(vreinterpretq_s8_u8(hi), eight),
                    ],
                    h2f(x.d),
                )
            }
            #[inline(always)]
            unsafe fn unpack_q5_0(x: &BlockQ5_0) -> ([int8x16_t; 2], f32) {
                let [lo, hi] = nibbles(x.qs.as_ptr());
                let lo = vorrq_u8(lo, bit4_of([x.qh[0], x.qh[1]]));
                let hi = vorrq_u8(hi, bit4_of([x.qh[2], x.qh[3]]));
                let sixteen = vdupq_n_s8(16);
                (
                    [
                        vsubq_s8(vreinterpretq_s8_u8(lo), sixteen),
                        vsubq_s8(vreinterpretq_s8_u8(hi), sixteen),
                    ],
                    h2f(x.d),
                )
            }
            #[inline(always)]
            unsafe fn unpack_q8_0(x: &BlockQ8_0) -> ([int8x16_t; 2], f32) {
                let p = x.qs.as_ptr();
                ([vld1q_s8(p), vld1q_s8(p.add(16))], h2f(x.d))
            }

            macro_rules! dot_q8_family {
                ($name:ident, $blk:ty, $unpack:ident) => {
                    #[target_feature(enable = $features)]
                    pub unsafe fn $name(w: &[$blk], a: &[BlockQ8_0]) -> f32 {
                        let mut sum = 0.0f32;
                        for (x, y) in w.iter().zip(a) {
                            let (q, dx) = $unpack(x);
                            let s = vaddvq_s32(dot32(q, y.qs.as_ptr()));
                            sum += s as f32 * (dx * h2f(y.d));
                        }
                        sum
                    }
                };
            }
            dot_q8_family!(dot_q4_0_q8_0, BlockQ4_0, unpack_q4_0);
            dot_q8_family!(dot_q5_0_q8_0, BlockQ5_0, unpack_q5_0);
            dot_q8_family!(dot_q8_0_q8_0, BlockQ8_0, unpack_q8_0);

            /// `Σ m_j · (bsums[2j] + bsums[2j+1])` and the eight scales of a Q4_K/Q5_K block.
            #[inline(always)]
            fn k4_scales(s: &[u8; 12], y: &BlockQ8K) -> ([i32; 8], i32) {
                let mut sc = [0i32; 8];
                let mut summ = 0i32;
                for j in 0..8 {
                    let (a, m) = crate::quant::scale_min_k4(j, s);
                    sc[j] = a as i32;
                    summ += m as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
                }
                (sc, summ)
            }

            #[inline(always)]
            unsafe fn load32(p: *const u8) -> [uint8x16_t; 2] {
                [vld1q_u8(p), vld1q_u8(p.add(16))]
            }

            #[inline(always)]
            unsafe fn s8(v: [uint8x16_t; 2]) -> [int8x16_t; 2] {
                [vreinterpretq_s8_u8(v[0]), vreinterpretq_s8_u8(v[1])]
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_q4k_q8k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
                let mut sum = 0.0f32;
                let m4 = vdupq_n_u8(0x0f);
                for (x, y) in w.iter().zip(a) {
                    let (sc, summ) = k4_scales(&x.scales, y);
                    let mut acc = vdupq_n_s32(0);
                    for j in 0..4 {
                        let q = load32(x.qs.as_ptr().add(32 * j));
                        let lo = [vandq_u8(q[0], m4), vandq_u8(q[1], m4)];
                        let hi = [vshrq_n_u8::<4>(q[0]), vshrq_n_u8::<4>(q[1])];
                        let yq = y.qs.as_ptr().add(64 * j);
                        acc = vmlaq_n_s32(acc, dot32(s8(lo), yq), sc[2 * j]);
                        acc = vmlaq_n_s32(acc, dot32(s8(hi), yq.add(32)), sc[2 * j + 1]);
                    }
                    let sumi = vaddvq_s32(acc);
                    sum += y.d * h2f(x.d) * sumi as f32 - y.d * h2f(x.dmin) * summ as f32;
                }
                sum
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_q5k_q8k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
                let mut sum = 0.0f32;
                let m4 = vdupq_n_u8(0x0f);
                let one = vdupq_n_u8(1);
                let two = vdupq_n_u8(2);
                for (x, y) in w.iter().zip(a) {
                    let (sc, summ) = k4_scales(&x.scales, y);
                    // Bit j of qh[l] is the fifth bit of element l of sub-block j: two bits per
                    // pair of sub-blocks, shifted down as the pairs go by.
                    let mut qh = load32(x.qh.as_ptr());
                    let mut acc = vdupq_n_s32(0);
                    for j in 0..4 {
                        let q = load32(x.qs.as_ptr().add(32 * j));
                        let mut lo = [vandq_u8(q[0], m4), vandq_u8(q[1], m4)];
                        let mut hi = [vshrq_n_u8::<4>(q[0]), vshrq_n_u8::<4>(q[1])];
                        for h in 0..2 {
                            lo[h] = vorrq_u8(lo[h], vshlq_n_u8::<4>(vandq_u8(qh[h], one)));
                            hi[h] = vorrq_u8(hi[h], vshlq_n_u8::<3>(vandq_u8(qh[h], two)));
                            qh[h] = vshrq_n_u8::<2>(qh[h]);
                        }
                        let yq = y.qs.as_ptr().add(64 * j);
                        acc = vmlaq_n_s32(acc, dot32(s8(lo), yq), sc[2 * j]);
                        acc = vmlaq_n_s32(acc, dot32(s8(hi), yq.add(32)), sc[2 * j + 1]);
                    }
                    let sumi = vaddvq_s32(acc);
                    sum += y.d * h2f(x.d) * sumi as f32 - y.d * h2f(x.dmin) * summ as f32;
                }
                sum
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_q6k_q8k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
                let mut sum = 0.0f32;
                let m4 = vdupq_n_u8(0x0f);
                let m3 = vdupq_n_u8(0x03);
                let bias = vdupq_n_s8(32);
                for (x, y) in w.iter().zip(a) {
                    let mut acc = vdupq_n_s32(0);
                    for n in 0..2 {
                        let ql0 = load32(x.ql.as_ptr().add(64 * n));
                        let ql1 = load32(x.ql.as_ptr().add(64 * n + 32));
                        let qh = load32(x.qh.as_ptr().add(32 * n));
                        for h in 0..2 {
                            // The four 32-value parts of this half; each 16-byte lane group is
                            // one sub-block of 16 with its own scale.
                            let parts = [
                                vorrq_u8(
                                    vandq_u8(ql0[h], m4),
                                    vshlq_n_u8::<4>(vandq_u8(qh[h], m3)),
                                ),
                                vorrq_u8(
                                    vandq_u8(ql1[h], m4),
                                    vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(qh[h]), m3)),
                                ),
                                vorrq_u8(
                                    vshrq_n_u8::<4>(ql0[h]),
                                    vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(qh[h]), m3)),
                                ),
                                vorrq_u8(
                                    vshrq_n_u8::<4>(ql1[h]),
                                    vshlq_n_u8::<4>(vshrq_n_u8::<6>(qh[h])),
                                ),
                            ];
                            for (p, q) in parts.iter().enumerate() {
                                let base = 128 * n + 32 * p + 16 * h;
                                let q = vsubq_s8(vreinterpretq_s8_u8(*q), bias);
                                let yv = vld1q_s8(y.qs.as_ptr().add(base));
                                let d = dot16(vdupq_n_s32(0), q, yv);
                                acc = vmlaq_n_s32(acc, d, x.scales[base / 16] as i32);
                            }
                        }
                    }
                    let sumi = vaddvq_s32(acc);
                    sum += y.d * h2f(x.d) * sumi as f32;
                }
                sum
            }

            /// Starts fetching the cache line at `p` into L1 (a hint: never faults).
            #[inline(always)]
            unsafe fn prefetch(p: *const i8) {
                core::arch::asm!(
                    "prfm pldl1keep, [{p}]",
                    p = in(reg) p,
                    options(nostack, preserves_flags, readonly)
                );
            }

            /// `out[t * stride + r] = w_r · a_t` for all rows of `w` (`nb` blocks each) and `ntok`
            /// activation rows, each sum as [`dot_q8_family`]'s; each weight block is unpacked
            /// once for four tokens.
            macro_rules! gemm_q8_family {
                ($name:ident, $blk:ty, $unpack:ident, $dot:ident) => {
                    #[target_feature(enable = $features)]
                    pub unsafe fn $name(
                        w: &[$blk],
                        nb: usize,
                        a: &[BlockQ8_0],
                        ntok: usize,
                        out: *mut f32,
                        stride: usize,
                    ) {
                        let rows = w.len() / nb;
                        let t4 = ntok / 4 * 4;
                        for r in 0..rows {
                            let wr = &w[r * nb..(r + 1) * nb];
                            let mut t = 0;
                            while t < t4 {
                                let mut acc = [0f32; 4];
                                for b in 0..nb {
                                    let (q, dx) = $unpack(wr.get_unchecked(b));
                                    for u in 0..4 {
                                        let y = a.get_unchecked((t + u) * nb + b);
                                        let s = vaddvq_s32(dot32(q, y.qs.as_ptr()));
                                        acc[u] += s as f32 * (dx * h2f(y.d));
                                    }
                                }
                                for u in 0..4 {
                                    *out.add((t + u) * stride + r) = acc[u];
                                }
                                t += 4;
                            }
                        }
                        // Leftover tokens (decode's single token): four rows at a time share
                        // each activation block, four independent accumulation chains.
                        for t in t4..ntok {
                            let at = &a[t * nb..(t + 1) * nb];
                            let mut r = 0;
                            while r + 4 <= rows {
                                let mut acc = [0f32; 4];
                                // The four rows are one contiguous span; fetch the span two
                                // groups ahead so memory latency overlaps this group's arithmetic.
                                let span = w.as_ptr().add(r * nb) as *const i8;
                                let span_bytes = 4 * nb * core::mem::size_of::<$blk>();
                                let ahead = span.wrapping_add(2 * span_bytes);
                                for b in 0..nb {
                                    let y = at.get_unchecked(b);
                                    let dy = h2f(y.d);
                                    let pf = b * span_bytes / nb;
                                    prefetch(ahead.wrapping_add(pf));
                                    prefetch(ahead.wrapping_add(pf + 64));
                                    let y0 = vld1q_s8(y.qs.as_ptr());
                                    let y1 = vld1q_s8(y.qs.as_ptr().add(16));
                                    for u in 0..4 {
                                        let (q, dx) = $unpack(w.get_unchecked((r + u) * nb + b));
                                        let d = dot16(dot16(vdupq_n_s32(0), q[0], y0), q[1], y1);
                                        acc[u] += vaddvq_s32(d) as f32 * (dx * dy);
                                    }
                                }
                                for u in 0..4 {
                                    *out.add(t * stride + r + u) = acc[u];
                                }
                                r += 4;
                            }
                            while r < rows {
                                *out.add(t * stride + r) = $dot(&w[r * nb..(r + 1) * nb], at);
                                r += 1;
                            }
                        }
                    }
                };
            }

            gemm_q8_family!(gemm_q4_0, BlockQ4_0, unpack_q4_0, dot_q4_0_q8_0);
            gemm_q8_family!(gemm_q5_0, BlockQ5_0, unpack_q5_0, dot_q5_0_q8_0);
            gemm_q8_family!(gemm_q8_0, BlockQ8_0, unpack_q8_0, dot_q8_0_q8_0);

            /// As the Q8_0 family's gemm for the K-quants, one row-token dot at a time (inlined).
            macro_rules! gemm_k_family {
                ($name:ident, $blk:ty, $dot:ident) => {
                    #[target_feature(enable = $features)]
                    pub unsafe fn $name(
                        w: &[$blk],
                        nb: usize,
                        a: &[BlockQ8K],
                        ntok: usize,
                        out: *mut f32,
                        stride: usize,
                    ) {
                        let rows = w.len() / nb;
                        let row_bytes = nb * core::mem::size_of::<$blk>();
                        for r in 0..rows {
                            let wr = &w[r * nb..(r + 1) * nb];
                            // Rows are contiguous: fetch the one four ahead while this one is
                            // in the arithmetic.
                            let ahead = (wr.as_ptr() as *const i8).wrapping_add(4 * row_bytes);
                            let mut off = 0;
                            while off < row_bytes {
                                prefetch(ahead.wrapping_add(off));
                                off += 64;
                            }
                            for t in 0..ntok {
                                *out.add(t * stride + r) = $dot(wr, &a[t * nb..(t + 1) * nb]);
                            }
                        }
                    }
                };
            }
            gemm_k_family!(gemm_q4k, BlockQ4K, dot_q4k_q8k);
            gemm_k_family!(gemm_q5k, BlockQ5K, dot_q5k_q8k);
            gemm_k_family!(gemm_q6k, BlockQ6K, dot_q6k_q8k);

            #[target_feature(enable = $features)]
            pub unsafe fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
                let n = w.len().min(a.len());
                let (wp, ap) = (w.as_ptr(), a.as_ptr());
                let mut acc = [vdupq_n_f32(0.0); 4];
                let mut i = 0;
                while i + 16 <= n {
                    for u in 0..4 {
                        let (x, y) = (vld1q_f32(wp.add(i + 4 * u)), vld1q_f32(ap.add(i + 4 * u)));
                        acc[u] = vfmaq_f32(acc[u], x, y);
                    }
                    i += 16;
                }
                let mut s = vaddvq_f32(vaddq_f32(
                    vaddq_f32(acc[0], acc[1]),
                    vaddq_f32(acc[2], acc[3]),
                ));
                while i < n {
                    s += w[i] * a[i];
                    i += 1;
                }
                s
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_f16_f32(w: &[f16], a: &[f32]) -> f32 {
                let n = w.len().min(a.len());
                let ap = a.as_ptr();
                let mut acc = [vdupq_n_f32(0.0); 2];
                let mut i = 0;
                while i + 8 <= n {
                    let (lo, hi) = widen_f16x8(w.as_ptr().add(i));
                    acc[0] = vfmaq_f32(acc[0], lo, vld1q_f32(ap.add(i)));
                    acc[1] = vfmaq_f32(acc[1], hi, vld1q_f32(ap.add(i + 4)));
                    i += 8;
                }
                let mut s = vaddvq_f32(vaddq_f32(acc[0], acc[1]));
                while i < n {
                    s += h2f(w[i]) * a[i];
                    i += 1;
                }
                s
            }

            /// `y += a * x` with `x` in f16 (attention's value accumulation).
            #[target_feature(enable = $features)]
            pub unsafe fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
                let n = y.len().min(x.len());
                let av = vdupq_n_f32(a);
                let yp = y.as_mut_ptr();
                let mut i = 0;
                while i + 8 <= n {
                    let (lo, hi) = widen_f16x8(x.as_ptr().add(i));
                    vst1q_f32(yp.add(i), vfmaq_f32(vld1q_f32(yp.add(i)), av, lo));
                    vst1q_f32(yp.add(i + 4), vfmaq_f32(vld1q_f32(yp.add(i + 4)), av, hi));
                    i += 8;
                }
                while i < n {
                    y[i] = a.mul_add(h2f(x[i]), y[i]);
                    i += 1;
                }
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_bf16_f32(w: &[bf16], a: &[f32]) -> f32 {
                let n = w.len().min(a.len());
                let ap = a.as_ptr();
                let mut acc = [vdupq_n_f32(0.0); 2];
                let mut i = 0;
                while i + 8 <= n {
                    // bf16 is the top half of an f32: widen by shifting into the high bits.
                    let h = vld1q_u16(w.as_ptr().add(i) as *const u16);
                    let lo = vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h)));
                    let hi = vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h));
                    acc[0] = vfmaq_f32(acc[0], lo, vld1q_f32(ap.add(i)));
                    acc[1] = vfmaq_f32(acc[1], hi, vld1q_f32(ap.add(i + 4)));
                    i += 8;
                }
                let mut s = vaddvq_f32(vaddq_f32(acc[0], acc[1]));
                while i < n {
                    s += w[i].to_f32() * a[i];
                    i += 1;
                }
                s
            }
        }
    };
}

neon_kernels!(neon, "neon", dot16_mull);
neon_kernels!(dotprod, "neon,dotprod", dot16_sdot);

/// f16 → f32 of a whole slice with `fcvtl` (base AArch64), eight at a time.
///
/// # Safety
/// `src` and `dst` must have equal lengths.
#[target_feature(enable = "neon")]
pub unsafe fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    let n = src.len();
    let dp = dst.as_mut_ptr();
    let mut i = 0;
    while i + 8 <= n {
        let (lo, hi) = widen_f16x8(src.as_ptr().add(i));
        vst1q_f32(dp.add(i), lo);
        vst1q_f32(dp.add(i + 4), hi);
        i += 8;
    }
    while i < n {
        dst[i] = h2f(src[i]);
        i += 1;
    }
}
