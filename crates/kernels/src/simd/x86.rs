//! x86_64 dot products for AVX2 and AVX-512 (VNNI). One body, compiled per feature set by
//! `x86_kernels!`; the VNNI build replaces the maddubs/madd pair product with `vpdpbusd`.
#![allow(unsafe_op_in_unsafe_fn)]

macro_rules! x86_kernels {
    ($modname:ident, $features:literal, $vnni:literal) => {
        pub mod $modname {
            use crate::blocks::{
                BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0,
            };
            use core::arch::x86_64::*;
            use half::{bf16, f16};

            #[inline(always)]
            unsafe fn h2f(h: f16) -> f32 {
                _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
            }

            #[inline(always)]
            unsafe fn hsum(v: __m256) -> f32 {
                let lo = _mm256_castps256_ps128(v);
                let hi = _mm256_extractf128_ps(v, 1);
                let s = _mm_add_ps(lo, hi);
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_movehdup_ps(s));
                _mm_cvtss_f32(s)
            }

            /// Sum of products of signed bytes, four at a time into eight i32 lanes.
            #[inline(always)]
            unsafe fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256i {
                let ax = _mm256_sign_epi8(x, x);
                let sy = _mm256_sign_epi8(y, x);
                mul_sum_u8_i8(ax, sy)
            }

            /// Sum of products of unsigned by signed bytes into eight i32 lanes.
            #[inline(always)]
            unsafe fn mul_sum_u8_i8(ux: __m256i, sy: __m256i) -> __m256i {
                if $vnni {
                    _mm256_dpbusd_epi32(_mm256_setzero_si256(), ux, sy)
                } else {
                    let dot = _mm256_maddubs_epi16(ux, sy);
                    _mm256_madd_epi16(dot, _mm256_set1_epi16(1))
                }
            }

            /// 32 nibbles of 16 bytes: low nibbles first, then high nibbles.
            #[inline(always)]
            unsafe fn nibbles_32(p: *const u8) -> __m256i {
                let b = _mm_loadu_si128(p as *const __m128i);
                let lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
                let hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
                _mm256_set_m128i(hi, lo)
            }

            /// Expands 32 bits into 32 bytes of 0xFF (bit set) or 0x00.
            #[inline(always)]
            unsafe fn bytes_from_bits_32(bits: u32) -> __m256i {
                let shuf = _mm256_set_epi64x(
                    0x0303030303030303,
                    0x0202020202020202,
                    0x0101010101010101,
                    0x0000000000000000,
                );
                let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
                let mask = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
                _mm256_cmpeq_epi8(_mm256_or_si256(bytes, mask), _mm256_set1_epi64x(-1))
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                for (x, y) in w.iter().zip(a) {
                    let d = _mm256_set1_ps(h2f(x.d) * h2f(y.d));
                    let qx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let p = _mm256_cvtepi32_ps(mul_sum_i8(qx, qy));
                    acc = _mm256_fmadd_ps(d, p, acc);
                }
                hsum(acc)
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let off = _mm256_set1_epi8(8);
                for (x, y) in w.iter().zip(a) {
                    let d = _mm256_set1_ps(h2f(x.d) * h2f(y.d));
                    let qx = _mm256_sub_epi8(nibbles_32(x.qs.as_ptr()), off);
                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let p = _mm256_cvtepi32_ps(mul_sum_i8(qx, qy));
                    acc = _mm256_fmadd_ps(d, p, acc);
                }
                hsum(acc)
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_q5_0_q8_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let f0 = _mm256_set1_epi8(0xf0u8 as i8);
                for (x, y) in w.iter().zip(a) {
                    let d = _mm256_set1_ps(h2f(x.d) * h2f(y.d));
                    let hi = _mm256_andnot_si256(bytes_from_bits_32(u32::from_le_bytes(x.qh)), f0);
                    let qx = _mm256_or_si256(nibbles_32(x.qs.as_ptr()), hi);
                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let p = _mm256_cvtepi32_ps(mul_sum_i8(qx, qy));
                    acc = _mm256_fmadd_ps(d, p, acc);
                }
                hsum(acc)
            }

            /// Unpacks the eight 6-bit (scale, min) pairs of a Q4_K/Q5_K block.
            #[inline(always)]
            fn k4_scales(s: &[u8; 12]) -> ([i16; 8], [i32; 8]) {
                let mut sc = [0i16; 8];
                let mut mn = [0i32; 8];
                for j in 0..8 {
                    let (a, b) = crate::quant::scale_min_k4(j, s);
                    sc[j] = a as i16;
                    mn[j] = b as i32;
                }
                (sc, mn)
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_q4k_q8k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let mut acc_m = 0.0f32;
                let m4 = _mm256_set1_epi8(0x0f);
                for (x, y) in w.iter().zip(a) {
                    let (sc, mn) = k4_scales(&x.scales);
                    let mut summ = 0i32;
                    for j in 0..8 {
                        summ += mn[j] * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
                    }
                    acc_m += y.d * h2f(x.dmin) * summ as f32;
                    let mut sumi = _mm256_setzero_si256();
                    for j in 0..4 {
                        let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * j) as *const __m256i);
                        let lo = _mm256_and_si256(q, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                        let y0 = _mm256_loadu_si256(y.qs.as_ptr().add(64 * j) as *const __m256i);
                        let y1 =
                            _mm256_loadu_si256(y.qs.as_ptr().add(64 * j + 32) as *const __m256i);
                        let p0 = _mm256_maddubs_epi16(lo, y0);
                        let p1 = _mm256_maddubs_epi16(hi, y1);
                        let p0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * j]));
                        let p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * j + 1]));
                        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
                    }
                    let d = _mm256_set1_ps(y.d * h2f(x.d));
                    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
                }
                hsum(acc) - acc_m
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_q5k_q8k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let mut acc_m = 0.0f32;
                let m4 = _mm256_set1_epi8(0x0f);
                let one = _mm256_set1_epi8(1);
                for (x, y) in w.iter().zip(a) {
                    let (sc, mn) = k4_scales(&x.scales);
                    let mut summ = 0i32;
                    for j in 0..8 {
                        summ += mn[j] * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
                    }
                    acc_m += y.d * h2f(x.dmin) * summ as f32;
                    let qh = _mm256_loadu_si256(x.qh.as_ptr() as *const __m256i);
                    let mut sumi = _mm256_setzero_si256();
                    for j in 0..4 {
                        let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * j) as *const __m256i);
                        let h0 = _mm256_and_si256(
                            _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32)),
                            one,
                        );
                        let h1 = _mm256_and_si256(
                            _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32 + 1)),
                            one,
                        );
                        let lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(h0, 4));
                        let hi = _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                            _mm256_slli_epi16(h1, 4),
                        );
                        let y0 = _mm256_loadu_si256(y.qs.as_ptr().add(64 * j) as *const __m256i);
                        let y1 =
                            _mm256_loadu_si256(y.qs.as_ptr().add(64 * j + 32) as *const __m256i);
                        let p0 = _mm256_madd_epi16(
                            _mm256_maddubs_epi16(lo, y0),
                            _mm256_set1_epi16(sc[2 * j]),
                        );
                        let p1 = _mm256_madd_epi16(
                            _mm256_maddubs_epi16(hi, y1),
                            _mm256_set1_epi16(sc[2 * j + 1]),
                        );
                        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
                    }
                    let d = _mm256_set1_ps(y.d * h2f(x.d));
                    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
                }
                hsum(acc) - acc_m
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_q6k_q8k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let m4 = _mm256_set1_epi8(0x0f);
                let m3 = _mm256_set1_epi8(0x03);
                for (x, y) in w.iter().zip(a) {
                    // Σ(q-32)·y = Σq·y - 32·Σy, with Σy per 16 from bsums.
                    let mut bias = 0i32;
                    for j in 0..16 {
                        bias += x.scales[j] as i32 * y.bsums[j] as i32;
                    }
                    let mut sumi = _mm256_setzero_si256();
                    for n in 0..2 {
                        let ql0 = _mm256_loadu_si256(x.ql.as_ptr().add(64 * n) as *const __m256i);
                        let ql1 =
                            _mm256_loadu_si256(x.ql.as_ptr().add(64 * n + 32) as *const __m256i);
                        let qh = _mm256_loadu_si256(x.qh.as_ptr().add(32 * n) as *const __m256i);
                        let parts = [
                            _mm256_or_si256(
                                _mm256_and_si256(ql0, m4),
                                _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(ql1, m4),
                                _mm256_slli_epi16(
                                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3),
                                    4,
                                ),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_slli_epi16(
                                    _mm256_and_si256(_mm256_srli_epi16(qh, 4), m3),
                                    4,
                                ),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_slli_epi16(
                                    _mm256_and_si256(_mm256_srli_epi16(qh, 6), m3),
                                    4,
                                ),
                            ),
                        ];
                        for (p, q) in parts.iter().enumerate() {
                            let base = 128 * n + 32 * p;
                            let yv = _mm256_loadu_si256(y.qs.as_ptr().add(base) as *const __m256i);
                            let s0 = x.scales[base / 16] as i16;
                            let s1 = x.scales[base / 16 + 1] as i16;
                            let scv = _mm256_setr_epi16(
                                s0, s0, s0, s0, s0, s0, s0, s0, s1, s1, s1, s1, s1, s1, s1, s1,
                            );
                            let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(*q, yv), scv);
                            sumi = _mm256_add_epi32(sumi, prod);
                        }
                    }
                    let d = y.d * h2f(x.d);
                    let total =
                        _mm256_sub_epi32(sumi, _mm256_setr_epi32(32 * bias, 0, 0, 0, 0, 0, 0, 0));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(total), acc);
                }
                hsum(acc)
            }

            /// Block of 32 weights as signed bytes plus its scale, for the Q8_0-activation family.
            #[inline(always)]
            unsafe fn unpack_q4_0(x: &BlockQ4_0) -> (__m256i, f32) {
                (
                    _mm256_sub_epi8(nibbles_32(x.qs.as_ptr()), _mm256_set1_epi8(8)),
                    h2f(x.d),
                )
            }
            #[inline(always)]
            unsafe fn unpack_q5_0(x: &BlockQ5_0) -> (__m256i, f32) {
                let hi = _mm256_andnot_si256(
                    bytes_from_bits_32(u32::from_le_bytes(x.qh)),
                    _mm256_set1_epi8(0xf0u8 as i8),
                );
                (_mm256_or_si256(nibbles_32(x.qs.as_ptr()), hi), h2f(x.d))
            }
            #[inline(always)]
            unsafe fn unpack_q8_0(x: &BlockQ8_0) -> (__m256i, f32) {
                (
                    _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i),
                    h2f(x.d),
                )
            }

            /// `out[t * stride + r] = w_r · a_t` for all rows of `w` (`nb` blocks each) and `ntok`
            /// activation rows; each weight block is unpacked once for four tokens.
            macro_rules! gemm_q8_family {
                ($name:ident, $blk:ty, $unpack:ident) => {
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
                        // Groups of four tokens share each unpacked weight block.
                        for r in 0..rows {
                            let wr = &w[r * nb..(r + 1) * nb];
                            let mut t = 0;
                            while t < t4 {
                                let mut acc = [_mm256_setzero_ps(); 4];
                                for b in 0..nb {
                                    let (qx, dx) = $unpack(&wr[b]);
                                    let ax = _mm256_sign_epi8(qx, qx);
                                    for u in 0..4 {
                                        let y = a.get_unchecked((t + u) * nb + b);
                                        let qy =
                                            _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                                        let p = mul_sum_u8_i8(ax, _mm256_sign_epi8(qy, qx));
                                        acc[u] = _mm256_fmadd_ps(
                                            _mm256_set1_ps(dx * h2f(y.d)),
                                            _mm256_cvtepi32_ps(p),
                                            acc[u],
                                        );
                                    }
                                }
                                for u in 0..4 {
                                    *out.add((t + u) * stride + r) = hsum(acc[u]);
                                }
                                t += 4;
                            }
                        }
                        // Leftover tokens (decode's single token): four rows at a time, so four
                        // independent accumulation chains hide the FMA latency.
                        for t in t4..ntok {
                            let at = &a[t * nb..(t + 1) * nb];
                            let mut r = 0;
                            while r + 4 <= rows {
                                let mut acc = [_mm256_setzero_ps(); 4];
                                // The four rows are one contiguous span; fetch the span two
                                // groups ahead so memory latency overlaps this group's arithmetic.
                                let span = w.as_ptr().add(r * nb) as *const i8;
                                let span_bytes = 4 * nb * core::mem::size_of::<$blk>();
                                let ahead = span.wrapping_add(2 * span_bytes);
                                for b in 0..nb {
                                    let y = at.get_unchecked(b);
                                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                                    let dy = h2f(y.d);
                                    let pf = b * span_bytes / nb;
                                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(pf));
                                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(pf + 64));
                                    for u in 0..4 {
                                        let (qx, dx) = $unpack(w.get_unchecked((r + u) * nb + b));
                                        let p = mul_sum_i8(qx, qy);
                                        acc[u] = _mm256_fmadd_ps(
                                            _mm256_set1_ps(dx * dy),
                                            _mm256_cvtepi32_ps(p),
                                            acc[u],
                                        );
                                    }
                                }
                                for u in 0..4 {
                                    *out.add(t * stride + r + u) = hsum(acc[u]);
                                }
                                r += 4;
                            }
                            while r < rows {
                                let mut acc = _mm256_setzero_ps();
                                for b in 0..nb {
                                    let (qx, dx) = $unpack(w.get_unchecked(r * nb + b));
                                    let y = at.get_unchecked(b);
                                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                                    acc = _mm256_fmadd_ps(
                                        _mm256_set1_ps(dx * h2f(y.d)),
                                        _mm256_cvtepi32_ps(mul_sum_i8(qx, qy)),
                                        acc,
                                    );
                                }
                                *out.add(t * stride + r) = hsum(acc);
                                r += 1;
                            }
                        }
                    }
                };
            }
            gemm_q8_family!(gemm_q4_0, BlockQ4_0, unpack_q4_0);
            gemm_q8_family!(gemm_q5_0, BlockQ5_0, unpack_q5_0);
            gemm_q8_family!(gemm_q8_0, BlockQ8_0, unpack_q8_0);

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
                            // in the arithmetic, so decode is not bound by memory latency.
                            let ahead = (wr.as_ptr() as *const i8).wrapping_add(4 * row_bytes);
                            let mut off = 0;
                            while off < row_bytes {
                                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(off));
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
                let mut acc0 = _mm256_setzero_ps();
                let mut acc1 = _mm256_setzero_ps();
                let mut i = 0;
                while i + 16 <= n {
                    acc0 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(w.as_ptr().add(i)),
                        _mm256_loadu_ps(a.as_ptr().add(i)),
                        acc0,
                    );
                    acc1 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(w.as_ptr().add(i + 8)),
                        _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                        acc1,
                    );
                    i += 16;
                }
                let mut s = hsum(_mm256_add_ps(acc0, acc1));
                while i < n {
                    s += w[i] * a[i];
                    i += 1;
                }
                s
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_f16_f32(w: &[f16], a: &[f32]) -> f32 {
                let n = w.len().min(a.len());
                let mut acc = _mm256_setzero_ps();
                let mut i = 0;
                while i + 8 <= n {
                    let h = _mm_loadu_si128(w.as_ptr().add(i) as *const __m128i);
                    acc = _mm256_fmadd_ps(
                        _mm256_cvtph_ps(h),
                        _mm256_loadu_ps(a.as_ptr().add(i)),
                        acc,
                    );
                    i += 8;
                }
                let mut s = hsum(acc);
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
                let av = _mm256_set1_ps(a);
                let mut i = 0;
                while i + 8 <= n {
                    let h = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i) as *const __m128i));
                    let yp = y.as_mut_ptr().add(i);
                    _mm256_storeu_ps(yp, _mm256_fmadd_ps(av, h, _mm256_loadu_ps(yp)));
                    i += 8;
                }
                while i < n {
                    y[i] += a * h2f(x[i]);
                    i += 1;
                }
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_bf16_f32(w: &[bf16], a: &[f32]) -> f32 {
                let n = w.len().min(a.len());
                let mut acc = _mm256_setzero_ps();
                let mut i = 0;
                while i + 8 <= n {
                    let h = _mm_loadu_si128(w.as_ptr().add(i) as *const __m128i);
                    let f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
                    acc = _mm256_fmadd_ps(f, _mm256_loadu_ps(a.as_ptr().add(i)), acc);
                    i += 8;
                }
                let mut s = hsum(acc);
                while i < n {
                    s += w[i].to_f32() * a[i];
                    i += 1;
                }
                s
            }
        }
    };
}

x86_kernels!(avx2, "avx2,fma,f16c", false);
x86_kernels!(
    avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    true
);
