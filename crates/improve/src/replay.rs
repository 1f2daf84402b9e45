//! Replay: the base model's own free text, sampled once per run and trained beside the
//! verified answers. Its loss pulls a candidate back toward the base's distribution of general
//! text — the cross-entropy on the sampled tokens is the KL divergence from the base in
//! expectation, and distillation (`top_k`) trains toward the base's distribution itself, which
//! a few hundred samples cannot be overfitted to — so a round can teach a skill without moving
//! the language the guard measures. No human text is involved: the
//! samples start from the beginning-of-text token alone.
use crate::rollout::{generate, raw_prompt, Job, Prefixes};
use crate::ImproveError;
use autodidact_engine::SamplingParams;
use autodidact_model::Model;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// How much of the base's text a run replays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplaySettings {
    /// Samples of the base's free text (0: no replay).
    pub samples: usize,
    /// Tokens per sample.
    pub tokens: usize,
    /// Their total loss weight relative to the verified answers' (see `autodidact_train::Replay`).
    pub share: f32,
    /// Distil the base's distribution over its `top_k` likeliest tokens at every replayed
    /// position instead of training on the sampled tokens (0). Runs recorded before this
    /// setting trained on the sampled tokens and resume that way.
    #[serde(default)]
    pub top_k: usize,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        // 512 samples at four times the answers' weight: what kept a promoted round within
        // the guard (+0.5 %); 128 at share 1 left every round about 6 % above it.
        ReplaySettings {
            samples: 512,
            tokens: 96,
            share: 4.0,
            top_k: 32,
        }
    }
}

impl ReplaySettings {
    /// No replay.
    pub fn off() -> Self {
        ReplaySettings {
            samples: 0,
            ..ReplaySettings::default()
        }
    }
}

/// What sampling kept.
pub struct Sampled {
    pub texts: Vec<String>,
    /// Samples dropped for sharing a run of words with an evaluation text.
    pub overlapping: usize,
}

/// Words in a row that make a sample count as overlapping an evaluation text.
const SHINGLE: usize = 8;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn shingles(text: &str) -> Vec<String> {
    words(text).windows(SHINGLE).map(|w| w.join(" ")).collect()
}

/// Samples `s.samples` texts from the base (temperature 1, no truncation of the distribution:
/// the base's own distribution is the anchor), dropping empty ones and any that shares a run
/// of eight words with one of `avoid` (the guard text), so replay never trains on evaluation
/// text even where the base has memorised it.
pub fn sample(
    model: &Model,
    s: &ReplaySettings,
    seed: u64,
    max_active: usize,
    avoid: &[&str],
) -> Result<Sampled, ImproveError> {
    let banned: HashSet<String> = avoid.iter().flat_map(|t| shingles(t)).collect();
    let prompt = raw_prompt(model, "");
    let jobs = (0..s.samples)
        .map(|i| Job {
            prompt: prompt.clone(),
            params: SamplingParams {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                repeat_penalty: 1.0,
                seed: seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                max_tokens: s.tokens,
                ..SamplingParams::default()
            },
            adapter: None,
        })
        .collect();
    let mut out: Vec<Option<String>> = vec![None; s.samples];
    generate(model, jobs, max_active, Prefixes::Shared, |i, o| {
        out[i] = Some(o.text);
        Ok(())
    })?;
    let mut overlapping = 0;
    let mut texts = Vec::new();
    for t in out.into_iter().flatten() {
        if t.trim().is_empty() {
            continue;
        }
        if shingles(&t).iter().any(|g| banned.contains(g)) {
            overlapping += 1;
            continue;
        }
        texts.push(t);
    }
    Ok(Sampled { texts, overlapping })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shingles_find_a_shared_run_of_words_whatever_the_case_and_punctuation() {
        let guard = "Everyone is permitted to copy and distribute verbatim copies of this license";
        let banned: HashSet<String> = shingles(guard).into_iter().collect();
        let hit = "so: everyone is permitted to COPY, and distribute verbatim copies!";
        let miss = "everyone is permitted to copy and share verbatim copies";
        assert!(shingles(hit).iter().any(|g| banned.contains(g)));
        assert!(!shingles(miss).iter().any(|g| banned.contains(g)));
        assert!(shingles("too short").is_empty());
    }

    #[test]
    fn a_run_recorded_before_replay_resumes_without_it() {
        let mut v = serde_json::to_value(crate::ImproveConfig::default()).unwrap();
        v.as_object_mut().unwrap().remove("replay");
        let c: crate::ImproveConfig = serde_json::from_value(v).unwrap();
        assert_eq!(c.replay.samples, 0);
        assert!(crate::ImproveConfig::default().replay.samples > 0);
    }
}
