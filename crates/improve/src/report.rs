//! A run's report from its registry: per round what was practised and verified, what the
//! candidate scored against the self it would replace (format and correctness apart), the guard,
//! where the time went and the verdict — as data (for JSON), as Markdown, and as PNG plots.
use crate::registry::{AdapterRow, Registry, RunRow};
use crate::score::SkillScore;
use crate::ImproveError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A held-out result in brief: accuracy with its 95 % interval, and the share of replies in the
/// asked-for format whatever their correctness.
#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    pub n: usize,
    pub accuracy: f64,
    pub low: f64,
    pub high: f64,
    pub format: f64,
    pub degenerate: f64,
}

impl Accuracy {
    fn of(s: &SkillScore) -> Self {
        let t = s.total();
        let (low, high) = t.interval();
        let n = t.n.max(1) as f64;
        Accuracy {
            n: t.n,
            accuracy: t.accuracy(),
            low,
            high,
            format: t.format_ok as f64 / n,
            degenerate: t.degenerate as f64 / n,
        }
    }
}

/// One skill before (the self the candidate would replace) and after (the candidate).
#[derive(Debug, Clone, Serialize)]
pub struct SkillChange {
    pub skill: String,
    pub before: Option<Accuracy>,
    pub after: Option<Accuracy>,
}

/// Samples and passes at one difficulty, in plain chat and under a scaffold.
#[derive(Debug, Clone, Serialize)]
pub struct LevelRate {
    pub sub: String,
    pub level: i64,
    pub plain_n: u64,
    pub plain_pass: u64,
    pub scaffold_n: u64,
    pub scaffold_pass: u64,
}

impl LevelRate {
    pub fn pass_rate(&self) -> f64 {
        (self.plain_pass + self.scaffold_pass) as f64
            / (self.plain_n + self.scaffold_n).max(1) as f64
    }
}

/// The candidate a round trained.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateInfo {
    pub version: i64,
    pub name: String,
    pub parent: Option<i64>,
    pub status: String,
    pub reason: String,
    pub examples: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    /// 1-based, as the CLI counts.
    pub round: i64,
    pub status: String,
    pub samples: u64,
    pub verified: u64,
    pub verified_share: f64,
    pub degenerate_share: f64,
    pub train_examples: u64,
    pub replay_texts: u64,
    pub train_losses: Vec<f64>,
    pub levels: Vec<LevelRate>,
    pub candidate: Option<CandidateInfo>,
    pub skills: Vec<SkillChange>,
    pub ppl_base: Option<f64>,
    pub ppl_candidate: Option<f64>,
    pub promoted: Option<bool>,
    pub reasons: Vec<String>,
    /// With DPO after SFT: pairs, DPO's first and last loss, and the SFT stage's held-out
    /// accuracy per skill (what the candidate had before DPO).
    pub dpo: Option<DpoReport>,
    /// Seconds per phase (`probe_s`, `rollouts_s`, `train_s`, …).
    pub timings: BTreeMap<String, f64>,
}

/// Accuracy per skill of a round's recorded SFT stage (`stats["sft_stage"]`: skill → levels).
pub fn stage_accuracy(stage: &serde_json::Value) -> BTreeMap<String, f64> {
    stage
        .as_object()
        .into_iter()
        .flatten()
        .map(|(skill, levels)| {
            let (mut n, mut c) = (0, 0);
            for l in levels.as_array().into_iter().flatten() {
                n += u(&l["n"]);
                c += u(&l["correct"]);
            }
            (skill.clone(), c as f64 / n.max(1) as f64)
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct DpoReport {
    pub pairs: u64,
    pub loss_first: f64,
    pub loss_last: f64,
    pub sft_stage: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: RunRow,
    pub rounds: Vec<RoundReport>,
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The score of `skill` for `subject` on the run's held-out set size, if it was evaluated.
fn score_for(
    reg: &Registry,
    subject: &str,
    skill: &str,
    sizes: &[String],
) -> Result<Option<Accuracy>, ImproveError> {
    let all = reg.scores_of(subject)?;
    let of_skill: Vec<&SkillScore> = all.iter().filter(|s| s.skill == skill).collect();
    let pick = of_skill
        .iter()
        .rev()
        .find(|s| sizes.iter().any(|n| s.evalset.ends_with(n.as_str())))
        .or(of_skill.last());
    Ok(pick.map(|s| Accuracy::of(s)))
}

impl RunReport {
    /// A hash of everything the report shows: equal fingerprints draw equal reports.
    pub fn fingerprint(&self) -> String {
        let data = serde_json::to_vec(self).expect("reports serialize");
        format!("{:016x}", crate::rng::fnv(&data))
    }

    /// The report of `run`, or `None` when the registry has no such run.
    pub fn load(reg: &Registry, run: &str) -> Result<Option<RunReport>, ImproveError> {
        let Some(r) = reg.run(run)? else {
            return Ok(None);
        };
        let sizes: Vec<String> = ["eval_n", "guard_n"]
            .iter()
            .filter_map(|k| r.config[*k].as_u64())
            .map(|n| format!(":n{n}"))
            .collect();
        let base = format!("base:{}", r.model);
        let mut rounds = Vec::new();
        for rd in reg.rounds(run)? {
            let st = &rd.stats;
            let cand: Option<AdapterRow> = match rd.candidate {
                Some(v) => reg.adapter(v)?,
                None => None,
            };
            let mut skills = Vec::new();
            if let Some(a) = &cand {
                let before = a.parent.map_or(base.clone(), |p| format!("adapter:{p}"));
                let after = format!("adapter:{}", a.version);
                let mut names = r.skills.clone();
                for s in reg.scores_of(&after)? {
                    if !names.contains(&s.skill) {
                        names.push(s.skill);
                    }
                }
                for skill in names {
                    skills.push(SkillChange {
                        before: score_for(reg, &before, &skill, &sizes)?,
                        after: score_for(reg, &after, &skill, &sizes)?,
                        skill,
                    });
                }
            }
            let levels = st["levels"]
                .as_array()
                .map(|ls| {
                    ls.iter()
                        .map(|l| LevelRate {
                            sub: l["sub"].as_str().unwrap_or("?").to_string(),
                            level: l["level"].as_i64().unwrap_or(0),
                            plain_n: u(&l["plain_n"]),
                            plain_pass: u(&l["plain_pass"]),
                            scaffold_n: u(&l["scaffold_n"]),
                            scaffold_pass: u(&l["scaffold_pass"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut levels: Vec<LevelRate> = levels;
            levels.sort_by_key(|l| l.level);
            let timings = rd
                .timings
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| k.ends_with("_s") && !k.ends_with("_per_s"))
                        .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                        .collect()
                })
                .unwrap_or_default();
            rounds.push(RoundReport {
                round: rd.idx + 1,
                status: rd.status.clone(),
                samples: u(&st["samples"]),
                verified: u(&st["verified"]),
                verified_share: f(&st["verified_share"]),
                degenerate_share: f(&st["degenerate_share"]),
                train_examples: u(&st["train_examples"]),
                replay_texts: u(&st["replay_texts"]),
                train_losses: st["train_losses"]
                    .as_array()
                    .map(|v| v.iter().filter_map(|x| x.as_f64()).collect())
                    .unwrap_or_default(),
                levels,
                candidate: cand.map(|a| CandidateInfo {
                    version: a.version,
                    name: a.name,
                    parent: a.parent,
                    status: a.status,
                    reason: a.reason,
                    examples: a.examples,
                }),
                skills,
                ppl_base: st["ppl_base"].as_f64(),
                ppl_candidate: st["ppl_candidate"].as_f64(),
                promoted: st["promoted"].as_bool(),
                reasons: st["reasons"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                dpo: st["dpo_pairs"].as_u64().map(|pairs| DpoReport {
                    pairs,
                    loss_first: f(&st["dpo_loss_first"]),
                    loss_last: f(&st["dpo_loss_last"]),
                    sft_stage: stage_accuracy(&st["sft_stage"]),
                }),
                timings,
            });
        }
        Ok(Some(RunReport { run: r, rounds }))
    }

    /// The report as Markdown; `plots` are image file names to link, relative to where it is
    /// written.
    pub fn markdown(&self, plots: &[String]) -> String {
        let r = &self.run;
        let pct = |x: f64| format!("{:.1} %", 100.0 * x);
        let mut md = format!(
            "# Run {}\n\nModel `{}`, skills {}, status **{}**.\n\n",
            r.id,
            r.model,
            r.skills.join(", "),
            r.status
        );
        if !r.summary.is_empty() {
            md += &format!("{}\n\n", r.summary);
        }
        md += "## Rounds\n\n| round | status | samples | verified | degenerate | training examples | candidate | verdict |\n|---|---|---|---|---|---|---|---|\n";
        for rd in &self.rounds {
            let cand = rd
                .candidate
                .as_ref()
                .map_or("—".into(), |c| format!("v{} ({})", c.version, c.status));
            let verdict = match rd.promoted {
                Some(true) => "promoted".to_string(),
                Some(false) => format!("rejected: {}", rd.reasons.join("; ")),
                None => "—".into(),
            };
            md += &format!(
                "| {} | {} | {} | {} ({}) | {} | {} | {} | {} |\n",
                rd.round,
                rd.status,
                rd.samples,
                rd.verified,
                pct(rd.verified_share),
                pct(rd.degenerate_share),
                rd.train_examples,
                cand,
                verdict.replace('|', "/")
            );
        }
        for rd in &self.rounds {
            md += &format!("\n## Round {}\n\n", rd.round);
            if !rd.skills.is_empty() {
                md += "Held-out, greedy, in plain chat (before: the self the candidate would replace).\n\n| skill | before | after | 95 % interval after | format after | degenerate after |\n|---|---|---|---|---|---|\n";
                for s in &rd.skills {
                    let show =
                        |a: &Option<Accuracy>| a.as_ref().map_or("—".into(), |a| pct(a.accuracy));
                    let (iv, fmt, deg) =
                        s.after
                            .as_ref()
                            .map_or(("—".into(), "—".into(), "—".into()), |a| {
                                (
                                    format!("{}–{}", pct(a.low), pct(a.high)),
                                    pct(a.format),
                                    pct(a.degenerate),
                                )
                            });
                    md += &format!(
                        "| {} | {} | {} | {} | {} | {} |\n",
                        s.skill,
                        show(&s.before),
                        show(&s.after),
                        iv,
                        fmt,
                        deg
                    );
                }
                md += "\n";
            }
            if let Some(d) = &rd.dpo {
                let stage: Vec<String> = d
                    .sft_stage
                    .iter()
                    .map(|(k, v)| format!("{k} {}", pct(*v)))
                    .collect();
                md += &format!(
                    "DPO after SFT: {} pairs, loss {:.3} -> {:.3}; the SFT stage alone scored {}.\n\n",
                    d.pairs,
                    d.loss_first,
                    d.loss_last,
                    stage.join(", ")
                );
            }
            if let (Some(b), Some(c)) = (rd.ppl_base, rd.ppl_candidate) {
                md += &format!(
                    "Guard perplexity: base {b:.3}, candidate {c:.3} ({:+.1} %).\n\n",
                    100.0 * (c / b - 1.0)
                );
            }
            if !rd.levels.is_empty() {
                md += "| difficulty | plain-chat samples | passed | scaffolded samples | passed |\n|---|---|---|---|---|\n";
                for l in &rd.levels {
                    md += &format!(
                        "| {} (level {}) | {} | {} | {} | {} |\n",
                        l.sub, l.level, l.plain_n, l.plain_pass, l.scaffold_n, l.scaffold_pass
                    );
                }
                md += "\n";
            }
            if !rd.timings.is_empty() {
                let total: f64 = rd.timings.values().sum();
                let parts: Vec<String> = rd
                    .timings
                    .iter()
                    .map(|(k, v)| format!("{} {:.0} s", k.trim_end_matches("_s"), v))
                    .collect();
                md += &format!("Time: {} (total {:.0} s).\n", parts.join(", "), total);
            }
        }
        if !plots.is_empty() {
            md += "\n## Plots\n\n";
            for p in plots {
                md += &format!("![{p}]({p})\n\n");
            }
        }
        md
    }

    /// Writes `report.md` and its plots into `dir`, returning the files written. Plots need a
    /// TrueType font (see [`crate::plot::find_font`]); without one the Markdown says so.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ImproveError> {
        std::fs::create_dir_all(dir).map_err(|e| ImproveError::io(dir, e))?;
        let mut written = Vec::new();
        let (plots, note) = match crate::plot::run_plots(self, dir) {
            Ok(files) => (files, None),
            Err(ImproveError::NoFont { tried }) => (
                Vec::new(),
                Some(format!(
                    "\n_No plots: no TrueType font was found (tried {}; set AUTODIDACT_FONT to one)._\n",
                    tried.join(", ")
                )),
            ),
            Err(e) => return Err(e),
        };
        let names: Vec<String> = plots
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let mut md = self.markdown(&names);
        if let Some(n) = note {
            md += &n;
        }
        let path = dir.join("report.md");
        crate::registry::write_atomic(&path, md.as_bytes())?;
        written.push(path);
        written.extend(plots);
        Ok(written)
    }
}

/// Writes the report of `run` into its place under `home` (see [`crate::Paths::report`]).
pub fn write_report(home: &Path, run: &str) -> Result<Vec<PathBuf>, ImproveError> {
    let paths = crate::Paths::new(home);
    let reg = Registry::open(&paths.registry())?;
    let report = RunReport::load(&reg, run)?.ok_or_else(|| ImproveError::UnknownRun(run.into()))?;
    let dir = paths.report(run);
    let files = report.write(&dir)?;
    crate::registry::write_atomic(&dir.join(FINGERPRINT), report.fingerprint().as_bytes())?;
    Ok(files)
}

/// The file beside a report that says which registry state it was drawn from.
const FINGERPRINT: &str = "fingerprint";

/// The folder of `run`'s report, redrawn first when the registry has changed since it was
/// written (a run in progress gains rounds); `None` when there is no such run.
pub fn ensure_report(home: &Path, run: &str) -> Result<Option<PathBuf>, ImproveError> {
    let paths = crate::Paths::new(home);
    let Some(reg) = Registry::open_existing(&paths.registry())? else {
        return Ok(None);
    };
    let Some(report) = RunReport::load(&reg, run)? else {
        return Ok(None);
    };
    let dir = paths.report(run);
    let print = report.fingerprint();
    // Drawn means drawn from this registry state *with* its plots: a report first written
    // where no font was found is drawn again once one is.
    let drawn = std::fs::read_to_string(dir.join(FINGERPRINT)).is_ok_and(|f| f == print)
        && crate::plot::PLOT_FILES.iter().all(|f| dir.join(f).exists());
    if !drawn {
        report.write(&dir)?;
        crate::registry::write_atomic(&dir.join(FINGERPRINT), print.as_bytes())?;
    }
    Ok(Some(dir))
}
