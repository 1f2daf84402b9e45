//! Row operations of the transformer with their backward passes side by side: RMSNorm, RoPE, the
//! gated activations, the final logit soft-cap and cross-entropy. Forwards are the inference
//! kernels' own (`autodidact_kernels::vec`, `autodidact_model::apply_rope`), so training sees the
//! numbers inference computes.
use autodidact_kernels::vec::{
    exp_inplace, gelu, gelu_core, gelu_gated_inplace, max_of, rms_scale, sigmoid, silu,
    silu_gated_inplace, sum_of, tanh_inplace, GELU_COEF_A, SQRT_2_OVER_PI,
};
use autodidact_model::{Activation, RopeStyle, RopeTable};
use rayon::prelude::*;

/// Backward of `y = x · s · w`, `s = 1 / sqrt(mean(x²) + eps)` (kernels::vec::rms_norm), per row
/// of `d = w.len()` elements (per head for Gemma's QK-norm): `dx += s·(dy∘w) − x · s³/d · Σ(dy∘w∘x)`.
pub fn rms_norm_backward(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32]) {
    let d = w.len();
    dx.par_chunks_mut(d)
        .zip(x.par_chunks(d).zip(dy.par_chunks(d)))
        .for_each(|(dx, (x, dy))| rms_row_backward(x, w, eps, dy, dx));
}

fn rms_row_backward(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32]) {
    let s = rms_scale(x, eps);
    let dot: f64 = x
        .iter()
        .zip(dy)
        .zip(w)
        .map(|((&x, &g), &w)| (x * g * w) as f64)
        .sum();
    let k = s * s * s * (dot / x.len() as f64) as f32;
    for (((o, &x), &g), &w) in dx.iter_mut().zip(x).zip(dy).zip(w) {
        *o += s * g * w - x * k;
    }
}

/// Backward of [`autodidact_model::apply_rope`]: a rotation's adjoint rotates by the opposite angle.
pub fn rope_backward(style: RopeStyle, dy: &mut [f32], n_heads: usize, hd: usize, t: &RopeTable) {
    let half = hd / 2;
    dy.par_chunks_mut(n_heads * hd)
        .enumerate()
        .for_each(|(tok, row)| {
            let cos = &t.cos[tok * half..(tok + 1) * half];
            let sin = &t.sin[tok * half..(tok + 1) * half];
            for head in row.chunks_exact_mut(hd) {
                for i in 0..half {
                    let (a, b) = match style {
                        RopeStyle::Neox => (i, i + half),
                        RopeStyle::Norm => (2 * i, 2 * i + 1),
                    };
                    let (g0, g1) = (head[a], head[b]);
                    head[a] = g0 * cos[i] + g1 * sin[i];
                    head[b] = -g0 * sin[i] + g1 * cos[i];
                }
            }
        });
}

/// The activation and its derivative at `x` (the scalar reference of the slice versions).
#[inline]
pub fn act_and_grad(a: Activation, x: f32) -> (f32, f32) {
    match a {
        Activation::GeluTanh => {
            let u = SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x);
            let th = u.tanh();
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF_A * x * x);
            (gelu(x), 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du)
        }
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            (silu(x), s * (1.0 + x * (1.0 - s)))
        }
    }
}

/// Elements per task of the element-wise passes: large enough to amortize scheduling.
const CHUNK: usize = 4096;

/// `t` = the transcendental part of the activation at `g`: `tanh(√(2/π)(g + a·g³))` for GELU,
/// `σ(g)` for SiLU.
fn act_core(a: Activation, g: &[f32], t: &mut [f32]) {
    match a {
        Activation::GeluTanh => gelu_core(g, t),
        Activation::Silu => sigmoid(g, t),
    }
}

/// Forward `h = act(g) ∘ u`: the inference pass's own vectorized gated activation.
pub fn gated_forward(a: Activation, g: &[f32], u: &[f32], h: &mut [f32]) {
    h.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .for_each(|(h, (g, u))| {
            h.copy_from_slice(g);
            match a {
                Activation::GeluTanh => gelu_gated_inplace(h, u),
                Activation::Silu => silu_gated_inplace(h, u),
            }
        });
}

/// Backward of [`gated_forward`]: `dg = dh ∘ u ∘ act'(g)`, `du = dh ∘ act(g)` (overwrites both).
pub fn gated_backward(
    a: Activation,
    g: &[f32],
    u: &[f32],
    dh: &[f32],
    dg: &mut [f32],
    du: &mut [f32],
) {
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(
            g.par_chunks(CHUNK)
                .zip(u.par_chunks(CHUNK))
                .zip(dh.par_chunks(CHUNK)),
        )
        .for_each(|((dg, du), ((g, u), dh))| {
            // dg holds the core (tanh or σ) until overwritten element by element.
            act_core(a, g, dg);
            for ((((dg, du), &x), &u), &dh) in
                dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(dh)
            {
                let t = *dg;
                let (f, fp) = match a {
                    Activation::GeluTanh => {
                        let dinner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF_A * x * x);
                        (
                            0.5 * x * (1.0 + t),
                            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner,
                        )
                    }
                    Activation::Silu => (x * t, t * (1.0 + x * (1.0 - t))),
                };
                *dg = dh * u * fp;
                *du = dh * f;
            }
        });
}

/// One row of logits after the optional soft-cap `l = cap · tanh(z / cap)`: the log-probability
/// of `label`, and — when `coef` is given — the gradient of `coef · (−log p(label))` with respect
/// to the raw logits `z`, written over `logits`.
pub fn cross_entropy_row(
    logits: &mut [f32],
    softcap: Option<f32>,
    label: usize,
    coef: Option<f32>,
) -> f32 {
    // The capped values are needed again for the cap's derivative.
    let capped = softcap.map(|cap| {
        logits.iter_mut().for_each(|l| *l /= cap);
        tanh_inplace(logits);
        logits.iter_mut().for_each(|l| *l *= cap);
        logits.to_vec()
    });
    let max = max_of(logits);
    let at_label = logits[label] - max;
    logits.iter_mut().for_each(|l| *l -= max);
    exp_inplace(logits);
    let sum = sum_of(logits);
    let logp = at_label - sum.ln() as f32;
    if let Some(coef) = coef {
        let inv = (1.0 / sum) as f32;
        for l in logits.iter_mut() {
            *l *= coef * inv;
        }
        logits[label] -= coef;
        if let (Some(cap), Some(capped)) = (softcap, capped) {
            // d(cap·tanh(z/cap))/dz = 1 − tanh² = 1 − (l/cap)²
            for (g, &c) in logits.iter_mut().zip(&capped) {
                let th = c / cap;
                *g *= 1.0 - th * th;
            }
        }
    }
    logp
}

#[cfg(test)]
// Finite differences perturb coordinate i of the input and compare with element i of the gradient.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use autodidact_kernels::vec::rms_norm;
    use autodidact_model::apply_rope;

    fn vals(n: usize, seed: u64) -> Vec<f32> {
        let mut r = autodidact_model::testing::Rng(seed);
        (0..n).map(|_| r.f()).collect()
    }

    /// Central finite difference of the scalar `f` along coordinate `i` of `x`.
    fn fd(x: &[f32], i: usize, f: &dyn Fn(&[f32]) -> f64) -> f64 {
        let h = 1e-2f32;
        let mut p = x.to_vec();
        p[i] += h;
        let up = f(&p);
        p[i] -= 2.0 * h;
        (up - f(&p)) / (2.0 * h as f64)
    }

    fn close(analytic: f32, numeric: f64, what: &str) {
        let tol = 2e-3 + 2e-2 * numeric.abs();
        assert!(
            (analytic as f64 - numeric).abs() <= tol,
            "{what}: analytic {analytic} vs finite difference {numeric}"
        );
    }

    /// `Σ dy ∘ f(x)`: a scalar whose gradient is the backward of `f` applied to `dy`.
    fn weighted(y: &[f32], dy: &[f32]) -> f64 {
        y.iter().zip(dy).map(|(a, b)| *a as f64 * *b as f64).sum()
    }

    #[test]
    fn rms_norm_backward_matches_finite_differences() {
        let (rows, d) = (3, 16);
        let x = vals(rows * d, 1);
        let w: Vec<f32> = vals(d, 2).iter().map(|v| 1.0 + 0.5 * v).collect();
        let dy = vals(rows * d, 3);
        let f = |x: &[f32]| {
            let mut y = vec![0f32; x.len()];
            for (o, xi) in y.chunks_mut(d).zip(x.chunks(d)) {
                rms_norm(xi, &w, 1e-6, o);
            }
            weighted(&y, &dy)
        };
        let mut dx = vec![0f32; rows * d];
        rms_norm_backward(&x, &w, 1e-6, &dy, &mut dx);
        for i in 0..x.len() {
            close(dx[i], fd(&x, i, &f), "rms_norm");
        }
    }

    #[test]
    fn rope_backward_matches_finite_differences() {
        for style in [RopeStyle::Neox, RopeStyle::Norm] {
            let (tokens, heads, hd) = (3, 2, 8);
            let table = RopeTable {
                cos: vals(tokens * hd / 2, 4)
                    .iter()
                    .map(|a| (3.0 * a).cos())
                    .collect(),
                sin: vals(tokens * hd / 2, 4)
                    .iter()
                    .map(|a| (3.0 * a).sin())
                    .collect(),
            };
            let x = vals(tokens * heads * hd, 5);
            let dy = vals(x.len(), 6);
            let f = |x: &[f32]| {
                let mut y = x.to_vec();
                apply_rope(style, &mut y, heads, hd, &table);
                weighted(&y, &dy)
            };
            let mut dx = dy.clone();
            rope_backward(style, &mut dx, heads, hd, &table);
            for i in 0..x.len() {
                close(dx[i], fd(&x, i, &f), "rope");
            }
        }
    }

    #[test]
    fn gated_activations_backward_match_finite_differences() {
        for a in [Activation::GeluTanh, Activation::Silu] {
            let n = 24;
            let g: Vec<f32> = vals(n, 7).iter().map(|v| 3.0 * v).collect();
            let u = vals(n, 8);
            let dh = vals(n, 9);
            let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
            gated_backward(a, &g, &u, &dh, &mut dg, &mut du);
            let fg = |g: &[f32]| {
                let mut h = vec![0f32; n];
                gated_forward(a, g, &u, &mut h);
                weighted(&h, &dh)
            };
            let fu = |u: &[f32]| {
                let mut h = vec![0f32; n];
                gated_forward(a, &g, u, &mut h);
                weighted(&h, &dh)
            };
            for i in 0..n {
                close(dg[i], fd(&g, i, &fg), "gate");
                close(du[i], fd(&u, i, &fu), "up");
            }
        }
    }

    #[test]
    fn cross_entropy_with_softcap_matches_finite_differences() {
        for cap in [None, Some(2.0)] {
            let z: Vec<f32> = vals(20, 10).iter().map(|v| 4.0 * v).collect();
            let label = 7;
            let f = |z: &[f32]| -cross_entropy_row(&mut z.to_vec(), cap, label, None) as f64 * 0.5;
            let mut g = z.clone();
            let logp = cross_entropy_row(&mut g, cap, label, Some(0.5));
            assert!(logp < 0.0);
            for i in 0..z.len() {
                close(g[i], fd(&z, i, &f), "cross-entropy");
            }
        }
    }
}
