//! AVX-512 VNNI kernel for [`crate::packed`] weights: a 64-byte register holds one column quad of
//! the sixteen rows' quants, and each token's dot products advance with eight `vpdpbusd` per block
//! against broadcast quads of its activation block. Tokens go in tiles of 8 (4 for K-quants) so a
//! block is unpacked once for the whole tile.
#![allow(unsafe_op_in_unsafe_fn)]

use crate::packed::{PackKind, PackedMatrix, PackedTask, GROUP};
use crate::packed_k::{MINS, QUANTS, QUANTS6, SCALES, SCALES6, SUPER6_BYTES, SUPER_BYTES};
use core::arch::x86_64::*;

const Q4_0: u8 = 0;
const Q5_0: u8 = 1;
const Q8_0: u8 = 2;
const Q4K: u8 = 3;
const Q6K: u8 = 4;

/// Column quad `k` (0..8) of one packed block as unsigned bytes, sixteen rows of four.
#[inline(always)]
unsafe fn quad<const KIND: u8>(q: *const u8, k: usize) -> __m512i {
    if KIND == Q8_0 {
        return _mm512_loadu_si512(q.add(k * 64) as *const _);
    }
    let n = _mm512_loadu_si512(q.add((k % 4) * 64) as *const _);
    let m = _mm512_set1_epi8(0x0f);
    let v = if k < 4 {
        _mm512_and_si512(n, m)
    } else {
        _mm512_and_si512(_mm512_srli_epi16(n, 4), m)
    };
    if KIND == Q5_0 {
        let bits = (q.add(256 + k * 8) as *const u64).read_unaligned();
        return _mm512_or_si512(v, _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(0x10)));
    }
    v
}

/// Tokens `tok0..tok0 + N` against one group at `g`. Each token's block sum runs as two
/// `vpdpbusd` chains (quads `p` and `p + 4`, the two nibble planes of one load): a chain waits on
/// its own latency, and this CPU needs about ten chains in flight to keep its `vpdpbusd` unit busy.
#[inline(always)]
unsafe fn tile<const KIND: u8, const N: usize>(
    t: &PackedTask,
    g: *const u8,
    tok0: usize,
    mask: u16,
    next: *const u8,
) {
    let nb = t.nb;
    let sb = PackedMatrix::scale_bytes(nb);
    let bb = t.kind.block_bytes();
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..nb {
        prefetch_share(t, next, b);
        let q = g.add(sb + b * bb);
        let mut lo = [_mm512_setzero_si512(); N];
        let mut hi = [_mm512_setzero_si512(); N];
        for (u, s) in lo.iter_mut().enumerate() {
            let aux = t.aux.as_ptr().add((tok0 + u) * nb + b);
            *s = _mm512_set1_epi32((*aux).corr);
        }
        for p in 0..4 {
            let w0 = quad::<KIND>(q, p);
            let w1 = quad::<KIND>(q, p + 4);
            for u in 0..N {
                let a = t.acts.as_ptr().add((tok0 + u) * nb + b);
                let ap = (*a).qs.as_ptr() as *const i32;
                let (a0, a1) = (ap.add(p).read_unaligned(), ap.add(p + 4).read_unaligned());
                lo[u] = _mm512_dpbusd_epi32(lo[u], w0, _mm512_set1_epi32(a0));
                hi[u] = _mm512_dpbusd_epi32(hi[u], w1, _mm512_set1_epi32(a1));
            }
        }
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(g.add(b * GROUP * 2) as *const __m256i));
        for (u, acc) in acc.iter_mut().enumerate() {
            let aux = t.aux.as_ptr().add((tok0 + u) * nb + b);
            let d = _mm512_mul_ps(dw, _mm512_set1_ps((*aux).d));
            let s = _mm512_add_epi32(lo[u], hi[u]);
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, *acc);
        }
    }
    for (u, acc) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(t.out.add((tok0 + u) * t.stride), mask, *acc);
    }
}

/// Q4_K: tokens `tok0..tok0 + N` against one group at `g`. Sub-block sums run as two chains per
/// token (low and high nibble planes) and are scaled in i32; the mins term `Σ_j m_j · Σ a` comes
/// from `vpdpwssd` over the activation's 16-column sums, each min repeated in both 16-bit halves.
#[inline(always)]
unsafe fn tile_q4k<const N: usize>(
    t: &PackedTask,
    g: *const u8,
    tok0: usize,
    mask: u16,
    next: *const u8,
) {
    let nb = t.nb;
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..nb {
        prefetch_share(t, next, b);
        let s = g.add(b * SUPER_BYTES);
        let y = |u: usize| t.acts_k.as_ptr().add((tok0 + u) * nb + b);
        let mut sumi = [_mm512_setzero_si512(); N];
        for j in 0..8 {
            let q = s.add(QUANTS + j * 256);
            let mut lo = [_mm512_setzero_si512(); N];
            let mut hi = [_mm512_setzero_si512(); N];
            for p in 0..4 {
                let n = _mm512_loadu_si512(q.add(p * 64) as *const _);
                let wl = _mm512_and_si512(n, m4);
                let wh = _mm512_and_si512(_mm512_srli_epi16(n, 4), m4);
                for u in 0..N {
                    let ap = (*y(u)).qs.as_ptr().add(j * 32) as *const i32;
                    lo[u] = _mm512_dpbusd_epi32(
                        lo[u],
                        wl,
                        _mm512_set1_epi32(ap.add(p).read_unaligned()),
                    );
                    hi[u] = _mm512_dpbusd_epi32(
                        hi[u],
                        wh,
                        _mm512_set1_epi32(ap.add(p + 4).read_unaligned()),
                    );
                }
            }
            let sc =
                _mm512_cvtepu8_epi32(_mm_loadu_si128(s.add(SCALES + j * GROUP) as *const __m128i));
            for u in 0..N {
                let d = _mm512_add_epi32(lo[u], hi[u]);
                sumi[u] = _mm512_add_epi32(sumi[u], _mm512_mullo_epi32(d, sc));
            }
        }
        let mut summ = [_mm512_setzero_si512(); N];
        for j in 0..8 {
            let mn =
                _mm512_cvtepu8_epi32(_mm_loadu_si128(s.add(MINS + j * GROUP) as *const __m128i));
            let mn2 = _mm512_or_si512(mn, _mm512_slli_epi32::<16>(mn));
            for (u, summ) in summ.iter_mut().enumerate() {
                let bs = ((*y(u)).bsums.as_ptr().add(2 * j) as *const i32).read_unaligned();
                *summ = _mm512_dpwssd_epi32(*summ, mn2, _mm512_set1_epi32(bs));
            }
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(s as *const __m256i));
        let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(s.add(32) as *const __m256i));
        for u in 0..N {
            let da = _mm512_set1_ps((*y(u)).d);
            acc[u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[u]), _mm512_mul_ps(d, da), acc[u]);
            acc[u] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(summ[u]), _mm512_mul_ps(dmin, da), acc[u]);
        }
    }
    for (u, acc) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(t.out.add((tok0 + u) * t.stride), mask, *acc);
    }
}

/// Q6_K: as Q4_K with signed 16-column scales, one chain per half of each 32-column chunk, and the
/// −32 offset folded out through `Σ_j sc_j · Σ a` (`vpdpwssd` over pairs of scales).
#[inline(always)]
unsafe fn tile_q6k<const N: usize>(
    t: &PackedTask,
    g: *const u8,
    tok0: usize,
    mask: u16,
    next: *const u8,
) {
    let nb = t.nb;
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..nb {
        prefetch_share(t, next, b);
        let s = g.add(b * SUPER6_BYTES);
        let y = |u: usize| t.acts_k.as_ptr().add((tok0 + u) * nb + b);
        let mut sumi = [_mm512_setzero_si512(); N];
        let mut summ = [_mm512_setzero_si512(); N];
        for m in 0..8 {
            let q = s.add(QUANTS6 + m * 512);
            let mut h0 = [_mm512_setzero_si512(); N];
            let mut h1 = [_mm512_setzero_si512(); N];
            for k in 0..4 {
                let w0 = _mm512_loadu_si512(q.add(k * 64) as *const _);
                let w1 = _mm512_loadu_si512(q.add((k + 4) * 64) as *const _);
                for u in 0..N {
                    let ap = (*y(u)).qs.as_ptr().add(m * 32) as *const i32;
                    h0[u] = _mm512_dpbusd_epi32(
                        h0[u],
                        w0,
                        _mm512_set1_epi32(ap.add(k).read_unaligned()),
                    );
                    h1[u] = _mm512_dpbusd_epi32(
                        h1[u],
                        w1,
                        _mm512_set1_epi32(ap.add(k + 4).read_unaligned()),
                    );
                }
            }
            let s0 = _mm_loadu_si128(s.add(SCALES6 + 2 * m * GROUP) as *const __m128i);
            let s1 = _mm_loadu_si128(s.add(SCALES6 + (2 * m + 1) * GROUP) as *const __m128i);
            let (sc0, sc1) = (_mm512_cvtepi8_epi32(s0), _mm512_cvtepi8_epi32(s1));
            // (sc_2m, sc_2m+1) of each row as a pair of i16, against the pair of 16-column sums.
            let pair = _mm512_cvtepi8_epi16(_mm256_set_m128i(
                _mm_unpackhi_epi8(s0, s1),
                _mm_unpacklo_epi8(s0, s1),
            ));
            for u in 0..N {
                let scaled = _mm512_add_epi32(
                    _mm512_mullo_epi32(h0[u], sc0),
                    _mm512_mullo_epi32(h1[u], sc1),
                );
                sumi[u] = _mm512_add_epi32(sumi[u], scaled);
                let bs = ((*y(u)).bsums.as_ptr().add(2 * m) as *const i32).read_unaligned();
                summ[u] = _mm512_dpwssd_epi32(summ[u], pair, _mm512_set1_epi32(bs));
            }
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(s as *const __m256i));
        for u in 0..N {
            let da = _mm512_set1_ps((*y(u)).d);
            let isum = _mm512_sub_epi32(sumi[u], _mm512_slli_epi32(summ[u], 5));
            acc[u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, da), acc[u]);
        }
    }
    for (u, acc) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(t.out.add((tok0 + u) * t.stride), mask, *acc);
    }
}

/// How many groups ahead the first tile of a group prefetches into L2.
const PREFETCH_GROUPS: usize = 2;

/// Block `b`'s share of the group at `next` (null: none) into L1. A group (~11 KB for the tied
/// output projection) is fetched while the one before it is computed: with many tokens per step
/// the big matrices otherwise wait on memory, which the hardware prefetcher does not hide here.
#[inline(always)]
unsafe fn prefetch_share(t: &PackedTask, next: *const u8, b: usize) {
    if next.is_null() {
        return;
    }
    let share = PackedMatrix::group_bytes(t.kind, t.nb).div_ceil(t.nb);
    for line in (b * share..(b + 1) * share).step_by(64) {
        _mm_prefetch::<_MM_HINT_T1>(next.add(line) as *const i8);
    }
}

/// One tile of `N` tokens for the kind `KIND`, prefetching the group at `next` unless it is null.
#[inline(always)]
unsafe fn tile_of<const KIND: u8, const N: usize>(
    t: &PackedTask,
    g: *const u8,
    tok: usize,
    mask: u16,
    next: *const u8,
) {
    match KIND {
        Q4K => tile_q4k::<N>(t, g, tok, mask, next),
        Q6K => tile_q6k::<N>(t, g, tok, mask, next),
        _ => tile::<KIND, N>(t, g, tok, mask, next),
    }
}

#[inline(always)]
unsafe fn groups<const KIND: u8>(t: &PackedTask) {
    let gb = PackedMatrix::group_bytes(t.kind, t.nb);
    let ngroups = t.rows.div_ceil(GROUP);
    for gi in 0..ngroups {
        let g = t.data.as_ptr().add(gi * gb);
        // The first tile of each group prefetches the next group of the task.
        let mut next = if gi + PREFETCH_GROUPS < ngroups {
            g.add(PREFETCH_GROUPS * gb)
        } else {
            core::ptr::null()
        };
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
                tile_of::<KIND, 8>(&sub, g, tok, mask, next);
                next = core::ptr::null();
                tok += 8;
            }
        }
        while tok + 4 <= t.ntok {
            tile_of::<KIND, 4>(&sub, g, tok, mask, next);
            next = core::ptr::null();
            tok += 4;
        }
        while tok < t.ntok {
            tile_of::<KIND, 1>(&sub, g, tok, mask, next);
            next = core::ptr::null();
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
