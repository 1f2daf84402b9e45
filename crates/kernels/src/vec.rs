//! Element-wise and row operations on f32 slices (norms, activations, softmax).

/// `1 / rms(x)`, the sum of squares accumulated in f64 as ggml does.
#[inline]
pub fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let ss: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    1.0 / ((ss / x.len() as f64) as f32 + eps).sqrt()
}

/// `out = x / rms(x) * w` with ggml's formula: mean of squares plus `eps`, summed in f32.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let scale = rms_scale(x, eps);
    for ((o, v), g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// In-place RMS norm.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let scale = rms_scale(x, eps);
    for (v, g) in x.iter_mut().zip(w) {
        *v = *v * scale * g;
    }
}

pub const SQRT_2_OVER_PI: f32 = 0.797_884_6;
pub const GELU_COEF_A: f32 = 0.044_715;

/// GELU, tanh approximation (as ggml's `gelu`).
#[inline]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `gate = act(gate) * up`, the gated FFN's middle.
pub fn gated(gate: &mut [f32], up: &[f32], act: fn(f32) -> f32) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = act(*g) * u;
    }
}

/// In-place softmax; returns nothing for an empty row.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

pub fn scale_inplace(x: &mut [f32], s: f32) {
    for v in x.iter_mut() {
        *v *= s;
    }
}

/// log-softmax value of index `i` of `logits` (for perplexity and logprobs).
pub fn log_softmax_at(logits: &[f32], i: usize) -> f32 {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&v| ((v - max) as f64).exp()).sum();
    logits[i] - max - sum.ln() as f32
}

/// `e^x` to within 2 ulp for finite inputs (inputs beyond ±88 saturate to 0 / f32::MAX),
/// branch-free so loops over slices vectorize: `2^n · p(r)` with `r = x − n·ln 2` and a
/// degree-6 polynomial for `e^r` on `|r| ≤ ln 2 / 2` (Cephes' coefficients).
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest via the 1.5·2^23 trick: a libm call would stop vectorization.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    // `t`'s ulp is 1, so its low mantissa bits hold `n` itself: reading them avoids a float→int
    // `as` cast, whose saturating semantics the compiler cannot vectorize.
    let n_bits = t.to_bits().wrapping_sub(MAGIC.to_bits());
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r2 + r + 1.0;
    f32::from_bits(e.to_bits().wrapping_add(n_bits << 23))
}

/// `tanh(x) = sign(x) · (1 − 2 / (e^{2|x|} + 1))`, absolute error below 1e-7.
#[inline(always)]
pub fn tanh_approx(x: f32) -> f32 {
    let e = exp_approx(2.0 * x.abs());
    let t = 1.0 - 2.0 / (e + 1.0);
    t.copysign(x)
}

fn exp_plain(x: &mut [f32]) {
    for v in x {
        *v = exp_approx(*v);
    }
}

fn tanh_plain(x: &mut [f32]) {
    for v in x {
        *v = tanh_approx(*v);
    }
}

dispatch_wider! {
    /// `x = e^x` element-wise, 16 lanes at a time where the CPU has AVX-512.
    pub fn exp_inplace(x: &mut [f32]) = exp_plain where avx512f, "avx512f"
}

dispatch_wider! {
    /// `x = tanh(x)` element-wise, 16 lanes at a time where the CPU has AVX-512.
    pub fn tanh_inplace(x: &mut [f32]) = tanh_plain where avx512f, "avx512f"
}

/// `t = tanh(√(2/π)·(g + a·g³))`, the transcendental part of GELU-tanh, 16 lanes at a time.
pub fn gelu_core(g: &[f32], t: &mut [f32]) {
    for (t, &x) in t.iter_mut().zip(g) {
        *t = SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x);
    }
    tanh_inplace(t);
}

/// `t = σ(g) = 1 / (1 + e^{−g})`, 16 lanes at a time.
pub fn sigmoid(g: &[f32], t: &mut [f32]) {
    for (t, &x) in t.iter_mut().zip(g) {
        *t = -x;
    }
    exp_inplace(t);
    for t in t.iter_mut() {
        *t = 1.0 / (1.0 + *t);
    }
}

/// `g = gelu(g) ∘ u` with vectorized transcendentals (what [`gated`] with [`gelu`] computes, to
/// within 2e-7 of tanh's absolute error).
pub fn gelu_gated_inplace(g: &mut [f32], u: &[f32]) {
    let mut t = [0f32; 256];
    for (g, u) in g.chunks_mut(256).zip(u.chunks(256)) {
        let t = &mut t[..g.len()];
        gelu_core(g, t);
        for ((g, &t), &u) in g.iter_mut().zip(t.iter()).zip(u) {
            *g = 0.5 * *g * (1.0 + t) * u;
        }
    }
}

/// `g = silu(g) ∘ u` with a vectorized exponential.
pub fn silu_gated_inplace(g: &mut [f32], u: &[f32]) {
    let mut t = [0f32; 256];
    for (g, u) in g.chunks_mut(256).zip(u.chunks(256)) {
        let t = &mut t[..g.len()];
        sigmoid(g, t);
        for ((g, &t), &u) in g.iter_mut().zip(t.iter()).zip(u) {
            *g = *g * t * u;
        }
    }
}

/// `dst = src` widened from f16, 16 values per instruction where the CPU has AVX-512 (the `half`
/// crate's slice conversion takes 8 at a time and was most of batched decoding's attention), 8
/// with NEON's `fcvtl` (which `half` only uses on cores with FEAT_FP16).
pub fn f16_to_f32(src: &[half::f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32 lengths");
    #[cfg(target_arch = "x86_64")]
    if crate::simd::cpu_features().avx512f {
        // SAFETY: the CPU has AVX-512F (checked above); the lengths are equal.
        return unsafe { f16_to_f32_avx512(src, dst) };
    }
    #[cfg(target_arch = "aarch64")]
    if crate::simd::cpu_features().neon {
        // SAFETY: the CPU has NEON (checked above); the lengths are equal.
        return unsafe { crate::simd::neon::f16_to_f32(src, dst) };
    }
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn f16_to_f32_avx512(src: &[half::f16], dst: &mut [f32]) {
    use core::arch::x86_64::*;
    let whole = src.len() / 16 * 16;
    for i in (0..whole).step_by(16) {
        let h = _mm256_loadu_si256(src.as_ptr().add(i) as *const __m256i);
        _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
    }
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(&src[whole..], &mut dst[whole..]);
}

dispatch_wider! {
    /// `y += a · x`, 16 lanes at a time where the CPU has AVX-512.
    pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) = axpy_plain where avx512f, "avx512f,fma"
}

#[inline(always)]
fn axpy_plain(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = a.mul_add(x, *y);
    }
}

dispatch_wider! {
    /// Maximum of a slice (−∞ when empty; NaN never wins), 16 lanes at a time where the CPU has
    /// AVX-512.
    pub fn max_of(x: &[f32]) -> f32 = max_of_plain where avx512f, "avx512f"
}

/// In 16 independent lanes so it vectorizes; `if v > m` keeps NaN out as `maxps` does.
#[inline(always)]
fn max_of_plain(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    rest.iter()
        .chain(&m)
        .fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a })
}

dispatch_wider! {
    /// Index of the first largest value (0 when empty or all NaN): greedy decoding's choice, one
    /// vectorized pass for the maximum and one for its first position, chunk by chunk.
    pub fn argmax(x: &[f32]) -> usize = argmax_plain where avx512f, "avx512f"
}

#[inline(always)]
fn argmax_plain(x: &[f32]) -> usize {
    let best = max_of_plain(x);
    for (i, c) in x.chunks(64).enumerate() {
        // A whole chunk compared without an early exit vectorizes; the hit is then found in it.
        if c.iter().fold(false, |hit, &v| hit | (v == best)) {
            return i * 64 + c.iter().position(|&v| v == best).unwrap_or(0);
        }
    }
    0
}

dispatch_wider! {
    /// `Σ e^(x_i − shift)` (a softmax denominator): [`exp_approx`] in 16 lanes, each 1024-value
    /// chunk's sum combined in f64, so a 262k vocabulary costs tens of microseconds.
    pub fn sum_exp(x: &[f32], shift: f32) -> f64 = sum_exp_plain where avx512f, "avx512f"
}

#[inline(always)]
fn sum_exp_plain(x: &[f32], shift: f32) -> f64 {
    let mut total = 0f64;
    for chunk in x.chunks(1024) {
        let mut s = [0f32; 16];
        let lanes = chunk.chunks_exact(16);
        let rest = lanes.remainder();
        for c in lanes {
            for i in 0..16 {
                s[i] += exp_approx(c[i] - shift);
            }
        }
        total += rest
            .iter()
            .map(|&v| exp_approx(v - shift))
            .chain(s)
            .map(|v| v as f64)
            .sum::<f64>();
    }
    total
}

/// Sum of a slice in 16 f32 lanes, combined in f64 (vectorizes; error ~1e-7 relative).
pub fn sum_of(x: &[f32]) -> f64 {
    let mut s = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            s[i] += c[i];
        }
    }
    rest.iter().chain(&s).map(|&v| v as f64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_max_and_sum_agree_with_plain_folds() {
        let x: Vec<f32> = (0..1003)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 3.0)
            .collect();
        assert_eq!(
            max_of(&x),
            x.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
        );
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        assert!((sum_of(&x) - want).abs() < 1e-3);
        assert_eq!(max_of(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn sum_exp_matches_f64_exponentials_on_both_paths() {
        let x: Vec<f32> = (0..5003)
            .map(|i| ((i * 7919) % 1000) as f32 / 40.0 - 20.0)
            .collect();
        let want: f64 = x.iter().map(|&v| (v as f64 - 4.5).exp()).sum();
        for f in [sum_exp, sum_exp_plain] {
            let got = f(&x, 4.5);
            assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
            assert_eq!(f(&[], 0.0), 0.0);
            assert_eq!(f(&[f32::NEG_INFINITY, 0.0], 0.0), 1.0);
        }
    }

    #[test]
    fn argmax_finds_the_first_largest_on_every_path() {
        let mut x: Vec<f32> = (0..1003)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 3.0)
            .collect();
        x[17] = f32::NAN;
        x[700] = 50.0;
        x[900] = 50.0;
        for f in [argmax, argmax_plain] {
            assert_eq!(f(&x), 700);
            assert_eq!(f(&x[..700]), (0..700).find(|&i| x[i] == 6.99).unwrap());
            assert_eq!(f(&[]), 0);
            assert_eq!(f(&[f32::NAN, f32::NAN]), 0);
            assert_eq!(f(&[f32::NAN, -1.0, 3.0, 3.0]), 2);
        }
        assert_eq!(max_of_plain(&x), 50.0);
    }

    #[test]
    fn f16_widening_and_axpy_match_scalar_steps() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.37).collect();
        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        let mut wide = vec![0f32; 37];
        f16_to_f32(&h, &mut wide);
        assert!(wide.iter().zip(&h).all(|(&w, &h)| w == h.to_f32()));
        let mut y = vec![1f32; 37];
        axpy(&mut y, 0.5, &x);
        assert!(y.iter().zip(&x).all(|(&y, &x)| y == 0.5f32.mul_add(x, 1.0)));
    }

    #[test]
    fn fast_exp_and_tanh_are_accurate() {
        let mut worst_exp = 0f32;
        let mut worst_tanh = 0f32;
        for i in -20_000..20_000 {
            let x = i as f32 * 0.004_3;
            let e = exp_approx(x);
            let want = (x as f64).exp() as f32;
            worst_exp = worst_exp.max(((e - want) / want).abs());
            worst_tanh = worst_tanh.max((tanh_approx(x) - x.tanh()).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
        assert!(worst_tanh < 2e-7, "tanh absolute error {worst_tanh}");
        assert_eq!(exp_approx(-200.0), exp_approx(-87.3));
        let mut v: Vec<f32> = (0..37).map(|i| i as f32 * 0.1 - 2.0).collect();
        let want: Vec<f32> = v.iter().map(|&x| exp_approx(x)).collect();
        exp_inplace(&mut v);
        assert_eq!(v, want);
    }

    #[test]
    fn vectorized_gated_activations_match_the_scalar_ones() {
        let g: Vec<f32> = (0..1001).map(|i| (i as f32 - 500.0) * 0.017).collect();
        let u: Vec<f32> = (0..1001)
            .map(|i| ((i * 37) % 101) as f32 * 0.03 - 1.5)
            .collect();
        for (vectorized, act) in [
            (
                gelu_gated_inplace as fn(&mut [f32], &[f32]),
                gelu as fn(f32) -> f32,
            ),
            (silu_gated_inplace, silu),
        ] {
            let mut want = g.clone();
            gated(&mut want, &u, act);
            let mut got = g.clone();
            vectorized(&mut got, &u);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }
}
