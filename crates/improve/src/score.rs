//! Held-out scores (accuracy with a 95 % Wilson interval, format and correctness counted
//! apart) and the gate that decides whether a candidate becomes the current self.
use crate::task::wilson;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LevelScore {
    pub sub: String,
    pub n: usize,
    pub correct: usize,
    pub format_ok: usize,
    pub degenerate: usize,
}

impl LevelScore {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.n.max(1) as f64
    }
    pub fn interval(&self) -> (f64, f64) {
        wilson(self.correct, self.n)
    }
}

/// One skill's held-out result, per level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkillScore {
    pub skill: String,
    /// Hash of the held-out set scored on.
    pub evalset: String,
    pub levels: Vec<LevelScore>,
}

impl SkillScore {
    pub fn total(&self) -> LevelScore {
        let mut t = LevelScore {
            sub: "all".into(),
            ..Default::default()
        };
        for l in &self.levels {
            t.n += l.n;
            t.correct += l.correct;
            t.format_ok += l.format_ok;
            t.degenerate += l.degenerate;
        }
        t
    }

    pub fn accuracy(&self) -> f64 {
        self.total().accuracy()
    }
}

/// The gate's thresholds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct GateConfig {
    /// One-sided z of the two-proportion test the target skill must clear (1.645: p < 0.05).
    pub z: f64,
    /// Largest drop in accuracy any other skill, or any level of a target skill, may show.
    pub tolerance: f64,
    /// Largest relative rise in guard perplexity against the base (0.02: +2 %).
    pub max_ppl_rise: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            z: 1.645,
            tolerance: 0.05,
            max_ppl_rise: 0.02,
        }
    }
}

/// The two-proportion z statistic of `b` over `a` (pooled variance).
pub fn z_improvement(a: &LevelScore, b: &LevelScore) -> f64 {
    let (n1, n2) = (a.n.max(1) as f64, b.n.max(1) as f64);
    let (p1, p2) = (a.correct as f64 / n1, b.correct as f64 / n2);
    let p = (a.correct + b.correct) as f64 / (n1 + n2);
    let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return 0.0;
    }
    (p2 - p1) / se
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateVerdict {
    pub promote: bool,
    /// Every reason, for promotion and against it, in words.
    pub reasons: Vec<String>,
}

/// A skill the gate wants improved, and the levels the round practised: the gain is tested
/// where the round worked, which the curriculum fixed before anything was scored (the whole
/// skill when `levels` is empty). A gain on three levels of eleven is otherwise diluted by eight
/// that did not move, and a real one is rejected as noise.
#[derive(Debug, Clone, PartialEq)]
pub struct Focus {
    pub skill: String,
    pub levels: Vec<String>,
}

impl Focus {
    /// `score` pooled over the focus levels (all levels when none are named or none match).
    fn pooled(&self, score: &SkillScore) -> LevelScore {
        let mut t = LevelScore {
            sub: self.levels.join(", "),
            ..Default::default()
        };
        for l in score.levels.iter().filter(|l| self.levels.contains(&l.sub)) {
            t.n += l.n;
            t.correct += l.correct;
            t.format_ok += l.format_ok;
            t.degenerate += l.degenerate;
        }
        if t.n == 0 {
            return score.total();
        }
        t
    }

    fn name(&self, n: usize) -> String {
        if self.levels.is_empty() || n == 0 {
            self.skill.clone()
        } else {
            format!("{} (practised: {})", self.skill, self.levels.join(", "))
        }
    }
}

/// Compares a candidate with the current self on every skill both were scored on.
pub fn gate(
    cfg: &GateConfig,
    targets: &[Focus],
    current: &[SkillScore],
    candidate: &[SkillScore],
    ppl: Option<(f64, f64)>,
) -> GateVerdict {
    let mut reasons = Vec::new();
    let mut ok = true;
    let mut improved = false;
    for c in candidate {
        let Some(cur) = current.iter().find(|s| s.skill == c.skill) else {
            continue;
        };
        let (a, b) = (cur.total(), c.total());
        if let Some(f) = targets.iter().find(|f| f.skill == c.skill) {
            let (fa, fb) = (f.pooled(cur), f.pooled(c));
            let name = f.name(
                cur.levels
                    .iter()
                    .filter(|l| f.levels.contains(&l.sub))
                    .count(),
            );
            let z = z_improvement(&fa, &fb);
            if z >= cfg.z {
                improved = true;
                reasons.push(format!(
                    "{name}: {:.1} % -> {:.1} % (z = {z:.2} >= {:.2}); whole skill {:.1} % -> {:.1} %",
                    100.0 * fa.accuracy(),
                    100.0 * fb.accuracy(),
                    cfg.z,
                    100.0 * a.accuracy(),
                    100.0 * b.accuracy(),
                ));
            } else {
                reasons.push(format!(
                    "{name}: {:.1} % -> {:.1} % is no significant gain (z = {z:.2} < {:.2}); whole skill {:.1} % -> {:.1} %",
                    100.0 * fa.accuracy(),
                    100.0 * fb.accuracy(),
                    cfg.z,
                    100.0 * a.accuracy(),
                    100.0 * b.accuracy(),
                ));
            }
            for lb in &c.levels {
                if let Some(la) = cur.levels.iter().find(|l| l.sub == lb.sub) {
                    if lb.accuracy() < la.accuracy() - cfg.tolerance {
                        ok = false;
                        reasons.push(format!(
                            "{}/{} regressed {:.1} % -> {:.1} % (tolerance {:.0} points)",
                            c.skill,
                            lb.sub,
                            100.0 * la.accuracy(),
                            100.0 * lb.accuracy(),
                            100.0 * cfg.tolerance
                        ));
                    }
                }
            }
        } else if b.accuracy() < a.accuracy() - cfg.tolerance {
            ok = false;
            reasons.push(format!(
                "{} regressed {:.1} % -> {:.1} % (tolerance {:.0} points)",
                c.skill,
                100.0 * a.accuracy(),
                100.0 * b.accuracy(),
                100.0 * cfg.tolerance
            ));
        }
    }
    if let Some((base, cand)) = ppl {
        let rise = cand / base - 1.0;
        if rise > cfg.max_ppl_rise {
            ok = false;
            reasons.push(format!(
                "guard perplexity rose {:.2} % ({base:.3} -> {cand:.3}; at most {:.0} %)",
                100.0 * rise,
                100.0 * cfg.max_ppl_rise
            ));
        } else {
            reasons.push(format!(
                "guard perplexity {base:.3} -> {cand:.3} ({:+.2} %)",
                100.0 * rise
            ));
        }
    }
    GateVerdict {
        promote: ok && improved,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(skill: &str, correct: usize, n: usize) -> SkillScore {
        SkillScore {
            skill: skill.into(),
            evalset: "x".into(),
            levels: vec![LevelScore {
                sub: "l".into(),
                n,
                correct,
                format_ok: n,
                degenerate: 0,
            }],
        }
    }

    fn whole(skill: &str) -> Focus {
        Focus {
            skill: skill.into(),
            levels: Vec::new(),
        }
    }

    #[test]
    fn the_gain_is_tested_on_the_practised_levels() {
        let lv = |sub: &str, correct, n| LevelScore {
            sub: sub.into(),
            n,
            correct,
            format_ok: n,
            degenerate: 0,
        };
        let sk = |levels| SkillScore {
            skill: "a".into(),
            evalset: "x".into(),
            levels,
        };
        // 8 of 20 -> 15 of 20 on the practised level; eight other levels stay at 0 of 20.
        let mut cur = vec![lv("p", 8, 20)];
        let mut cand = vec![lv("p", 15, 20)];
        for i in 0..8 {
            cur.push(lv(&format!("o{i}"), 0, 20));
            cand.push(lv(&format!("o{i}"), 0, 20));
        }
        let cfg = GateConfig::default();
        let diluted = gate(
            &cfg,
            &[whole("a")],
            &[sk(cur.clone())],
            &[sk(cand.clone())],
            None,
        );
        assert!(!diluted.promote, "{:?}", diluted.reasons);
        let focus = Focus {
            skill: "a".into(),
            levels: vec!["p".into()],
        };
        let v = gate(
            &cfg,
            std::slice::from_ref(&focus),
            &[sk(cur.clone())],
            &[sk(cand.clone())],
            None,
        );
        assert!(v.promote, "{:?}", v.reasons);
        assert!(v.reasons[0].contains("practised: p"), "{:?}", v.reasons);
        // A regression elsewhere still rejects.
        cand[3].correct = 0;
        cur[3].correct = 10;
        let v = gate(&cfg, &[focus], &[sk(cur)], &[sk(cand)], None);
        assert!(!v.promote, "{:?}", v.reasons);
    }

    #[test]
    fn gate_needs_a_significant_gain_and_no_regression() {
        let cfg = GateConfig::default();
        let t = vec![whole("a")];
        let yes = gate(
            &cfg,
            &t,
            &[s("a", 0, 30), s("b", 10, 30)],
            &[s("a", 20, 30), s("b", 10, 30)],
            Some((10.0, 10.1)),
        );
        assert!(yes.promote, "{:?}", yes.reasons);
        let small = gate(&cfg, &t, &[s("a", 10, 30)], &[s("a", 12, 30)], None);
        assert!(!small.promote);
        let regress = gate(
            &cfg,
            &t,
            &[s("a", 0, 30), s("b", 20, 30)],
            &[s("a", 20, 30), s("b", 10, 30)],
            None,
        );
        assert!(!regress.promote);
        let ppl = gate(
            &cfg,
            &t,
            &[s("a", 0, 30)],
            &[s("a", 20, 30)],
            Some((10.0, 10.3)),
        );
        assert!(!ppl.promote && ppl.reasons.iter().any(|r| r.contains("perplexity")));
    }
}
