//! AdamW with decoupled weight decay, global-norm gradient clipping and learning-rate schedules
//! (warmup, then cosine, linear or constant), over the tensors of a LoRA adapter.
use autodidact_model::LoraAdapter;
use rayon::prelude::*;

/// The adapter's trainable tensors in a fixed order: each pair's `A`, then its `B`, then the
/// token rows if any.
pub fn tensors(ad: &LoraAdapter) -> Vec<&[f32]> {
    ad.layers
        .iter()
        .flat_map(|l| l.pairs.iter().flatten())
        .flat_map(|p| [p.a.as_slice(), p.b.as_slice()])
        .chain(ad.tokens.iter().map(|t| t.delta.as_slice()))
        .collect()
}

pub fn tensors_mut(ad: &mut LoraAdapter) -> Vec<&mut [f32]> {
    ad.layers
        .iter_mut()
        .flat_map(|l| l.pairs.iter_mut().flatten())
        .flat_map(|p| [p.a.as_mut_slice(), p.b.as_mut_slice()])
        .chain(ad.tokens.iter_mut().map(|t| t.delta.as_mut_slice()))
        .collect()
}

/// Sets every gradient to zero.
pub fn zero(ad: &mut LoraAdapter) {
    for t in tensors_mut(ad) {
        t.fill(0.0);
    }
}

/// The L2 norm over all tensors, summed in f64.
pub fn global_norm(ad: &LoraAdapter) -> f32 {
    tensors(ad)
        .par_iter()
        .map(|t| t.iter().map(|&v| v as f64 * v as f64).sum::<f64>())
        .sum::<f64>()
        .sqrt() as f32
}

/// Scales gradients so their global norm is at most `max_norm`; returns the norm before.
pub fn clip(grads: &mut LoraAdapter, max_norm: f32) -> f32 {
    let norm = global_norm(grads);
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        for t in tensors_mut(grads) {
            t.iter_mut().for_each(|v| *v *= s);
        }
    }
    norm
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamW {
    /// PyTorch's and Hugging Face's defaults (no weight decay unless asked for).
    fn default() -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// First and second moments, one flat vector per tensor, and the number of steps taken.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    pub step: u64,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl AdamState {
    pub fn new(params: &LoraAdapter) -> Self {
        let shapes: Vec<usize> = tensors(params).iter().map(|t| t.len()).collect();
        AdamState {
            step: 0,
            m: shapes.iter().map(|&n| vec![0.0; n]).collect(),
            v: shapes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }
}

impl AdamW {
    /// One update of `params` from `grads` at learning rate `lr`, as `torch.optim.AdamW`:
    /// `p ← p − lr·wd·p`, then `p ← p − lr · m̂ / (√v̂ + eps)` with bias-corrected moments.
    pub fn step(
        &self,
        params: &mut LoraAdapter,
        grads: &LoraAdapter,
        state: &mut AdamState,
        lr: f32,
    ) {
        state.step += 1;
        let t = state.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = *self;
        tensors_mut(params)
            .into_par_iter()
            .zip(tensors(grads).into_par_iter())
            .zip(state.m.par_iter_mut().zip(state.v.par_iter_mut()))
            .for_each(|((p, g), (m, v))| {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *p -= lr * weight_decay * *p;
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    let mh = *m / bc1;
                    let vh = *v / bc2;
                    *p -= lr * mh / (vh.sqrt() + eps);
                }
            });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decay {
    Cosine,
    Linear,
    Constant,
}

impl Decay {
    pub fn parse(s: &str) -> Option<Decay> {
        match s {
            "cosine" => Some(Decay::Cosine),
            "linear" => Some(Decay::Linear),
            "constant" => Some(Decay::Constant),
            _ => None,
        }
    }
}

/// Linear warmup over `warmup` steps, then `decay` to zero at `total`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub peak: f32,
    pub warmup: usize,
    pub total: usize,
    pub decay: Decay,
}

impl Schedule {
    /// The learning rate of step `s` (0-based). Warmup reaches the peak on step `warmup - 1`, so
    /// no step is spent at learning rate zero.
    pub fn lr(&self, s: usize) -> f32 {
        if s < self.warmup {
            return self.peak * (s + 1) as f32 / self.warmup as f32;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((s - self.warmup) as f32 / span as f32).min(1.0);
        self.peak
            * match self.decay {
                Decay::Cosine => 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()),
                Decay::Linear => 1.0 - progress,
                Decay::Constant => 1.0,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autodidact_model::{LayerLora, LoraPair, Target};

    fn one_pair(a: Vec<f32>, b: Vec<f32>) -> LoraAdapter {
        let mut l = LayerLora::default();
        l.set(
            Target::Q,
            Some(LoraPair {
                rank: 1,
                n_in: a.len(),
                n_out: b.len(),
                a,
                b,
            }),
        );
        LoraAdapter {
            tokens: None,
            arch: autodidact_model::Arch::Llama,
            alpha: 1.0,
            layers: vec![l],
        }
    }

    #[test]
    fn adamw_minimizes_a_quadratic_and_matches_a_hand_computed_first_step() {
        // f(p) = Σ (p − 3)², gradient 2(p − 3).
        let mut p = one_pair(vec![0.0, 1.0], vec![5.0]);
        let opt = AdamW {
            weight_decay: 0.1,
            ..AdamW::default()
        };
        let mut st = AdamState::new(&p);
        let grad = |p: &LoraAdapter| {
            let mut g = p.clone();
            for t in tensors_mut(&mut g) {
                t.iter_mut().for_each(|v| *v = 2.0 * (*v - 3.0));
            }
            g
        };
        let g = grad(&p);
        opt.step(&mut p, &g, &mut st, 0.1);
        // First step: m̂ = g, v̂ = g², so the move is lr·sign(g) after decay of lr·wd·p.
        let q = &p.layers[0].get(Target::Q).unwrap();
        assert!((q.a[0] - 0.1).abs() < 1e-5, "{}", q.a[0]);
        assert!((q.a[1] - (1.0 - 0.01 + 0.1)).abs() < 1e-5, "{}", q.a[1]);
        assert!((q.b[0] - (5.0 - 0.05 - 0.1)).abs() < 1e-5, "{}", q.b[0]);
        for _ in 0..2000 {
            let g = grad(&p);
            opt.step(&mut p, &g, &mut st, 0.05);
        }
        for t in tensors(&p) {
            for &v in t {
                // Weight decay pulls the optimum slightly toward zero.
                assert!((v - 3.0).abs() < 0.2, "{v}");
            }
        }
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let mut g = one_pair(vec![3.0, 0.0], vec![4.0]);
        assert!((clip(&mut g, 1.0) - 5.0).abs() < 1e-6);
        assert!((global_norm(&g) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn schedules_warm_up_then_decay() {
        let s = Schedule {
            peak: 1.0,
            warmup: 4,
            total: 14,
            decay: Decay::Cosine,
        };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert_eq!(s.lr(4), 1.0);
        assert!((s.lr(9) - 0.5).abs() < 1e-6);
        assert!(s.lr(14).abs() < 1e-6);
        let l = Schedule {
            decay: Decay::Linear,
            ..s
        };
        assert!((l.lr(9) - 0.5).abs() < 1e-6);
        let c = Schedule {
            decay: Decay::Constant,
            ..s
        };
        assert_eq!(c.lr(13), 1.0);
    }
}
