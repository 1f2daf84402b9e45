//! Q4_K and Q6_K in the packed layout: 16 rows interleaved per 256-column super-block, so sub-block dot
//! products advance with `vpdpbusd` like the Q8_0 family and the K-quant scales apply as integer
//! vectors, as ggml does (`Σ_j sc_j·Σ q·a` in i32, then `d·d_a` and `dmin·d_a` in float).
//!
//! One super-block of a group (2368 bytes): `d[16]`, `dmin[16]` (f16), `scales[8][16]`,
//! `mins[8][16]` (6-bit values as bytes), then eight 256-byte sub-blocks in the Q4_0 nibble-plane
//! layout of [`crate::packed`] (quad `p` low nibbles, quad `p + 4` high nibbles, `[row][4]`).
use crate::blocks::{cast, BlockQ4K, BlockQ6K, BlockQ8K, QK_K};
use crate::packed::GROUP;
use crate::quant::scale_min_k4;
use half::f16;

pub const SUPER_BYTES: usize = 64 + 256 + 8 * 256;
pub(crate) const SCALES: usize = 64;
pub(crate) const MINS: usize = 64 + 128;
pub(crate) const QUANTS: usize = 64 + 256;

/// Fills one group (`nb` super-blocks) from the source rows `rows` (up to 16; missing ones are zero).
pub(crate) fn pack_group(dst: &mut [u8], rows: &[&[u8]], nb: usize) {
    for b in 0..nb {
        let s = &mut dst[b * SUPER_BYTES..(b + 1) * SUPER_BYTES];
        let mut vals = [[[0u8; 32]; GROUP]; 8];
        for (i, row) in rows.iter().enumerate() {
            let x = &cast::<BlockQ4K>(row)[b];
            s[i * 2..i * 2 + 2].copy_from_slice(&x.d.to_le_bytes());
            s[32 + i * 2..32 + i * 2 + 2].copy_from_slice(&x.dmin.to_le_bytes());
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, &x.scales);
                s[SCALES + j * GROUP + i] = sc;
                s[MINS + j * GROUP + i] = m;
                let q = &x.qs[32 * (j / 2)..32 * (j / 2) + 32];
                for c in 0..32 {
                    vals[j][i][c] = if j % 2 == 0 { q[c] & 0x0f } else { q[c] >> 4 };
                }
            }
        }
        for (j, v) in vals.iter().enumerate() {
            let q = &mut s[QUANTS + j * 256..QUANTS + (j + 1) * 256];
            for p in 0..4 {
                for (i, r) in v.iter().enumerate() {
                    for k in 0..4 {
                        q[p * 64 + i * 4 + k] = (r[4 * p + k] & 0x0f) | (r[4 * (p + 4) + k] << 4);
                    }
                }
            }
        }
    }
}

fn h(s: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([s[at], s[at + 1]]).to_f32()
}

fn quant(s: &[u8], j: usize, i: usize, c: usize) -> u8 {
    let (k, l) = (c / 4, c % 4);
    let b = s[QUANTS + j * 256 + (k % 4) * 64 + i * 4 + l];
    if k < 4 {
        b & 0x0f
    } else {
        b >> 4
    }
}

/// Row `i` of a group in f32.
pub(crate) fn dequantize_row(g: &[u8], i: usize, nb: usize, out: &mut [f32]) {
    for b in 0..nb {
        let s = &g[b * SUPER_BYTES..(b + 1) * SUPER_BYTES];
        let (d, dmin) = (h(s, i * 2), h(s, 32 + i * 2));
        for j in 0..8 {
            let sc = s[SCALES + j * GROUP + i] as f32;
            let m = s[MINS + j * GROUP + i] as f32;
            for c in 0..32 {
                out[b * QK_K + j * 32 + c] = d * sc * quant(s, j, i, c) as f32 - dmin * m;
            }
        }
    }
}

/// Scalar reference for row `i` of a group against one token: the SIMD kernel's exact steps.
pub(crate) fn dot_reference(g: &[u8], i: usize, nb: usize, a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (b, y) in a.iter().enumerate().take(nb) {
        let s = &g[b * SUPER_BYTES..(b + 1) * SUPER_BYTES];
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..8 {
            let mut dot = 0i32;
            for c in 0..32 {
                dot += quant(s, j, i, c) as i32 * y.qs[j * 32 + c] as i32;
            }
            sumi += dot * s[SCALES + j * GROUP + i] as i32;
            let bs = y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32;
            summ += s[MINS + j * GROUP + i] as i32 * bs;
        }
        acc = (sumi as f32).mul_add(h(s, i * 2) * y.d, acc);
        acc = (-(summ as f32)).mul_add(h(s, 32 + i * 2) * y.d, acc);
    }
    acc
}

/// Q6_K super-block of a group (4416 bytes): `d[16]` f16, padding to 64, `scales[16][16]` (i8,
/// `[sub-block of 16][row]`), then the 6-bit quants as bytes in eight 512-byte chunks of 32 columns,
/// each eight quads `[row][4]`. Bytes rather than bit planes: Q6_K tensors are few, and this keeps
/// the kernel to loads and `vpdpbusd`.
pub const SUPER6_BYTES: usize = 64 + 256 + 8 * 512;
pub(crate) const SCALES6: usize = 64;
pub(crate) const QUANTS6: usize = 64 + 256;

/// The 256 unsigned quants (`q + 32`) of a Q6_K block, in column order.
fn q6k_values(x: &BlockQ6K) -> [u8; QK_K] {
    let mut v = [0u8; QK_K];
    for n in 0..2 {
        let ql = &x.ql[64 * n..];
        let qh = &x.qh[32 * n..];
        for l in 0..32 {
            v[128 * n + l] = (ql[l] & 0xf) | ((qh[l] & 3) << 4);
            v[128 * n + l + 32] = (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4);
            v[128 * n + l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            v[128 * n + l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    v
}

pub(crate) fn pack_group_q6k(dst: &mut [u8], rows: &[&[u8]], nb: usize) {
    for b in 0..nb {
        let s = &mut dst[b * SUPER6_BYTES..(b + 1) * SUPER6_BYTES];
        for (i, row) in rows.iter().enumerate() {
            let x = &cast::<BlockQ6K>(row)[b];
            s[i * 2..i * 2 + 2].copy_from_slice(&x.d.to_le_bytes());
            for (j, &sc) in x.scales.iter().enumerate() {
                s[SCALES6 + j * GROUP + i] = sc as u8;
            }
            let v = q6k_values(x);
            for c in 0..QK_K {
                let (chunk, k, l) = (c / 32, (c % 32) / 4, c % 4);
                s[QUANTS6 + chunk * 512 + k * 64 + i * 4 + l] = v[c];
            }
        }
        // Missing rows: quants at the offset, scale 0 (zero-filled memory gives scale 0 and q 0,
        // which is harmless: every product is scaled by 0).
    }
}

fn q6(s: &[u8], i: usize, c: usize) -> u8 {
    let (chunk, k, l) = (c / 32, (c % 32) / 4, c % 4);
    s[QUANTS6 + chunk * 512 + k * 64 + i * 4 + l]
}

pub(crate) fn dequantize_row_q6k(g: &[u8], i: usize, nb: usize, out: &mut [f32]) {
    for b in 0..nb {
        let s = &g[b * SUPER6_BYTES..(b + 1) * SUPER6_BYTES];
        let d = h(s, i * 2);
        for c in 0..QK_K {
            let sc = s[SCALES6 + (c / 16) * GROUP + i] as i8 as f32;
            out[b * QK_K + c] = d * sc * (q6(s, i, c) as i32 - 32) as f32;
        }
    }
}

/// Scalar reference: `Σ_j sc_j·(Σ q·a − 32·bsum_j)` in i32, then `d·d_a` in float.
pub(crate) fn dot_reference_q6k(g: &[u8], i: usize, nb: usize, a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (b, y) in a.iter().enumerate().take(nb) {
        let s = &g[b * SUPER6_BYTES..(b + 1) * SUPER6_BYTES];
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..16 {
            let sc = s[SCALES6 + j * GROUP + i] as i8 as i32;
            let mut dot = 0i32;
            for c in 16 * j..16 * j + 16 {
                dot += q6(s, i, c) as i32 * y.qs[c] as i32;
            }
            sumi += dot * sc;
            summ += sc * y.bsums[j] as i32;
        }
        acc = ((sumi - 32 * summ) as f32).mul_add(h(s, i * 2) * y.d, acc);
    }
    acc
}
