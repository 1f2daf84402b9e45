//! Turning logits into a token: penalties, temperature, top-k, top-p, min-p, seeded draws, logprobs.
use crate::EngineError;
use serde::{Deserialize, Serialize};

/// Per-sequence sampling settings (OpenAI and llama.cpp names).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables; divides positive logits of recent tokens (llama.cpp's repeat penalty).
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Logprobs: `Some(k)` reports the chosen token's log-probability and `k` top alternatives
    /// per generated token; `None` skips the softmax over the vocabulary altogether.
    pub top_logprobs: Option<usize>,
    /// Never sample end-of-generation tokens (llama.cpp's `ignore_eos`; benchmarks, load tests).
    #[serde(default)]
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
            top_logprobs: None,
            ignore_eos: false,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::BadParam(m.to_string()));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p must be in [0, 1]");
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return bad("repeat_penalty must be > 0");
        }
        if !self.frequency_penalty.is_finite() || !self.presence_penalty.is_finite() {
            return bad("penalties must be finite");
        }
        Ok(())
    }
}

/// PCG-XSH-RR: small, fast, and the same sequence for the same seed on every platform.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut r = Rng {
            state: seed.wrapping_add(0x853c_49e6_748f_ea9b),
        };
        r.next_u32();
        r
    }

    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
}

/// A token with its log-probability under the model (before temperature and truncation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
}

/// What the sampler picked, with logprobs when asked.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub token: u32,
    /// The chosen token's log-probability, when logprobs were asked (`top_logprobs` is `Some`).
    pub logprob: Option<f32>,
    pub top: Vec<TokenLogprob>,
}

/// Sampling state of one sequence: its settings, RNG and recent tokens.
pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
    recent: Vec<u32>,
}

/// `(max, ln Σ e^(x − max))`, so that a logprob is `x − max − lse`.
fn log_softmax(logits: &[f32]) -> (f32, f32) {
    use autodidact_kernels::vec::{max_of, sum_exp};
    // One pass in L1-sized chunks (a batch's logit rows do not stay in cache between passes):
    // each chunk's maximum, then its exponentials against the running maximum, rescaling the sum
    // when the maximum rises. Vectorized; exp within 2 ulp, sums in f64.
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f64);
    for c in logits.chunks(4096) {
        let m = max_of(c);
        if m > max {
            if max > f32::NEG_INFINITY {
                sum *= ((max - m) as f64).exp();
            }
            max = m;
        }
        if max > f32::NEG_INFINITY {
            sum += sum_exp(c, max);
        }
    }
    if max == f32::NEG_INFINITY {
        return (max, 0.0);
    }
    (max, sum.ln() as f32)
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = Rng::new(params.seed);
        Sampler {
            params,
            rng,
            recent: Vec::new(),
        }
    }

    /// Records prompt tokens so repetition penalties see them.
    pub fn observe(&mut self, tokens: &[u32]) {
        self.recent.extend_from_slice(tokens);
        let keep = self.params.penalty_last_n.max(1) * 4;
        if self.recent.len() > keep {
            self.recent.drain(..self.recent.len() - keep);
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> Sampled {
        self.sample_banned(logits, &[])
    }

    /// As [`Sampler::sample`], never choosing a token in `banned` (`ignore_eos`); logprobs still
    /// describe the model's own distribution.
    pub fn sample_banned(&mut self, logits: &[f32], banned: &[u32]) -> Sampled {
        self.sample_from(logits, logits, banned)
    }

    /// As [`Sampler::sample`], choosing among `masked` (−∞ for disallowed tokens) while logprobs
    /// describe the model's own distribution, `logits`.
    pub fn sample_masked(&mut self, logits: &[f32], masked: &[f32]) -> Sampled {
        self.sample_from(logits, masked, &[])
    }

    fn sample_from(&mut self, logits: &[f32], choose_in: &[f32], banned: &[u32]) -> Sampled {
        let token = self.choose(choose_in, banned);
        self.observe(&[token]);
        let Some(k) = self.params.top_logprobs else {
            return Sampled {
                token,
                logprob: None,
                top: Vec::new(),
            };
        };
        // Logprobs report the model's distribution, before penalties, truncation and masks.
        let (max, lse) = log_softmax(logits);
        let lp = |v: f32| v - max - lse;
        let top = top_k_indices(logits, k)
            .into_iter()
            .map(|i| TokenLogprob {
                id: i as u32,
                logprob: lp(logits[i]),
            })
            .collect();
        Sampled {
            token,
            logprob: Some(lp(logits[token as usize])),
            top,
        }
    }

    fn choose(&mut self, logits: &[f32], banned: &[u32]) -> u32 {
        let p = &self.params;
        let penalised =
            p.repeat_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0;
        let mut adjusted;
        let logits = if penalised {
            adjusted = logits.to_vec();
            let window = &self.recent[self.recent.len().saturating_sub(p.penalty_last_n)..];
            let mut counts = std::collections::HashMap::new();
            for &t in window {
                *counts.entry(t).or_insert(0u32) += 1;
            }
            for (&t, &n) in &counts {
                let Some(l) = adjusted.get_mut(t as usize) else {
                    continue;
                };
                if *l > 0.0 {
                    *l /= p.repeat_penalty;
                } else {
                    *l *= p.repeat_penalty;
                }
                *l -= n as f32 * p.frequency_penalty + p.presence_penalty;
            }
            &adjusted[..]
        } else {
            logits
        };
        let allowed = |i: &usize| !banned.contains(&(*i as u32));
        if p.temperature <= 0.0 {
            let best = argmax(logits);
            if banned.is_empty() || allowed(&(best as usize)) {
                return best;
            }
            // The best few, enough that one is allowed (or the vocabulary is all banned).
            let k = (banned.len() + 1).min(logits.len());
            return top_k_indices(logits, k)
                .into_iter()
                .find(allowed)
                .map_or(best, |i| i as u32);
        }
        if (p.top_k == 0 || p.top_k >= logits.len()) && p.top_p >= 1.0 && p.min_p <= 0.0 {
            // Nothing truncates the distribution: sample it directly, without sorting the
            // vocabulary (the same distribution as the sorted path below).
            if let Some(t) = sample_all(&mut self.rng, logits, p.temperature, &allowed) {
                return t;
            }
        }
        // Candidates: top-k (or everything), sorted by logit.
        let k = if p.top_k == 0 {
            logits.len()
        } else {
            p.top_k.min(logits.len())
        };
        // Banned tokens are dropped from a longer list, which leaves the best k allowed ones.
        let mut cand: Vec<(u32, f32)> = top_k_indices(logits, (k + banned.len()).min(logits.len()))
            .into_iter()
            .filter(allowed)
            .take(k)
            .map(|i| (i as u32, logits[i] / p.temperature))
            .collect();
        if cand.is_empty() {
            // Everything is banned (a vocabulary of end tokens only): the best token, not a failure.
            cand.push((argmax(logits), 0.0));
        }
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        // min-p: drop tokens below min_p times the best one's probability.
        let mut n = probs.len();
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            n = probs.iter().take_while(|&&x| x >= floor).count().max(1);
        }
        // top-p: the smallest prefix whose mass reaches top_p.
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = 0;
            for &x in &probs[..n] {
                acc += x;
                keep += 1;
                if acc >= p.top_p {
                    break;
                }
            }
            n = keep.max(1);
        }
        cand.truncate(n);
        probs.truncate(n);
        let mass: f32 = probs.iter().sum();
        let mut r = self.rng.next_f32() * mass;
        for (c, &pr) in cand.iter().zip(&probs) {
            if r < pr {
                return c.0;
            }
            r -= pr;
        }
        cand[n - 1].0
    }
}

/// A draw from softmax(logits / temperature) over the allowed tokens, in one pass over the
/// vocabulary and a second over its running sums; `None` when no token is allowed or the
/// logits are not finite.
fn sample_all(
    rng: &mut Rng,
    logits: &[f32],
    temperature: f32,
    allowed: &impl Fn(&usize) -> bool,
) -> Option<u32> {
    let max = logits
        .iter()
        .enumerate()
        .filter(|(i, v)| allowed(i) && !v.is_nan())
        .map(|(_, &v)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    let inv_t = 1.0 / temperature;
    let weights: Vec<f32> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if allowed(&i) && !v.is_nan() {
                ((v - max) * inv_t).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = weights.iter().map(|&w| w as f64).sum();
    let mut r = rng.next_f32() as f64 * total;
    let mut last = None;
    for (i, &w) in weights.iter().enumerate() {
        if w == 0.0 {
            continue;
        }
        if r < w as f64 {
            return Some(i as u32);
        }
        r -= w as f64;
        last = Some(i as u32);
    }
    last
}

/// Index of the first largest logit (NaN never wins; 0 when there is none).
pub fn argmax(x: &[f32]) -> u32 {
    autodidact_kernels::vec::argmax(x) as u32
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k_indices(x: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(x.len());
    if k == 0 {
        return Vec::new();
    }
    let before = |a: &(f32, usize), b: &(f32, usize)| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    };
    if k <= 256 {
        // One pass with a sorted buffer of the best k: almost every value loses a single comparison
        // against the current k-th best, so this is linear in the vocabulary with a tiny constant.
        // Once the buffer is full, a whole chunk whose (vectorized) maximum does not beat the k-th
        // best is skipped: a later value equal to it loses on index, and NaN never gets in.
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (c, chunk) in x.chunks(64).enumerate() {
            if best.len() == k && autodidact_kernels::vec::max_of(chunk) <= best[k - 1].0 {
                continue;
            }
            for (j, &v) in chunk.iter().enumerate() {
                let i = c * 64 + j;
                if best.len() == k {
                    let last = best[k - 1];
                    if before(&last, &(v, i)).is_le() {
                        continue;
                    }
                    best.pop();
                }
                let at = best.partition_point(|e| before(e, &(v, i)).is_lt());
                best.insert(at, (v, i));
            }
        }
        return best.into_iter().map(|(_, i)| i).collect();
    }
    let mut idx: Vec<usize> = (0..x.len()).collect();
    let cmp = |a: &usize, b: &usize| before(&(x[*a], *a), &(x[*b], *b));
    if k < x.len() {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..100).map(|i| ((i * 37) % 100) as f32 / 10.0).collect()
    }

    #[test]
    fn argmax_takes_the_first_largest_and_skips_nan() {
        let plain = |x: &[f32]| {
            let mut best = None::<usize>;
            for (i, &v) in x.iter().enumerate() {
                if !v.is_nan() && best.is_none_or(|b| v > x[b]) {
                    best = Some(i);
                }
            }
            best.unwrap_or(0) as u32
        };
        for n in [0usize, 1, 15, 16, 17, 100, 1000] {
            let mut x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 263) as f32 - 100.0).collect();
            assert_eq!(argmax(&x), plain(&x), "n={n}");
            if n > 20 {
                // A tie in the tail and one in the first lanes: the first index wins.
                let top = x.iter().cloned().fold(f32::MIN, f32::max);
                x[n - 1] = top;
                x[3] = top;
                x[5] = f32::NAN;
                assert_eq!(argmax(&x), plain(&x), "n={n}");
                assert!(argmax(&x) <= 3);
            }
        }
        assert_eq!(argmax(&[f32::NEG_INFINITY; 40]), 0);
        assert_eq!(argmax(&[f32::NAN, 1.0, 2.0]), 2);
    }

    #[test]
    fn top_k_matches_a_full_sort() {
        let mut x: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 613) as f32 * 0.01)
            .collect();
        x[17] = f32::NEG_INFINITY;
        let mut want: Vec<usize> = (0..x.len()).collect();
        want.sort_by(|&a, &b| x[b].partial_cmp(&x[a]).unwrap().then(a.cmp(&b)));
        for k in [1, 2, 40, 256, 257, 1000] {
            assert_eq!(top_k_indices(&x, k), want[..k], "k={k}");
        }
    }

    #[test]
    fn greedy_picks_the_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy());
        let l = logits();
        assert_eq!(s.sample(&l).token, argmax(&l));
    }

    #[test]
    fn same_seed_same_draws_other_seed_other_draws() {
        let l = vec![1.0f32; 1000];
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                temperature: 1.0,
                ..Default::default()
            });
            (0..20).map(|_| s.sample(&l).token).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn chunked_log_softmax_matches_f64_over_a_vocabulary() {
        // The maximum rises chunk after chunk, and one chunk is all −∞ (a constrained mask).
        let mut x: Vec<f32> = (0..20_000)
            .map(|i| ((i * 7919) % 997) as f32 / 50.0 + i as f32 / 1000.0)
            .collect();
        x[4096..8192].fill(f32::NEG_INFINITY);
        let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = x
            .iter()
            .map(|&v| (v as f64 - max as f64).exp())
            .sum::<f64>()
            .ln();
        let (m, l) = log_softmax(&x);
        assert_eq!(m, max);
        assert!((l as f64 - lse).abs() < 1e-5, "{l} vs {lse}");
        assert_eq!(log_softmax(&[f32::NEG_INFINITY; 3]).0, f32::NEG_INFINITY);
    }

    #[test]
    fn untruncated_sampling_follows_the_softmax_and_skips_banned_tokens() {
        // p = softmax([0, ln 3, -inf, 0]) = [1/5, 3/5, 0, 1/5]; token 3 banned -> [1/4, 3/4].
        let logits = [0.0, 3f32.ln(), f32::NEG_INFINITY, 0.0];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            seed: 5,
            ..SamplingParams::default()
        });
        let mut counts = [0usize; 4];
        for _ in 0..8000 {
            counts[s.sample_banned(&logits, &[3]).token as usize] += 1;
        }
        assert_eq!((counts[2], counts[3]), (0, 0));
        let share = counts[1] as f64 / 8000.0;
        assert!((share - 0.75).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn top_k_one_is_greedy_and_logprobs_are_normalised() {
        let l = logits();
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            top_logprobs: Some(3),
            ..Default::default()
        });
        let out = s.sample(&l);
        assert_eq!(out.token, argmax(&l));
        assert_eq!(out.top.len(), 3);
        assert_eq!(out.top[0].id, out.token);
        let total: f32 = l
            .iter()
            .map(|&v| (v - l[out.token as usize] + 0.0).exp())
            .sum::<f32>();
        assert!((out.logprob.unwrap() + total.ln()).abs() < 1e-3);
    }

    #[test]
    fn top_p_and_min_p_restrict_to_the_head() {
        let mut l = vec![0.0f32; 50];
        l[3] = 10.0;
        l[4] = 9.9;
        for seed in 0..50 {
            let mut s = Sampler::new(SamplingParams {
                seed,
                top_k: 0,
                top_p: 0.9,
                min_p: 0.0,
                temperature: 1.0,
                ..Default::default()
            });
            assert!(matches!(s.sample(&l).token, 3 | 4));
            let mut s = Sampler::new(SamplingParams {
                seed,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.5,
                temperature: 1.0,
                ..Default::default()
            });
            assert!(matches!(s.sample(&l).token, 3 | 4));
        }
    }

    #[test]
    fn banned_tokens_are_never_chosen_but_keep_their_logprobs() {
        let mut l = vec![0.0f32; 300];
        l[7] = 9.0;
        l[250] = 8.0;
        l[30] = 7.5;
        let banned = [7u32, 250];
        let mut g = Sampler::new(SamplingParams {
            top_logprobs: Some(2),
            ..SamplingParams::greedy()
        });
        let out = g.sample_banned(&l, &banned);
        assert_eq!(out.token, 30);
        assert_eq!(out.top[0].id, 7);
        let full = Sampler::new(SamplingParams {
            top_logprobs: Some(0),
            ..SamplingParams::greedy()
        })
        .sample(&l);
        assert_eq!(full.token, 7);
        assert!(full.top.is_empty());
        assert!((out.logprob.unwrap() - (full.logprob.unwrap() - 1.5)).abs() < 1e-5);
        assert_eq!(
            Sampler::new(SamplingParams::greedy()).sample(&l).logprob,
            None
        );
        for (seed, top_k) in (0..40).zip([0, 1, 2, 3, 40].into_iter().cycle()) {
            let mut s = Sampler::new(SamplingParams {
                seed,
                top_k,
                top_p: 1.0,
                min_p: 0.0,
                temperature: 2.0,
                penalty_last_n: 8,
                repeat_penalty: if seed % 2 == 0 { 1.0 } else { 1.1 },
                ..Default::default()
            });
            let t = s.sample_banned(&l, &banned).token;
            assert!(!banned.contains(&t), "seed {seed}, top_k {top_k}: {t}");
        }
    }

    #[test]
    fn repetition_penalties_push_away_from_seen_tokens() {
        let mut l = vec![0.0f32; 10];
        l[2] = 5.0;
        l[3] = 4.9;
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            presence_penalty: 1.0,
            ..Default::default()
        });
        s.observe(&[2]);
        assert_eq!(s.sample(&l).token, 3);
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.3,
            ..Default::default()
        });
        s.observe(&[2]);
        assert_eq!(s.sample(&l).token, 3);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(SamplingParams {
            temperature: -1.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(SamplingParams {
            top_p: 0.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(SamplingParams {
            temperature: f32::NAN,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(SamplingParams::default().validate().is_ok());
    }
}
