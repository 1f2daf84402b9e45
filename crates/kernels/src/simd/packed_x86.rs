//! AVX-512 VNNI kernel for [`crate::packed`] weights: per block, eight 64-byte registers hold the
//! sixteen rows' quants, and each token's dot products advance with eight `vpdpbusd` against
//! broadcast quads of its activation block. Tokens go in tiles of 8 so a block is unpacked once.
#![allow(unsafe_op_in_unsafe_fn)]

use crate::packed::{PackKind, PackedMatrix, PackedTask, GROUP};
use crate::packed_k::{MINS, QUANTS, QUANTS6, SCALES, SCALES6, SUPER6_BYTES, SUPER_BYTES};
use core::arch::x86_64::*;

const Q4_0: u8 = 0;
const Q5_0: u8 = 1;
const Q8_0: u8 = 2;
const Q4K: u8 = 3;
const Q6K: u8 = 4;

/// The eight column-quad registers of one packed block.
#[inline(always)]
unsafe fn load_block<const KIND: u8>(q: *const u8) -> [__m512i; 8] {
    let mut w = [_mm512_setzero_si512(); 8];
    if KIND == Q8_0 {
        for (k, r) in w.iter_mut().enumerate() {
            *r = _mm512_loadu_si512(q.add(k * 64) as *const _);
        }
    } else {
        let m = _mm512_set1_epi8(0x0f);
        for p in 0..4 {
            let n = _mm512_loadu_si512(q.add(p * 64) as *const _);
            w[p] = _mm512_and_si512(n, m);
            w[p + 4] = _mm512_and_si512(_mm512_srli_epi16(n, 4), m);
        }
        if KIND == Q5_0 {
            let hi = _mm512_set1_epi8(0x10);
            for (k, r) in w.iter_mut().enumerate() {
                let bits = (q.add(256 + k * 8) as *const u64).read_unaligned();
                *r = _mm512_or_si512(*r, _mm512_maskz_mov_epi8(bits, hi));
            }
        }
    }
    w
}

#[inline(always)]
unsafe fn h2f(h: half::f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

/// Tokens `tok0..tok0 + N` against one group at `g`.
#[inline(always)]
unsafe fn tile<const KIND: u8, const N: usize>(
    t: &PackedTask,
    g: *const u8,
    tok0: usize,
    mask: u16,
) {
    let nb = t.nb;
    let sb = PackedMatrix::scale_bytes(nb);
    let bb = t.kind.block_bytes();
    let off = t.kind.offset();
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..nb {
        let w = load_block::<KIND>(g.add(sb + b * bb));
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(g.add(b * GROUP * 2) as *const __m256i));
        for (u, acc) in acc.iter_mut().enumerate() {
            let ti = (tok0 + u) * nb + b;
            let a = t.acts.get_unchecked(ti);
            let ap = a.qs.as_ptr() as *const i32;
            let mut s = _mm512_set1_epi32(-off * *t.sums.get_unchecked(ti));
            for (k, wk) in w.iter().enumerate() {
                s = _mm512_dpbusd_epi32(s, *wk, _mm512_set1_epi32(ap.add(k).read_unaligned()));
            }
            let d = _mm512_mul_ps(dw, _mm512_set1_ps(h2f(a.d)));
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, *acc);
        }
    }
    for (u, acc) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(t.out.add((tok0 + u) * t.stride), mask, *acc);
    }
}

/// Q4_K: tokens `tok0..tok0 + N` against one group at `g`, integer sub-block sums scaled in i32.
#[inline(always)]
unsafe fn tile_q4k<const N: usize>(t: &PackedTask, g: *const u8, tok0: usize, mask: u16) {
    let nb = t.nb;
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..nb {
        let s = g.add(b * SUPER_BYTES);
        let mut sumi = [_mm512_setzero_si512(); N];
        let mut summ = [_mm512_setzero_si512(); N];
        for j in 0..8 {
            let q = s.add(QUANTS + j * 256);
            let mut w = [_mm512_setzero_si512(); 8];
            for p in 0..4 {
                let n = _mm512_loadu_si512(q.add(p * 64) as *const _);
                w[p] = _mm512_and_si512(n, m4);
                w[p + 4] = _mm512_and_si512(_mm512_srli_epi16(n, 4), m4);
            }
            let sc =
                _mm512_cvtepu8_epi32(_mm_loadu_si128(s.add(SCALES + j * GROUP) as *const __m128i));
            let mn =
                _mm512_cvtepu8_epi32(_mm_loadu_si128(s.add(MINS + j * GROUP) as *const __m128i));
            for u in 0..N {
                let y = t.acts_k.get_unchecked((tok0 + u) * nb + b);
                let ap = y.qs.as_ptr().add(j * 32) as *const i32;
                let mut d = _mm512_setzero_si512();
                for (k, wk) in w.iter().enumerate() {
                    d = _mm512_dpbusd_epi32(d, *wk, _mm512_set1_epi32(ap.add(k).read_unaligned()));
                }
                sumi[u] = _mm512_add_epi32(sumi[u], _mm512_mullo_epi32(d, sc));
                let bs = y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32;
                summ[u] = _mm512_add_epi32(summ[u], _mm512_mullo_epi32(mn, _mm512_set1_epi32(bs)));
            }
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(s as *const __m256i));
        let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(s.add(32) as *const __m256i));
        for u in 0..N {
            let da = _mm512_set1_ps(t.acts_k.get_unchecked((tok0 + u) * nb + b).d);
            acc[u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[u]), _mm512_mul_ps(d, da), acc[u]);
            acc[u] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(summ[u]), _mm512_mul_ps(dmin, da), acc[u]);
        }
    }
    for (u, acc) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(t.out.add((tok0 + u) * t.stride), mask, *acc);
    }
}

/// Q6_K: as Q4_K with signed 16-column scales and the −32 offset folded out through `bsums`.
#[inline(always)]
unsafe fn tile_q6k<const N: usize>(t: &PackedTask, g: *const u8, tok0: usize, mask: u16) {
    let nb = t.nb;
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..nb {
        let s = g.add(b * SUPER6_BYTES);
        let mut sumi = [_mm512_setzero_si512(); N];
        let mut summ = [_mm512_setzero_si512(); N];
        for m in 0..8 {
            let q = s.add(QUANTS6 + m * 512);
            let mut w = [_mm512_setzero_si512(); 8];
            for (k, wk) in w.iter_mut().enumerate() {
                *wk = _mm512_loadu_si512(q.add(k * 64) as *const _);
            }
            let sc = [
                _mm512_cvtepi8_epi32(_mm_loadu_si128(
                    s.add(SCALES6 + 2 * m * GROUP) as *const __m128i
                )),
                _mm512_cvtepi8_epi32(_mm_loadu_si128(
                    s.add(SCALES6 + (2 * m + 1) * GROUP) as *const __m128i
                )),
            ];
            for u in 0..N {
                let y = t.acts_k.get_unchecked((tok0 + u) * nb + b);
                let ap = y.qs.as_ptr().add(m * 32) as *const i32;
                for (half, sch) in sc.iter().enumerate() {
                    let mut d = _mm512_setzero_si512();
                    for k in 4 * half..4 * half + 4 {
                        d = _mm512_dpbusd_epi32(
                            d,
                            w[k],
                            _mm512_set1_epi32(ap.add(k).read_unaligned()),
                        );
                    }
                    sumi[u] = _mm512_add_epi32(sumi[u], _mm512_mullo_epi32(d, *sch));
                    let bs = _mm512_set1_epi32(y.bsums[2 * m + half] as i32);
                    summ[u] = _mm512_add_epi32(summ[u], _mm512_mullo_epi32(*sch, bs));
                }
            }
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(s as *const __m256i));
        for u in 0..N {
            let da = _mm512_set1_ps(t.acts_k.get_unchecked((tok0 + u) * nb + b).d);
            let isum = _mm512_sub_epi32(sumi[u], _mm512_slli_epi32(summ[u], 5));
            acc[u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, da), acc[u]);
        }
    }
    for (u, acc) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(t.out.add((tok0 + u) * t.stride), mask, *acc);
    }
}

/// One tile of `N` tokens for the kind `KIND`.
#[inline(always)]
unsafe fn tile_of<const KIND: u8, const N: usize>(
    t: &PackedTask,
    g: *const u8,
    tok: usize,
    mask: u16,
) {
    match KIND {
        Q4K => tile_q4k::<N>(t, g, tok, mask),
        Q6K => tile_q6k::<N>(t, g, tok, mask),
        _ => tile::<KIND, N>(t, g, tok, mask),
    }
}

#[inline(always)]
unsafe fn groups<const KIND: u8>(t: &PackedTask) {
    let gb = PackedMatrix::group_bytes(t.kind, t.nb);
    for gi in 0..t.rows.div_ceil(GROUP) {
        let g = t.data.as_ptr().add(gi * gb);
        let valid = (t.rows - gi * GROUP).min(GROUP);
        let mask = ((1u32 << valid) - 1) as u16;
        let sub = PackedTask {
            out: t.out.add(gi * GROUP),
            ..*t
        };
        let mut tok = 0;
        // K-quant tiles keep three accumulators per token: eight tokens would spill registers.
        if KIND < Q4K {
            while tok + 8 <= t.ntok {
                tile_of::<KIND, 8>(&sub, g, tok, mask);
                tok += 8;
            }
        }
        while tok + 4 <= t.ntok {
            tile_of::<KIND, 4>(&sub, g, tok, mask);
            tok += 4;
        }
        while tok < t.ntok {
            tile_of::<KIND, 1>(&sub, g, tok, mask);
            tok += 1;
        }
    }
}

/// # Safety
/// The CPU must have AVX-512 F/BW/VL and VNNI; `t.out` valid for every `(token, row)` of the task.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm_packed(t: &PackedTask) {
    match t.kind {
        PackKind::Q4_0 => groups::<Q4_0>(t),
        PackKind::Q5_0 => groups::<Q5_0>(t),
        PackKind::Q8_0 => groups::<Q8_0>(t),
        PackKind::Q4K => groups::<Q4K>(t),
        PackKind::Q6K => groups::<Q6K>(t),
    }
}
