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

/// Compares a candidate with the current self on every skill both were scored on.
pub fn gate(
    cfg: &GateConfig,
    targets: &[String],
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
        if targets.contains(&c.skill) {
            let z = z_improvement(&a, &b);
            if z >= cfg.z {
                improved = true;
                reasons.push(format!(
                    "{}: {:.1} % -> {:.1} % (z = {z:.2} >= {:.2})",
                    c.skill,
                    100.0 * a.accuracy(),
                    100.0 * b.accuracy(),
                    cfg.z
                ));
            } else {
                reasons.push(format!(
                    "{}: {:.1} % -> {:.1} % is no significant gain (z = {z:.2} < {:.2})",
                    c.skill,
                    100.0 * a.accuracy(),
                    100.0 * b.accuracy(),
                    cfg.z
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

    #[test]
    fn gate_needs_a_significant_gain_and_no_regression() {
        let cfg = GateConfig::default();
        let t = vec!["a".to_string()];
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
