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
    /// Each held-out task's verdict, in the set's order (empty for scores stored before they
    /// were kept): two subjects scored on the same tasks are compared task by task.
    #[serde(skip)]
    pub passes: Vec<bool>,
}

impl LevelScore {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.n.max(1) as f64
    }
    pub fn interval(&self) -> (f64, f64) {
        wilson(self.correct, self.n)
    }

    /// Whether every task's verdict is known.
    pub fn has_passes(&self) -> bool {
        self.passes.len() == self.n
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

    /// Whether every level carries its tasks' verdicts.
    pub fn has_passes(&self) -> bool {
        self.levels.iter().all(LevelScore::has_passes)
    }
}

/// The gate's thresholds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct GateConfig {
    /// One-sided z of the two-proportion test the target skill must clear (1.645: p < 0.05),
    /// used only where the two subjects' task-by-task verdicts are not both known.
    pub z: f64,
    /// Largest one-sided p of the paired (exact McNemar) test the target skill must clear.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Largest drop in accuracy any other skill, or any level of a target skill, may show.
    pub tolerance: f64,
    /// Largest relative rise in guard perplexity against the base (0.02: +2 %).
    pub max_ppl_rise: f64,
}

fn default_alpha() -> f64 {
    0.05
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            z: 1.645,
            alpha: default_alpha(),
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

/// Two subjects scored on the same tasks, compared task by task: `gained` tasks only the second
/// passes, `lost` tasks only the first, and `p`, the one-sided exact McNemar p-value of a gain
/// that large if neither were better (a binomial tail over the discordant tasks at one half).
/// Tasks both pass or both fail say nothing about which is better, so the paired test does not
/// pay for them as the two-proportion test does: with 20 tasks a level, a gain of 9 tasks and a
/// loss of 1 is significant here and not there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    pub gained: usize,
    pub lost: usize,
    pub p: f64,
}

/// `P(X >= k)` for `X ~ Binomial(n, 1/2)`.
fn binomial_tail_half(n: usize, k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    // Terms in log space: C(n, i) / 2^n underflows for n in the thousands.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_c = 0.0f64; // ln C(n, 0)
    let mut sum = 0.0;
    for i in 0..=n {
        if i > 0 {
            ln_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        if i >= k {
            sum += (ln_c + ln_half_n).exp();
        }
    }
    sum.min(1.0)
}

/// The paired comparison of `b` against `a` over `levels` (every level when empty), or `None`
/// when a level's task-by-task verdicts are missing or the two were scored on different tasks.
pub fn paired(a: &SkillScore, b: &SkillScore, levels: &[String]) -> Option<Paired> {
    let (mut gained, mut lost, mut any) = (0, 0, false);
    for la in a
        .levels
        .iter()
        .filter(|l| levels.is_empty() || levels.contains(&l.sub))
    {
        let lb = b.levels.iter().find(|l| l.sub == la.sub)?;
        if !la.has_passes() || !lb.has_passes() || la.n != lb.n {
            return None;
        }
        any = true;
        for (x, y) in la.passes.iter().zip(&lb.passes) {
            match (x, y) {
                (false, true) => gained += 1,
                (true, false) => lost += 1,
                _ => {}
            }
        }
    }
    any.then(|| Paired {
        gained,
        lost,
        p: binomial_tail_half(gained + lost, gained),
    })
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
            let whole = format!(
                "whole skill {:.1} % -> {:.1} %",
                100.0 * a.accuracy(),
                100.0 * b.accuracy()
            );
            let (fa_pct, fb_pct) = (100.0 * fa.accuracy(), 100.0 * fb.accuracy());
            let focus_levels = if f
                .levels
                .iter()
                .any(|l| cur.levels.iter().any(|x| &x.sub == l))
            {
                f.levels.as_slice()
            } else {
                &[]
            };
            if let Some(pr) = paired(cur, c, focus_levels) {
                let test = format!(
                    "{} tasks gained, {} lost, paired p = {:.3}",
                    pr.gained, pr.lost, pr.p
                );
                if pr.p < cfg.alpha && pr.gained > pr.lost {
                    improved = true;
                    reasons.push(format!(
                        "{name}: {fa_pct:.1} % -> {fb_pct:.1} % ({test} < {}); {whole}",
                        cfg.alpha
                    ));
                } else {
                    reasons.push(format!(
                        "{name}: {fa_pct:.1} % -> {fb_pct:.1} % is no significant gain ({test}, not < {}); {whole}",
                        cfg.alpha
                    ));
                }
            } else {
                let z = z_improvement(&fa, &fb);
                if z >= cfg.z {
                    improved = true;
                    reasons.push(format!(
                        "{name}: {fa_pct:.1} % -> {fb_pct:.1} % (z = {z:.2} >= {:.2}); {whole}",
                        cfg.z
                    ));
                } else {
                    reasons.push(format!(
                        "{name}: {fa_pct:.1} % -> {fb_pct:.1} % is no significant gain (z = {z:.2} < {:.2}); {whole}",
                        cfg.z
                    ));
                }
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
                passes: Vec::new(),
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
            passes: Vec::new(),
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

    fn with_passes(sub: &str, passes: &[bool]) -> LevelScore {
        LevelScore {
            sub: sub.into(),
            n: passes.len(),
            correct: passes.iter().filter(|&&p| p).count(),
            format_ok: passes.len(),
            degenerate: 0,
            passes: passes.to_vec(),
        }
    }

    fn skill(levels: Vec<LevelScore>) -> SkillScore {
        SkillScore {
            skill: "a".into(),
            evalset: "x".into(),
            levels,
        }
    }

    #[test]
    fn binomial_tail_matches_hand_counts() {
        // P(X >= 9 | n = 10) = (10 + 1) / 1024.
        assert!((binomial_tail_half(10, 9) - 11.0 / 1024.0).abs() < 1e-12);
        assert_eq!(binomial_tail_half(5, 0), 1.0);
        assert_eq!(binomial_tail_half(5, 6), 0.0);
        // Large n neither overflows nor underflows: the upper half of 4,001 is one half.
        assert!((binomial_tail_half(4001, 2001) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn paired_test_counts_only_tasks_that_changed() {
        // 20 tasks: 8 both pass, 9 only the candidate passes, 1 only the current self, 2 neither.
        let mut a = vec![true; 8];
        let mut b = vec![true; 8];
        a.extend([false; 9]);
        b.extend([true; 9]);
        a.push(true);
        b.push(false);
        a.extend([false; 2]);
        b.extend([false; 2]);
        let (cur, cand) = (
            skill(vec![with_passes("p", &a)]),
            skill(vec![with_passes("p", &b)]),
        );
        let pr = paired(&cur, &cand, &[]).unwrap();
        assert_eq!((pr.gained, pr.lost), (9, 1));
        assert!((pr.p - 11.0 / 1024.0).abs() < 1e-12);
        // A gain the two-proportion test misses: 9/20 -> 14/20 with no task lost (z = 1.60,
        // paired p = 1/32).
        let focus = [Focus {
            skill: "a".into(),
            levels: vec!["p".into()],
        }];
        let cfg = GateConfig::default();
        let v = gate(
            &cfg,
            &focus,
            std::slice::from_ref(&cur),
            std::slice::from_ref(&cand),
            None,
        );
        assert!(v.promote, "{:?}", v.reasons);
        assert!(
            v.reasons[0].contains("9 tasks gained, 1 lost"),
            "{:?}",
            v.reasons
        );
        let c2: Vec<bool> = (0..20).map(|i| i < 14).collect();
        let a2: Vec<bool> = (0..20).map(|i| i < 9).collect();
        let (cur2, cand2) = (
            skill(vec![with_passes("p", &a2)]),
            skill(vec![with_passes("p", &c2)]),
        );
        assert!(z_improvement(&cur2.levels[0], &cand2.levels[0]) < cfg.z);
        let v = gate(&cfg, &focus, &[cur2], &[cand2], None);
        assert!(v.promote, "{:?}", v.reasons);
        // Every task changing, 11 one way and 9 the other, is no gain.
        let flip: Vec<bool> = a.iter().map(|p| !p).collect();
        let v = gate(
            &cfg,
            &focus,
            std::slice::from_ref(&cur),
            &[skill(vec![with_passes("p", &flip)])],
            None,
        );
        assert!(!v.promote, "{:?}", v.reasons);
        // Different task counts, or verdicts missing, are not paired.
        assert!(paired(&cur, &skill(vec![with_passes("p", &b[..19])]), &[]).is_none());
        let mut bare = cand.clone();
        bare.levels[0].passes.clear();
        assert!(paired(&cur, &bare, &[]).is_none());
    }
}
