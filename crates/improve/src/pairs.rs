//! Preference pairs for DPO from a run's attempts: per task, an answer the verifier passes and
//! one it fails, both the model's own, under the task as the user asks it in plain chat. Tasks
//! where every sample passed or every sample failed give no pair (no signal), as the issue asks.
use crate::rng::fnv;
use crate::task::{Task, Verdict};
use crate::trainer::Pair;
use std::collections::BTreeMap;

/// A task's distinct passed replies and failed ones, in the order they were drawn.
type Sides = (Vec<String>, Vec<String>);

/// How many pairs, and from which samples.
#[derive(Debug, Clone, Copy)]
pub struct PairLimits {
    /// Pairs per task at most.
    pub per_task: usize,
    /// Pairs in all at most; beyond it a seeded, even draw over all of them.
    pub total: usize,
    pub seed: u64,
}

/// Pairs from `attempts` (task, reply, cut off), each reply verified again by `verify` under
/// today's rules. A reply cut off at its token limit is not used as the failed side: it is a
/// length, not an answer, and the costliest sequence to train on.
pub fn preference_pairs(
    attempts: &[(Task, String, bool)],
    verify: &mut dyn FnMut(&Task, &str, bool) -> Verdict,
    limits: PairLimits,
) -> Vec<Pair> {
    // Per task as asked (skill, problem and phrasing): distinct passed and failed replies.
    let mut by_task: BTreeMap<(&str, &str, &str), Sides> = BTreeMap::new();
    for (t, text, cut_off) in attempts {
        let reply = text.trim();
        if reply.is_empty() {
            continue;
        }
        let v = verify(t, reply, *cut_off);
        let e = by_task
            .entry((t.skill.as_str(), t.key.as_str(), t.prompt.as_str()))
            .or_default();
        let side = if v.pass {
            &mut e.0
        } else if !cut_off {
            &mut e.1
        } else {
            continue;
        };
        if !side.iter().any(|s| s == reply) {
            side.push(reply.to_string());
        }
    }
    let mut pairs = Vec::new();
    for ((_, _, user), (passed, failed)) in by_task {
        if passed.is_empty() || failed.is_empty() {
            continue;
        }
        let n = limits.per_task.min(passed.len().max(failed.len()));
        for i in 0..n {
            pairs.push(Pair {
                user: user.to_string(),
                chosen: passed[i % passed.len()].clone(),
                rejected: failed[i % failed.len()].clone(),
            });
        }
    }
    if pairs.len() > limits.total {
        let key = |p: &Pair| {
            fnv(format!(
                "{}\u{1}{}\u{1}{}\u{1}{}",
                limits.seed, p.user, p.chosen, p.rejected
            )
            .as_bytes())
        };
        pairs.sort_by_cached_key(key);
        pairs.truncate(limits.total);
        pairs.sort();
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Check;

    fn task(key: &str, prompt: &str) -> Task {
        Task {
            skill: "arithmetic".into(),
            level: 0,
            sub: "add-1".into(),
            key: key.into(),
            prompt: prompt.into(),
            check: Check::Integer { value: 0 },
        }
    }

    #[test]
    fn pairs_need_a_pass_and_a_fail_of_one_task() {
        let a = task("2+2", "What is 2 plus 2?");
        let b = task("3+3", "What is 3 plus 3?");
        let c = task("4+4", "Add 4 and 4.");
        let attempts = vec![
            (a.clone(), "4".to_string(), false),
            (a.clone(), " 4 ".to_string(), false), // the same reply once trimmed
            (a.clone(), "5".to_string(), false),
            (a.clone(), "22".to_string(), false),
            (a.clone(), "2 plus 2 plus 2 plus".to_string(), true), // cut off: never a side
            (b.clone(), "6".to_string(), false),                   // passes only: no signal
            (c.clone(), "9".to_string(), false),                   // fails only: no signal
        ];
        let answers = [("2+2", "4"), ("3+3", "6"), ("4+4", "8")];
        let mut verify = |t: &Task, reply: &str, cut: bool| {
            let want = answers.iter().find(|(k, _)| *k == t.key).unwrap().1;
            Verdict {
                pass: !cut && reply == want,
                score: 0.0,
                format_ok: true,
                degenerate: None,
            }
        };
        let limits = PairLimits {
            per_task: 4,
            total: 100,
            seed: 1,
        };
        let pairs = preference_pairs(&attempts, &mut verify, limits);
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        assert!(pairs
            .iter()
            .all(|p| p.user == a.prompt && p.chosen == "4" && p.rejected != "4"));
        assert_ne!(pairs[0].rejected, pairs[1].rejected);
        // Capped per task and in all; the draw is seeded and repeatable.
        let one = preference_pairs(
            &attempts,
            &mut verify,
            PairLimits {
                per_task: 1,
                ..limits
            },
        );
        assert_eq!(one.len(), 1);
        let total = PairLimits { total: 1, ..limits };
        let x = preference_pairs(&attempts, &mut verify, total);
        let y = preference_pairs(&attempts, &mut verify, total);
        assert_eq!((x.len(), &x), (1, &y));
    }
}
