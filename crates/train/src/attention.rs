//! Causal (and sliding-window) attention over packed sequences, forward and backward, with GQA.
//! Each sequence of a pack attends only to itself, from position 0. Scores are recomputed in the
//! backward pass instead of stored: a `(T, T)` matrix per head would dominate memory at long T.
use autodidact_kernels::vec::exp_inplace;
use autodidact_kernels::{sgemm, Accumulate, MatMut, MatRef};
use rayon::prelude::*;
use std::ops::Range;

#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Keys further back than this many positions are masked (sliding-window layers).
    pub window: Option<usize>,
}

impl AttnShape {
    fn qd(&self) -> usize {
        self.n_head * self.head_dim
    }
    fn kvd(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
    fn group(&self) -> usize {
        self.n_head / self.n_head_kv
    }
}

/// `p (t, t)` = row softmax of `q_h · k_gᵀ` under the causal/window mask (`q` already scaled).
fn probabilities(s: &AttnShape, q: MatRef, k: MatRef, p: &mut [f32]) {
    let t = q.rows();
    sgemm(MatMut::new(p, t, t), q, k.t(), Accumulate::Overwrite, 1.0);
    for (i, row) in p.chunks_mut(t).enumerate() {
        let lo = s.window.map_or(0, |w| (i + 1).saturating_sub(w));
        let live = &mut row[lo..=i];
        let max = live.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        live.iter_mut().for_each(|v| *v -= max);
        exp_inplace(live);
        let inv = 1.0 / live.iter().sum::<f32>();
        live.iter_mut().for_each(|v| *v *= inv);
        row[..lo].fill(0.0);
        row[i + 1..].fill(0.0);
    }
}

/// One (sequence, kv head) unit of work: its query heads' outputs side by side `(t, group · hd)`.
struct Task {
    seq: usize,
    g: usize,
}

fn tasks(s: &AttnShape, seqs: &[Range<usize>]) -> Vec<Task> {
    (0..seqs.len())
        .flat_map(|seq| (0..s.n_head_kv).map(move |g| Task { seq, g }))
        .collect()
}

/// `out (N, n_head · hd)` from `q (N, n_head · hd)`, `k`, `v (N, n_kv · hd)`.
pub fn attention_forward(
    s: &AttnShape,
    seqs: &[Range<usize>],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
) {
    let (qd, kvd, hd, group) = (s.qd(), s.kvd(), s.head_dim, s.group());
    let work = tasks(s, seqs);
    let results: Vec<Vec<f32>> = work
        .par_iter()
        .map(|task| {
            let r = &seqs[task.seq];
            let t = r.len();
            let mut p = vec![0f32; t * t];
            let mut o = vec![0f32; t * group * hd];
            let kg = MatRef::strided(&k[r.start * kvd + task.g * hd..], t, hd, kvd, 1);
            let vg = MatRef::strided(&v[r.start * kvd + task.g * hd..], t, hd, kvd, 1);
            for j in 0..group {
                let h = task.g * group + j;
                let qh = MatRef::strided(&q[r.start * qd + h * hd..], t, hd, qd, 1);
                probabilities(s, qh, kg, &mut p);
                sgemm(
                    MatMut::strided(&mut o[j * hd..], t, hd, group * hd, 1),
                    MatRef::new(&p, t, t),
                    vg,
                    Accumulate::Overwrite,
                    1.0,
                );
            }
            o
        })
        .collect();
    for (task, o) in work.iter().zip(results) {
        let r = &seqs[task.seq];
        let w = group * hd;
        for (i, row) in o.chunks(w).enumerate() {
            let at = (r.start + i) * qd + task.g * w;
            out[at..at + w].copy_from_slice(row);
        }
    }
}

/// Backward of [`attention_forward`]: overwrites `dq`, `dk` and `dv` given `dout`.
///
/// With `P = softmax(S)` and `O = P·V`: `dV = Pᵀ·dO`, `dP = dO·Vᵀ`,
/// `dS = P ∘ (dP − rowsum(P ∘ dP))`, `dQ = dS·K`, `dK = dSᵀ·Q`.
pub struct AttnGrads<'a> {
    pub dq: &'a mut [f32],
    pub dk: &'a mut [f32],
    pub dv: &'a mut [f32],
}

pub fn attention_backward(
    s: &AttnShape,
    seqs: &[Range<usize>],
    (q, k, v): (&[f32], &[f32], &[f32]),
    dout: &[f32],
    grads: AttnGrads,
) {
    let (qd, kvd, hd, group) = (s.qd(), s.kvd(), s.head_dim, s.group());
    let work = tasks(s, seqs);
    let results: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = work
        .par_iter()
        .map(|task| {
            let r = &seqs[task.seq];
            let t = r.len();
            let mut p = vec![0f32; t * t];
            let mut dp = vec![0f32; t * t];
            let mut dq = vec![0f32; t * group * hd];
            let mut dk = vec![0f32; t * hd];
            let mut dv = vec![0f32; t * hd];
            let kg = MatRef::strided(&k[r.start * kvd + task.g * hd..], t, hd, kvd, 1);
            let vg = MatRef::strided(&v[r.start * kvd + task.g * hd..], t, hd, kvd, 1);
            for j in 0..group {
                let h = task.g * group + j;
                let qh = MatRef::strided(&q[r.start * qd + h * hd..], t, hd, qd, 1);
                let doh = MatRef::strided(&dout[r.start * qd + h * hd..], t, hd, qd, 1);
                probabilities(s, qh, kg, &mut p);
                // dV += Pᵀ·dO
                sgemm(
                    MatMut::new(&mut dv, t, hd),
                    MatRef::new(&p, t, t).t(),
                    doh,
                    Accumulate::Add,
                    1.0,
                );
                // dP = dO·Vᵀ, then dS in place
                sgemm(
                    MatMut::new(&mut dp, t, t),
                    doh,
                    vg.t(),
                    Accumulate::Overwrite,
                    1.0,
                );
                for (prow, dprow) in p.chunks(t).zip(dp.chunks_mut(t)) {
                    let dot: f32 = prow.iter().zip(dprow.iter()).map(|(a, b)| a * b).sum();
                    for (d, &pv) in dprow.iter_mut().zip(prow) {
                        *d = pv * (*d - dot);
                    }
                }
                // dQ = dS·K, dK += dSᵀ·Q
                sgemm(
                    MatMut::strided(&mut dq[j * hd..], t, hd, group * hd, 1),
                    MatRef::new(&dp, t, t),
                    kg,
                    Accumulate::Overwrite,
                    1.0,
                );
                sgemm(
                    MatMut::new(&mut dk, t, hd),
                    MatRef::new(&dp, t, t).t(),
                    qh,
                    Accumulate::Add,
                    1.0,
                );
            }
            (dq, dk, dv)
        })
        .collect();
    for (task, (dq, dk, dv)) in work.iter().zip(results) {
        let r = &seqs[task.seq];
        let w = group * hd;
        for i in 0..r.len() {
            let at = (r.start + i) * qd + task.g * w;
            grads.dq[at..at + w].copy_from_slice(&dq[i * w..(i + 1) * w]);
            let at = (r.start + i) * kvd + task.g * hd;
            grads.dk[at..at + hd].copy_from_slice(&dk[i * hd..(i + 1) * hd]);
            grads.dv[at..at + hd].copy_from_slice(&dv[i * hd..(i + 1) * hd]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: u64) -> Vec<f32> {
        let mut r = autodidact_model::testing::Rng(seed);
        (0..n).map(|_| r.f()).collect()
    }

    #[test]
    fn attention_backward_matches_finite_differences() {
        // Two packed sequences, GQA 4:2, and a window shorter than the longer sequence.
        let s = AttnShape {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 4,
            window: Some(3),
        };
        let seqs = [0..5, 5..8];
        let n = 8;
        let q = vals(n * 16, 1);
        let k = vals(n * 8, 2);
        let v = vals(n * 8, 3);
        let dout = vals(n * 16, 4);
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            let mut o = vec![0f32; n * 16];
            attention_forward(&s, &seqs, q, k, v, &mut o);
            o.iter()
                .zip(&dout)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum()
        };
        let (mut dq, mut dk, mut dv) = (vec![0f32; n * 16], vec![0f32; n * 8], vec![0f32; n * 8]);
        attention_backward(
            &s,
            &seqs,
            (&q, &k, &v),
            &dout,
            AttnGrads {
                dq: &mut dq,
                dk: &mut dk,
                dv: &mut dv,
            },
        );
        let h = 1e-2f32;
        let check = |analytic: &[f32], which: usize| {
            for i in 0..analytic.len() {
                let mut bufs = [q.clone(), k.clone(), v.clone()];
                bufs[which][i] += h;
                let up = loss(&bufs[0], &bufs[1], &bufs[2]);
                bufs[which][i] -= 2.0 * h;
                let down = loss(&bufs[0], &bufs[1], &bufs[2]);
                let num = (up - down) / (2.0 * h as f64);
                let tol = 2e-3 + 2e-2 * num.abs();
                assert!(
                    (analytic[i] as f64 - num).abs() <= tol,
                    "input {which} element {i}: {} vs {num}",
                    analytic[i]
                );
            }
        };
        check(&dq, 0);
        check(&dk, 1);
        check(&dv, 2);
    }
}
