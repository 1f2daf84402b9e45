//! Tasks the model proposes itself: the current self, as a raw text model, continues a
//! numbered list drawn from a skill's training-side seeds (writing requests; ways of asking for
//! a sum). A new line is kept when the skill can still check it, it is no near-copy of a seed or
//! of another proposal, and it shares no run of words with anything held out — so practice
//! widens beyond the program's lists while evaluation stays disjoint from them.
use crate::rng::{fnv, Rng};
use crate::rollout::{generate, raw_prompt, Job, Prefixes};
use crate::task::normalize;
use crate::ImproveError;
use autodidact_engine::SamplingParams;
use autodidact_model::{LoraAdapter, Model};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// How many requests a round asks its model for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposeSettings {
    /// Lists continued (each proposes at most one request); 0: none.
    pub samples: usize,
    /// Seed requests shown in each list.
    pub shots: usize,
    pub temperature: f32,
}

impl Default for ProposeSettings {
    fn default() -> Self {
        ProposeSettings {
            samples: 96,
            shots: 6,
            temperature: 1.0,
        }
    }
}

impl ProposeSettings {
    pub fn off() -> Self {
        ProposeSettings {
            samples: 0,
            ..ProposeSettings::default()
        }
    }
}

/// Words in a row that make a proposal count as overlapping a held-out one.
const HELD_OUT_RUN: usize = 4;
/// The first line of a list of writing requests.
pub const REQUESTS_HEADER: &str = "Writing requests people asked an assistant:";
/// Share of words in common (Jaccard) that makes two requests near-copies.
const NEAR_COPY: f64 = 0.6;

fn word_set(s: &str) -> HashSet<String> {
    normalize(s).split(' ').map(String::from).collect()
}

fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    let common = a.intersection(b).count();
    common as f64 / (a.len() + b.len() - common).max(1) as f64
}

fn runs(s: &str, n: usize) -> HashSet<String> {
    let w: Vec<&str> = s.split(' ').collect();
    w.windows(n).map(|x| x.join(" ")).collect()
}

/// The list a proposal continues: `header`, `examples` numbered, then the next number.
pub fn list_prompt(header: &str, examples: &[&str]) -> String {
    let mut text = format!("{header}\n");
    for (i, e) in examples.iter().enumerate() {
        text.push_str(&format!("{}. {e}\n", i + 1));
    }
    text.push_str(&format!("{}.", examples.len() + 1));
    text
}

/// The line as a request, or `None` when it does not read as one: 4–24 words of plain text
/// that start with a capital letter and end with a full stop or a question mark.
pub fn clean(line: &str) -> Option<String> {
    let t = line.trim();
    let words = t.split_whitespace().count();
    let first = t.chars().next()?;
    let plain = t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " ,.'?!-:;".contains(c));
    let ends = t.ends_with('.') || t.ends_with('?');
    // A second sentence or a list marker inside the line is the list running on.
    let one = t
        .trim_end_matches(['.', '?'])
        .matches(['.', '?', '!'])
        .count()
        == 0;
    (first.is_ascii_uppercase() && (4..=24).contains(&words) && plain && ends && one)
        .then(|| t.to_string())
}

/// Keeps the proposals of `lines` (in order) that `clean` accepts, are no near-copy of `known`
/// or of an earlier kept one, and share no run of words with any of `held_out`.
pub fn select(
    lines: &[String],
    known: &[String],
    held_out: &[&str],
    clean: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let held: Vec<(HashSet<String>, HashSet<String>)> = held_out
        .iter()
        .map(|h| (word_set(h), runs(&normalize(h), HELD_OUT_RUN)))
        .collect();
    let mut seen: Vec<HashSet<String>> = known.iter().map(|k| word_set(k)).collect();
    let mut kept = Vec::new();
    for l in lines {
        let Some(r) = clean(l) else { continue };
        let ws = word_set(&r);
        let rs = runs(&normalize(&r), HELD_OUT_RUN);
        let leaks = held
            .iter()
            .any(|(hw, hr)| jaccard(&ws, hw) >= NEAR_COPY || !hr.is_disjoint(&rs));
        if leaks || seen.iter().any(|s| jaccard(&ws, s) >= NEAR_COPY) {
            continue;
        }
        seen.push(ws);
        kept.push(r);
    }
    kept
}

/// Inputs of one round's proposals.
pub struct Ask<'a> {
    pub model: &'a Model,
    pub adapter: Option<Arc<LoraAdapter>>,
    /// The lists' first line.
    pub header: &'a str,
    /// What the lists are drawn from (the training side's).
    pub seeds: &'a [String],
    /// Whether a line can be used, and as what.
    pub clean: &'a dyn Fn(&str) -> Option<String>,
    /// What is kept so far (seeds and earlier rounds' proposals): no near-copies of them.
    pub known: &'a [String],
    pub held_out: &'a [&'a str],
    pub settings: &'a ProposeSettings,
    pub seed: u64,
    pub max_active: usize,
}

/// Samples `settings.samples` list continuations and returns the new requests among them.
pub fn propose(a: &Ask) -> Result<Vec<String>, ImproveError> {
    if a.settings.samples == 0 || a.seeds.is_empty() {
        return Ok(Vec::new());
    }
    let mut rng = Rng::new(a.seed ^ fnv(b"propose"));
    let jobs: Vec<Job> = (0..a.settings.samples)
        .map(|i| {
            let mut shown: Vec<&str> = Vec::new();
            let mut tries = 0;
            while shown.len() < a.settings.shots.min(a.seeds.len()) && tries < 1000 {
                tries += 1;
                let s = rng.pick(a.seeds).as_str();
                if !shown.contains(&s) {
                    shown.push(s);
                }
            }
            Job {
                prompt: raw_prompt(a.model, &list_prompt(a.header, &shown)),
                params: SamplingParams {
                    temperature: a.settings.temperature,
                    seed: a.seed ^ fnv(format!("propose:{i}").as_bytes()),
                    max_tokens: 48,
                    stop: vec!["\n".into()],
                    ..SamplingParams::default()
                },
                adapter: a.adapter.clone(),
            }
        })
        .collect();
    let mut lines = vec![String::new(); jobs.len()];
    generate(a.model, jobs, a.max_active, Prefixes::Shared, |i, o| {
        lines[i] = o.text;
        Ok(())
    })?;
    Ok(select(&lines, a.known, a.held_out, a.clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_plain_sentence() {
        assert_eq!(
            clean(" Write a poem about the moon. ").as_deref(),
            Some("Write a poem about the moon.")
        );
        assert!(clean("Explain how rainbows form?").is_some());
        assert!(
            clean("write a poem about the moon.").is_none(),
            "lowercase start"
        );
        assert!(clean("Write a poem.").is_none(), "too short");
        assert!(clean("Write a poem about the moon").is_none(), "unfinished");
        assert!(
            clean("Write a poem. 5. Describe a cat.").is_none(),
            "run-on"
        );
        assert!(clean("Write a poem about <start_of_turn> now.").is_none());
    }

    #[test]
    fn near_copies_and_held_out_overlaps_are_dropped() {
        let known = vec!["Write a poem about the sea.".to_string()];
        let held = ["Explain why the sky is blue to a ten-year-old."];
        let lines: Vec<String> = [
            "Write a poem about the blue sea.",
            "Explain why the sky is blue to my grandmother.",
            "Describe a quiet morning in a small village.",
            "Describe a quiet morning in a tiny village.",
            "Give advice on learning to cook at home.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            select(&lines, &known, &held, &clean),
            [
                "Describe a quiet morning in a small village.",
                "Give advice on learning to cook at home."
            ]
        );
    }

    #[test]
    fn the_list_ends_at_the_next_number() {
        let p = list_prompt(REQUESTS_HEADER, &["Write a haiku.", "Describe a cat."]);
        assert!(p.ends_with(":\n1. Write a haiku.\n2. Describe a cat.\n3."));
    }
}
