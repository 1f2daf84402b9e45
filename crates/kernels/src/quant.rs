//! Scalar quantization and dequantization of rows, for every supported type.
//!
//! Dequantization follows ggml's block layouts exactly. Activation quantization (Q8_0, Q8_K) follows
//! ggml's rounding so dot products agree with llama.cpp's; weight quantization of the K-types is a
//! simple min/max scheme used to write test models, not llama.cpp's importance-weighted search.
use crate::blocks::{
    as_bytes_mut, cast, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0,
    Pod, QK_K,
};
use crate::{GgmlType, KernelError};
use half::{bf16, f16};

/// Rounds half to even, as ggml's `nearest_int`.
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    // Adding 1.5·2^23 leaves the rounded integer in the low mantissa bits; unlike
    // `round_ties_even`, this needs no libm call on baseline x86_64.
    if x.abs() < 4194304.0 {
        let bits = (x + 12582912.0).to_bits() as i32;
        (bits & 0x007f_ffff) - 0x0040_0000
    } else {
        x.round_ties_even() as i32
    }
}

fn cast_mut<T: Pod>(bytes: &mut [u8]) -> &mut [T] {
    let size = std::mem::size_of::<T>();
    assert_eq!(bytes.len() % size, 0);
    assert_eq!(bytes.as_ptr() as usize % std::mem::align_of::<T>(), 0);
    // SAFETY: T is Pod, length and alignment checked above.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut T, bytes.len() / size) }
}

/// Decodes one row of `ty` into `dst` (whose length is the element count).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let need = ty.row_bytes(dst.len())?;
    if src.len() != need {
        return Err(KernelError::Shape {
            op: "dequantize_row",
            detail: format!(
                "{} bytes for {} elements of {}",
                src.len(),
                dst.len(),
                ty.name()
            ),
        });
    }
    match ty {
        GgmlType::F32 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::Q4_0 => {
            for (b, y) in cast::<BlockQ4_0>(src).iter().zip(dst.chunks_exact_mut(32)) {
                let d = b.d.to_f32();
                for j in 0..16 {
                    y[j] = ((b.qs[j] & 0x0f) as i32 - 8) as f32 * d;
                    y[j + 16] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        GgmlType::Q5_0 => {
            for (b, y) in cast::<BlockQ5_0>(src).iter().zip(dst.chunks_exact_mut(32)) {
                let d = b.d.to_f32();
                let qh = u32::from_le_bytes(b.qh);
                for j in 0..16 {
                    let h0 = ((qh >> j) << 4) & 0x10;
                    let h1 = (qh >> (j + 12)) & 0x10;
                    y[j] = (((b.qs[j] & 0x0f) as u32 | h0) as i32 - 16) as f32 * d;
                    y[j + 16] = (((b.qs[j] >> 4) as u32 | h1) as i32 - 16) as f32 * d;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (b, y) in cast::<BlockQ8_0>(src).iter().zip(dst.chunks_exact_mut(32)) {
                let d = b.d.to_f32();
                for j in 0..32 {
                    y[j] = b.qs[j] as f32 * d;
                }
            }
        }
        GgmlType::Q4K => {
            for (b, y) in cast::<BlockQ4K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
                let d = b.d.to_f32();
                let min = b.dmin.to_f32();
                for j in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * j, &b.scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, &b.scales);
                    let q = &b.qs[32 * j..32 * j + 32];
                    let out = &mut y[64 * j..64 * j + 64];
                    for l in 0..32 {
                        out[l] = d * sc1 as f32 * (q[l] & 0x0f) as f32 - min * m1 as f32;
                        out[l + 32] = d * sc2 as f32 * (q[l] >> 4) as f32 - min * m2 as f32;
                    }
                }
            }
        }
        GgmlType::Q5K => {
            for (b, y) in cast::<BlockQ5K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
                let d = b.d.to_f32();
                let min = b.dmin.to_f32();
                for j in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * j, &b.scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, &b.scales);
                    let q = &b.qs[32 * j..32 * j + 32];
                    let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
                    let out = &mut y[64 * j..64 * j + 64];
                    for l in 0..32 {
                        let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                        let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                        out[l] = d * sc1 as f32 * ((q[l] & 0x0f) + h1) as f32 - min * m1 as f32;
                        out[l + 32] = d * sc2 as f32 * ((q[l] >> 4) + h2) as f32 - min * m2 as f32;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (b, y) in cast::<BlockQ6K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
                let d = b.d.to_f32();
                for n in 0..2 {
                    let ql = &b.ql[64 * n..];
                    let qh = &b.qh[32 * n..];
                    let sc = &b.scales[8 * n..];
                    let out = &mut y[128 * n..128 * n + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        out[l] = d * sc[is] as f32 * q1 as f32;
                        out[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                        out[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                        out[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
                    }
                }
            }
        }
        GgmlType::Q8K => {
            for (b, y) in cast::<BlockQ8K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
                for j in 0..QK_K {
                    y[j] = b.qs[j] as f32 * b.d;
                }
            }
        }
    }
    Ok(())
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn set_scale_min_k4(j: usize, q: &mut [u8; 12], sc: u8, m: u8) {
    if j < 4 {
        q[j] = (q[j] & 0xc0) | (sc & 63);
        q[j + 4] = (q[j + 4] & 0xc0) | (m & 63);
    } else {
        q[j + 4] = (sc & 0x0f) | ((m & 0x0f) << 4);
        q[j - 4] = (q[j - 4] & 0x3f) | ((sc >> 4) << 6);
        q[j] = (q[j] & 0x3f) | ((m >> 4) << 6);
    }
}

/// Encodes one row of f32 values as `ty` into `dst`.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    let need = ty.row_bytes(src.len())?;
    if dst.len() != need {
        return Err(KernelError::Shape {
            op: "quantize_row",
            detail: format!(
                "{} bytes for {} elements of {}",
                dst.len(),
                src.len(),
                ty.name()
            ),
        });
    }
    match ty {
        GgmlType::F32 => {
            for (x, c) in src.iter().zip(dst.chunks_exact_mut(4)) {
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (x, c) in src.iter().zip(dst.chunks_exact_mut(2)) {
                c.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (x, c) in src.iter().zip(dst.chunks_exact_mut(2)) {
                c.copy_from_slice(&bf16::from_f32(*x).to_le_bytes());
            }
        }
        GgmlType::Q4_0 => {
            for (x, b) in src.chunks_exact(32).zip(cast_mut::<BlockQ4_0>(dst)) {
                let max = signed_absmax(x);
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                b.d = f16::from_f32(d);
                for j in 0..16 {
                    let q0 = ((x[j] * id + 8.5) as i32).min(15) as u8;
                    let q1 = ((x[j + 16] * id + 8.5) as i32).min(15) as u8;
                    b.qs[j] = q0 | (q1 << 4);
                }
            }
        }
        GgmlType::Q5_0 => {
            for (x, b) in src.chunks_exact(32).zip(cast_mut::<BlockQ5_0>(dst)) {
                let max = signed_absmax(x);
                let d = max / -16.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                b.d = f16::from_f32(d);
                let mut qh = 0u32;
                for j in 0..16 {
                    let q0 = ((x[j] * id + 16.5) as i32).min(31) as u32;
                    let q1 = ((x[j + 16] * id + 16.5) as i32).min(31) as u32;
                    b.qs[j] = ((q0 & 0x0f) | ((q1 & 0x0f) << 4)) as u8;
                    qh |= ((q0 & 0x10) >> 4) << j;
                    qh |= ((q1 & 0x10) >> 4) << (j + 16);
                }
                b.qh = qh.to_le_bytes();
            }
        }
        GgmlType::Q8_0 => {
            for (x, b) in src.chunks_exact(32).zip(cast_mut::<BlockQ8_0>(dst)) {
                quantize_q8_0_block(x, b);
            }
        }
        GgmlType::Q8K => {
            for (x, b) in src.chunks_exact(QK_K).zip(cast_mut::<BlockQ8K>(dst)) {
                quantize_q8k_block(x, b);
            }
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            let five = ty == GgmlType::Q5K;
            let levels = if five { 31.0 } else { 15.0 };
            let block_bytes = ty.block_bytes();
            for (x, out) in src
                .chunks_exact(QK_K)
                .zip(dst.chunks_exact_mut(block_bytes))
            {
                // Per sub-block of 32: w ≈ scale*q - mn with q in 0..=levels.
                let mut scales = [0f32; 8];
                let mut mins = [0f32; 8];
                for j in 0..8 {
                    let s = &x[32 * j..32 * j + 32];
                    let lo = s.iter().cloned().fold(f32::INFINITY, f32::min).min(0.0);
                    let hi = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    scales[j] = (hi - lo) / levels;
                    mins[j] = -lo;
                }
                let max_scale = scales.iter().cloned().fold(0.0, f32::max);
                let max_min = mins.iter().cloned().fold(0.0, f32::max);
                let d = max_scale / 63.0;
                let dmin = max_min / 63.0;
                let mut sc_q = [0u8; 12];
                let mut ls = [0u8; 8];
                let mut lm = [0u8; 8];
                for j in 0..8 {
                    ls[j] = if d > 0.0 {
                        nearest_int(scales[j] / d).clamp(0, 63) as u8
                    } else {
                        0
                    };
                    lm[j] = if dmin > 0.0 {
                        nearest_int(mins[j] / dmin).clamp(0, 63) as u8
                    } else {
                        0
                    };
                    set_scale_min_k4(j, &mut sc_q, ls[j], lm[j]);
                }
                let d16 = f16::from_f32(d);
                let dmin16 = f16::from_f32(dmin);
                let mut q = [0u8; QK_K];
                for j in 0..8 {
                    let dl = d16.to_f32() * ls[j] as f32;
                    let ml = dmin16.to_f32() * lm[j] as f32;
                    for l in 0..32 {
                        let v = if dl > 0.0 {
                            nearest_int((x[32 * j + l] + ml) / dl)
                        } else {
                            0
                        };
                        q[32 * j + l] = v.clamp(0, levels as i32) as u8;
                    }
                }
                if five {
                    let b = &mut cast_mut::<BlockQ5K>(out)[0];
                    b.d = d16;
                    b.dmin = dmin16;
                    b.scales = sc_q;
                    b.qh = [0; 32];
                    for j in 0..4 {
                        for l in 0..32 {
                            let lo = q[64 * j + l];
                            let hi = q[64 * j + 32 + l];
                            b.qs[32 * j + l] = (lo & 0x0f) | ((hi & 0x0f) << 4);
                            if lo & 0x10 != 0 {
                                b.qh[l] |= 1 << (2 * j);
                            }
                            if hi & 0x10 != 0 {
                                b.qh[l] |= 2 << (2 * j);
                            }
                        }
                    }
                } else {
                    let b = &mut cast_mut::<BlockQ4K>(out)[0];
                    b.d = d16;
                    b.dmin = dmin16;
                    b.scales = sc_q;
                    for j in 0..4 {
                        for l in 0..32 {
                            b.qs[32 * j + l] = q[64 * j + l] | (q[64 * j + 32 + l] << 4);
                        }
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (x, b) in src.chunks_exact(QK_K).zip(cast_mut::<BlockQ6K>(dst)) {
                let mut scales = [0f32; 16];
                for (j, s) in scales.iter_mut().enumerate() {
                    *s = signed_absmax(&x[16 * j..16 * j + 16]) / -32.0;
                }
                let max = signed_absmax(&scales);
                let iscale = if max != 0.0 { -128.0 / max } else { 0.0 };
                b.d = f16::from_f32(if iscale != 0.0 { 1.0 / iscale } else { 0.0 });
                let d = b.d.to_f32();
                let mut q = [0u8; QK_K];
                for j in 0..16 {
                    let sc = nearest_int(iscale * scales[j]).clamp(-128, 127) as i8;
                    b.scales[j] = sc;
                    let dl = d * sc as f32;
                    for l in 0..16 {
                        let v = if dl != 0.0 {
                            nearest_int(x[16 * j + l] / dl)
                        } else {
                            0
                        };
                        q[16 * j + l] = (v.clamp(-32, 31) + 32) as u8;
                    }
                }
                for n in 0..2 {
                    for l in 0..32 {
                        let q1 = q[128 * n + l];
                        let q2 = q[128 * n + l + 32];
                        let q3 = q[128 * n + l + 64];
                        let q4 = q[128 * n + l + 96];
                        b.ql[64 * n + l] = (q1 & 0x0f) | ((q3 & 0x0f) << 4);
                        b.ql[64 * n + l + 32] = (q2 & 0x0f) | ((q4 & 0x0f) << 4);
                        b.qh[32 * n + l] =
                            (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The value with the largest magnitude, sign kept (ggml's choice for symmetric scales).
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Q8_0 activation block as ggml's `quantize_row_q8_0`: scale from the absolute maximum, stored in f16.
#[inline]
pub fn quantize_q8_0_block(x: &[f32], b: &mut BlockQ8_0) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    b.d = f16::from_f32(d);
    for (q, v) in b.qs.iter_mut().zip(x) {
        *q = nearest_int(v * id) as i8;
    }
}

dispatch_wider! {
    /// Q8_0 blocks of a whole row: the same numbers as [`quantize_q8_0_block`], written so the
    /// loops vectorize (16 lanes under AVX-512); activations of every matmul go through here.
    pub fn quantize_q8_0_row(x: &[f32], out: &mut [BlockQ8_0])
        = quantize_q8_0_row_plain where avx512, "avx512f,avx512bw,avx512vl"
}

#[inline(always)]
fn quantize_q8_0_row_plain(x: &[f32], out: &mut [BlockQ8_0]) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(32)) {
        // Lane-wise maxima first: a plain max-fold is a serial dependency chain.
        let mut m = [0f32; 16];
        for i in 0..16 {
            m[i] = x[i].abs().max(x[i + 16].abs());
        }
        let amax = m.iter().fold(0.0f32, |a, &v| a.max(v));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d);
        for (q, &v) in b.qs.iter_mut().zip(x) {
            // |v·id| ≤ 127, inside nearest_int's fast range.
            let bits = (v * id + 12582912.0).to_bits() as i32;
            *q = ((bits & 0x007f_ffff) - 0x0040_0000) as i8;
        }
    }
}

/// Q8_K activation block as ggml's `quantize_row_q8_K`: the largest-magnitude value maps to -127.
#[inline]
pub fn quantize_q8k_block(x: &[f32], b: &mut BlockQ8K) {
    let max = signed_absmax(x);
    if max == 0.0 {
        b.d = 0.0;
        b.qs = [0; QK_K];
        b.bsums = [0; 16];
        return;
    }
    let iscale = -127.0 / max;
    for (q, v) in b.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for j in 0..16 {
        b.bsums[j] = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum();
    }
    b.d = 1.0 / iscale;
}

dispatch_wider! {
    /// Q8_K blocks of a whole row: the same numbers as [`quantize_q8k_block`], written so the
    /// loops vectorize (K-quant matmuls quantize their activations through here).
    pub fn quantize_q8k_row(x: &[f32], out: &mut [BlockQ8K])
        = quantize_q8k_row_plain where avx512, "avx512f,avx512bw,avx512vl"
}

#[inline(always)]
fn quantize_q8k_row_plain(x: &[f32], out: &mut [BlockQ8K]) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut m = [0f32; 16];
        for c in x.chunks_exact(16) {
            for i in 0..16 {
                m[i] = m[i].max(c[i].abs());
            }
        }
        let amax = m.iter().fold(0.0f32, |a, &v| a.max(v));
        // ggml keeps the sign of the first element of largest magnitude.
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
        if max == 0.0 {
            b.d = 0.0;
            b.qs = [0; QK_K];
            b.bsums = [0; 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            // |v·iscale| ≤ 127 (plus an ulp), inside nearest_int's fast range.
            let bits = (iscale * v + 12582912.0).to_bits() as i32;
            *q = ((bits & 0x007f_ffff) - 0x0040_0000).min(127) as i8;
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

/// Quantizes a whole f32 row into a fresh byte vector of type `ty`.
pub fn quantize_to_vec(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>, KernelError> {
    let mut out = vec![0u8; ty.row_bytes(src.len())?];
    // Block structs need 2- or 4-byte alignment: quantize through an aligned buffer.
    let mut aligned = vec![0u32; out.len().div_ceil(4)];
    let bytes = &mut as_bytes_mut(&mut aligned)[..out.len()];
    quantize_row(ty, src, bytes)?;
    out.copy_from_slice(bytes);
    Ok(out)
}

/// Dequantizes a whole row into a fresh vector of `n` values.
pub fn dequantize_to_vec(ty: GgmlType, src: &[u8], n: usize) -> Result<Vec<f32>, KernelError> {
    let mut aligned = vec![0u32; src.len().div_ceil(4)];
    let bytes = &mut as_bytes_mut(&mut aligned)[..src.len()];
    bytes.copy_from_slice(src);
    let mut out = vec![0f32; n];
    dequantize_row(ty, bytes, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn row_quantizer_matches_the_block_quantizer() {
        use super::*;
        let x: Vec<f32> = (0..32 * 9)
            .map(|i| (((i * 2654435761u64 as usize) % 2001) as f32 - 1000.0) / 37.0)
            .collect();
        let zero = BlockQ8_0 {
            d: f16::ZERO,
            qs: [0; 32],
        };
        let mut row = vec![zero; 9];
        quantize_q8_0_row(&x, &mut row);
        for (b, chunk) in row.iter().zip(x.chunks_exact(32)) {
            let mut want = zero;
            quantize_q8_0_block(chunk, &mut want);
            assert_eq!((b.d, b.qs), (want.d, want.qs));
        }
    }

    #[test]
    fn q8k_row_quantizer_matches_the_block_quantizer() {
        use super::*;
        let mut x: Vec<f32> = (0..QK_K * 4)
            .map(|i| (((i * 2654435761u64 as usize) % 2001) as f32 - 1000.0) / 37.0)
            .collect();
        // A block of zeros, and one whose extremes tie in magnitude with opposite signs.
        x[QK_K..2 * QK_K].fill(0.0);
        x[2 * QK_K + 5] = -99.0;
        x[2 * QK_K + 9] = 99.0;
        let zero = BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; 16],
        };
        let mut row = vec![zero; 4];
        quantize_q8k_row(&x, &mut row);
        for (b, chunk) in row.iter().zip(x.chunks_exact(QK_K)) {
            let mut want = zero;
            quantize_q8k_block(chunk, &mut want);
            assert_eq!((b.d, b.qs, b.bsums), (want.d, want.qs, want.bsums));
        }
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for (x, want) in [
            (0.5f32, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (126.49, 126),
            (-127.5, -128),
            (1e7, 10_000_000),
        ] {
            assert_eq!(super::nearest_int(x), want, "{x}");
        }
        for i in -100_000..100_000 {
            let x = i as f32 * 0.013;
            assert_eq!(super::nearest_int(x), x.round_ties_even() as i32, "{x}");
        }
    }
}
