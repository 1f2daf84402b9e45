//! Soft targets: a loss row may be trained toward a reference distribution (the base model's, on
//! replayed text) instead of a single label. The reference is kept as its `k` likeliest tokens
//! plus one bucket for the rest, and the loss is the KL divergence between the two bucketed
//! distributions, which is zero exactly where the model matches the reference — unlike the
//! cross-entropy on a sampled token, it cannot be lowered by memorising the sample.
use autodidact_kernels::vec::{exp_inplace, max_of, sum_of, tanh_inplace};

/// A reference distribution over one position: its `k` likeliest token ids with their
/// probabilities (summing to at most 1; the remainder is the mass of every other token).
#[derive(Debug, Clone, PartialEq)]
pub struct SoftTarget {
    pub ids: Vec<u32>,
    pub probs: Vec<f32>,
}

impl SoftTarget {
    /// The mass outside `ids`.
    fn rest(&self) -> f64 {
        (1.0 - self.probs.iter().map(|&p| p as f64).sum::<f64>()).max(0.0)
    }

    /// Entropy of the bucketed distribution, so that the reported loss is a divergence (0 at the
    /// reference) rather than a cross-entropy.
    fn entropy(&self) -> f64 {
        let h = |p: f64| if p > 0.0 { -p * p.ln() } else { 0.0 };
        self.probs.iter().map(|&p| h(p as f64)).sum::<f64>() + h(self.rest())
    }
}

/// Applies the optional soft-cap `cap · tanh(z / cap)` in place, returning the capped values
/// when there is a cap (its derivative needs them).
fn soft_cap(logits: &mut [f32], softcap: Option<f32>) -> Option<Vec<f32>> {
    softcap.map(|cap| {
        logits.iter_mut().for_each(|l| *l /= cap);
        tanh_inplace(logits);
        logits.iter_mut().for_each(|l| *l *= cap);
        logits.to_vec()
    })
}

/// The `k` likeliest tokens of one row of raw logits (after the soft-cap, at temperature 1).
pub fn top_k_row(logits: &mut [f32], softcap: Option<f32>, k: usize) -> SoftTarget {
    soft_cap(logits, softcap);
    let max = max_of(logits);
    logits.iter_mut().for_each(|l| *l -= max);
    exp_inplace(logits);
    let inv = 1.0 / sum_of(logits);
    let k = k.min(logits.len());
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    if k < idx.len() {
        idx.select_nth_unstable_by(k, |&a, &b| {
            logits[b as usize].total_cmp(&logits[a as usize])
        });
        idx.truncate(k);
    }
    idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    // Truncating keeps the whole vocabulary's capacity (1 MB a row for Gemma): every replayed
    // position holds its target for the whole training run, so 12,288 of them once held 12 GB.
    idx.shrink_to_fit();
    let probs = idx
        .iter()
        .map(|&i| (logits[i as usize] as f64 * inv) as f32)
        .collect();
    SoftTarget { ids: idx, probs }
}

/// One row of raw logits against a soft target: returns `−KL(target ‖ model)` over the buckets
/// (the target's tokens, and everything else as one), and — with `coef` — writes over `logits`
/// the gradient of `coef · KL` with respect to the raw logits. With `p` the model's
/// probabilities, `q` the target's, `r` the target's remaining mass and `R` the model's mass
/// outside the target's tokens, `∂KL/∂z_j` is `p_j − q_j` on the target's tokens and
/// `p_j · (1 − r/R)` elsewhere.
pub fn soft_cross_entropy_row(
    logits: &mut [f32],
    softcap: Option<f32>,
    target: &SoftTarget,
    coef: Option<f32>,
) -> f32 {
    let capped = soft_cap(logits, softcap);
    let max = max_of(logits);
    logits.iter_mut().for_each(|l| *l -= max);
    exp_inplace(logits);
    // The mass outside the target's tokens is summed on its own, not taken as `sum − inside`:
    // once the model is sharp, that difference is rounding noise of a 262k-term sum (or
    // negative), and `r / R` then blows the gradient up by orders of magnitude — which is how a
    // distilled replay once drove training to a uniform output.
    let at: Vec<f32> = target.ids.iter().map(|&i| logits[i as usize]).collect();
    target.ids.iter().for_each(|&i| logits[i as usize] = 0.0);
    let outside_sum = sum_of(logits);
    for (&i, &e) in target.ids.iter().zip(&at) {
        logits[i as usize] = e;
    }
    let inside: f64 = at.iter().map(|&e| e as f64).sum();
    let sum = inside + outside_sum;
    let log_sum = sum.ln();
    // Floored so that its log stays finite where every other token underflowed.
    let big_r = (outside_sum / sum).max(1e-30);
    let r = target.rest();
    let mut ce = 0f64;
    for (&i, &q) in target.ids.iter().zip(&target.probs) {
        if q > 0.0 {
            let logp = (logits[i as usize] as f64).max(f64::MIN_POSITIVE).ln() - log_sum;
            ce -= q as f64 * logp;
        }
    }
    if r > 0.0 {
        ce -= r * big_r.ln();
    }
    let kl = ce - target.entropy();
    if let Some(coef) = coef {
        let outside = (coef as f64 * (1.0 - r / big_r) / sum) as f32;
        let inv = (coef as f64 / sum) as f32;
        logits.iter_mut().for_each(|l| *l *= outside);
        for ((&i, &q), &e) in target.ids.iter().zip(&target.probs).zip(&at) {
            logits[i as usize] = e * inv - coef * q;
        }
        if let (Some(cap), Some(capped)) = (softcap, capped) {
            // d(cap·tanh(z/cap))/dz = 1 − tanh² = 1 − (l/cap)²
            for (g, &c) in logits.iter_mut().zip(&capped) {
                let th = c / cap;
                *g *= 1.0 - th * th;
            }
        }
    }
    -kl as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut r = autodidact_model::testing::Rng(seed);
        (0..n).map(|_| scale * r.f()).collect()
    }

    #[test]
    fn top_k_keeps_the_likeliest_tokens_in_order() {
        let mut z = vec![0.0, 3.0, 1.0, 2.0, -1.0];
        let t = top_k_row(&mut z, None, 3);
        assert_eq!(t.ids, vec![1, 3, 2]);
        assert_eq!(t.ids.capacity(), 3, "a target keeps only its k ids");
        let e: Vec<f64> = [0.0f64, 3.0, 1.0, 2.0, -1.0]
            .iter()
            .map(|v| v.exp())
            .collect();
        let s: f64 = e.iter().sum();
        for (&i, &p) in t.ids.iter().zip(&t.probs) {
            assert!((p as f64 - e[i as usize] / s).abs() < 1e-6);
        }
    }

    #[test]
    fn divergence_is_zero_at_the_target_and_positive_elsewhere() {
        for cap in [None, Some(3.0)] {
            let z = logits(50, 3, 4.0);
            let t = top_k_row(&mut z.clone(), cap, 8);
            let mut g = z.clone();
            let at = soft_cross_entropy_row(&mut g, cap, &t, Some(1.0));
            assert!(at.abs() < 1e-5, "−KL at the target: {at}");
            assert!(
                g.iter().all(|v| v.abs() < 1e-5),
                "no gradient at the target"
            );
            let other = logits(50, 4, 4.0);
            let off = soft_cross_entropy_row(&mut other.clone(), cap, &t, None);
            assert!(off < -1e-3, "−KL away from the target: {off}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for cap in [None, Some(2.0)] {
            let z = logits(30, 10, 4.0);
            let t = top_k_row(&mut logits(30, 11, 4.0), cap, 5);
            let f =
                |z: &[f32]| -soft_cross_entropy_row(&mut z.to_vec(), cap, &t, None) as f64 * 0.5;
            let mut g = z.clone();
            soft_cross_entropy_row(&mut g, cap, &t, Some(0.5));
            for i in 0..z.len() {
                let h = 1e-2f32;
                let mut p = z.clone();
                p[i] += h;
                let up = f(&p);
                p[i] -= 2.0 * h;
                let num = (up - f(&p)) / (2.0 * h as f64);
                assert!(
                    (g[i] as f64 - num).abs() < 2e-3 + 2e-2 * num.abs(),
                    "logit {i}: analytic {} numeric {num}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn a_sharp_model_gets_a_bounded_gradient() {
        // A Gemma-sized row where the model keeps ~1e-9 of its mass outside the target's tokens
        // while the target leaves 2 % there: the exact gradient on those tokens sums to
        // R − r ≈ −0.02, whatever the rounding of the row's sum.
        let v = 262_144;
        let mut z = logits(v, 21, 1.0);
        // Sixteen neighbours: one in each lane of the vectorised sum, which then loses every
        // small term added after them.
        let ids: Vec<u32> = (100..116).collect();
        for &i in &ids {
            z[i as usize] = 32.0;
        }
        let t = SoftTarget {
            ids: ids.clone(),
            probs: vec![0.98 / 16.0; 16],
        };
        let mut g = z.clone();
        let l = soft_cross_entropy_row(&mut g, None, &t, Some(1.0));
        assert!(l.is_finite());
        let outside: f64 = g
            .iter()
            .enumerate()
            .filter(|(i, _)| !ids.contains(&(*i as u32)))
            .map(|(_, &x)| x as f64)
            .sum();
        assert!(
            (outside + 0.02).abs() < 1e-3,
            "outside gradient sums to {outside}"
        );
        assert!(
            g.iter().all(|x| x.abs() <= 1.0),
            "a gradient entry beyond 1"
        );
    }
}
