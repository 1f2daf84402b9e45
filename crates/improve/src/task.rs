//! Tasks, verdicts, and the checks every verifier shares: degenerate replies (an echo of the
//! request, a repetition loop, an empty or cut-off reply) never pass, whatever the skill.
use serde::{Deserialize, Serialize};

/// Which side of the train/held-out wall a task is generated for. Phrasings and, where the
/// problem space allows, problems themselves are split between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Eval,
}

/// One task as put to the assistant, with what its verifier needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub skill: String,
    /// Difficulty level (index into the skill's levels).
    pub level: usize,
    /// The level's name, e.g. `add-2` (2-digit addition): what reports group by.
    pub sub: String,
    /// The problem's identity regardless of phrasing: held-out keys are never trained on.
    pub key: String,
    /// The user's chat message.
    pub prompt: String,
    pub check: Check,
}

/// What a verifier compares a reply with. Answer keys live here and are used by verifiers only,
/// never as training targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Check {
    Integer {
        value: i64,
    },
    Constraints {
        list: Vec<crate::instructions::Constraint>,
        /// The writing request itself (without constraints), for echo detection.
        request: String,
    },
    Fields {
        expected: serde_json::Map<String, serde_json::Value>,
    },
    User {
        fields: std::collections::BTreeMap<String, String>,
    },
    /// The value of the fact of kind `fact` the user stated (see [`crate::recall`]).
    Recall {
        fact: String,
        answer: String,
    },
}

/// Why a reply is degenerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Degenerate {
    Empty,
    Echo,
    Loop,
    CutOff,
    /// Bytes that are not text (decoded as U+FFFD): trained on, the replacement character would
    /// teach three bytes the model never produced as such.
    Garbled,
}

impl Degenerate {
    pub fn name(self) -> &'static str {
        match self {
            Degenerate::Empty => "empty",
            Degenerate::Echo => "echo",
            Degenerate::Loop => "loop",
            Degenerate::CutOff => "cut_off",
            Degenerate::Garbled => "garbled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Degenerate::Empty,
            Degenerate::Echo,
            Degenerate::Loop,
            Degenerate::CutOff,
            Degenerate::Garbled,
        ]
        .into_iter()
        .find(|d| d.name() == s)
    }
}

/// A verifier's judgement of one reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    /// Partial credit in [0, 1] (the fraction of constraints or fields right).
    pub score: f32,
    /// The reply has the expected form (a number, a JSON object with the keys, …), right or not.
    pub format_ok: bool,
    pub degenerate: Option<Degenerate>,
}

impl Verdict {
    pub fn degenerate(d: Degenerate) -> Self {
        Verdict {
            pass: false,
            score: 0.0,
            format_ok: false,
            degenerate: Some(d),
        }
    }
}

/// Lowercase words and digits only, single-spaced: how echoes are compared.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Whether `reply` repeats itself: a line (of some length) three times or more, or few distinct
/// word 4-grams among many.
pub fn is_loop(reply: &str) -> bool {
    let mut lines: Vec<&str> = reply
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= 8)
        .collect();
    lines.sort_unstable();
    if lines.windows(3).any(|w| w[0] == w[2]) {
        return true;
    }
    let words: Vec<&str> = reply.split_whitespace().collect();
    if words.len() < 24 {
        return false;
    }
    let mut grams: Vec<&[&str]> = words.windows(4).collect();
    let total = grams.len();
    grams.sort_unstable();
    grams.dedup();
    (grams.len() as f64) < 0.5 * total as f64
}

/// The degeneracy shared by every skill, checked before the skill's own verifier.
/// `request` is what must not come back as the answer; `echo_allowed` for tasks that ask
/// for the request to be repeated.
pub fn degenerate(
    request: &str,
    reply: &str,
    cut_off: bool,
    echo_allowed: bool,
) -> Option<Degenerate> {
    let r = normalize(reply);
    if r.is_empty() {
        return Some(Degenerate::Empty);
    }
    if cut_off {
        return Some(Degenerate::CutOff);
    }
    if is_loop(reply) {
        return Some(Degenerate::Loop);
    }
    if reply.contains(char::REPLACEMENT_CHARACTER) && !request.contains(char::REPLACEMENT_CHARACTER)
    {
        return Some(Degenerate::Garbled);
    }
    let q = normalize(request);
    if !echo_allowed && q.len() >= 8 && r.contains(&q) {
        return Some(Degenerate::Echo);
    }
    None
}

/// The 95 % Wilson score interval of `k` successes in `n` trials.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_964f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    ((c - h).max(0.0), (c + h).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_loops_and_empties_are_degenerate() {
        let q = "Write a poem about the sea in all lowercase letters.";
        assert_eq!(
            degenerate(
                q,
                "write a poem about the sea in all lowercase letters.",
                false,
                false
            ),
            Some(Degenerate::Echo)
        );
        assert_eq!(degenerate(q, "  \n", false, false), Some(Degenerate::Empty));
        let looped = "the sea is blue and\n".repeat(5);
        assert_eq!(degenerate(q, &looped, false, false), Some(Degenerate::Loop));
        assert_eq!(
            degenerate(q, "waves fold into foam", true, false),
            Some(Degenerate::CutOff)
        );
        assert_eq!(degenerate(q, "waves fold into foam", false, false), None);
        assert_eq!(
            degenerate(q, "waves \u{fffd}fold", false, false),
            Some(Degenerate::Garbled)
        );
        assert_eq!(
            degenerate("fix \u{fffd}", "fixed \u{fffd}", false, false),
            None
        );
        assert_eq!(degenerate(q, &format!("{q} ok"), false, true), None);
    }

    #[test]
    fn wilson_interval_brackets_the_estimate() {
        let (lo, hi) = wilson(99, 100);
        assert!(lo > 0.94 && lo < 0.96 && hi > 0.99, "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, _) = wilson(0, 30);
        assert_eq!(lo, 0.0);
    }
}
