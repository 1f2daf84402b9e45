//! The curriculum: which levels of a skill a round practises (probed pass rates between the
//! thresholds, easiest first), and which wait as out of reach of the current self.
use super::*;

impl<'a> Improver<'a> {
    /// Samples and passes per (skill, level) in this run's earlier rounds whose rollouts the
    /// current self made (its own attempts, not an earlier self's).
    pub(super) fn reach(
        &self,
        run: &str,
        round: i64,
        me: Option<i64>,
    ) -> Result<Reach, ImproveError> {
        let mut out = Reach::new();
        let rounds: Vec<_> = self
            .reg
            .rounds(run)?
            .into_iter()
            .filter(|r| r.idx < round)
            .collect();
        // Who made each round's rollouts: its candidate's parent. A round with no candidate
        // (nothing verified) promoted nothing, so the self of the round after it made it too,
        // and the current self made the latest ones.
        let mut maker = me;
        let mut makers = Vec::with_capacity(rounds.len());
        for r in rounds.iter().rev() {
            if let Some(v) = r.candidate {
                maker = self.reg.adapter(v)?.and_then(|a| a.parent);
            }
            makers.push(maker);
        }
        makers.reverse();
        for (r, maker) in rounds.iter().zip(makers) {
            if maker != me {
                continue;
            }
            let tasks = self.reg.tasks(run, r.idx)?;
            for smp in self.reg.samples(run, r.idx)? {
                if let Some(t) = tasks.get(smp.task as usize) {
                    let e = out.entry((t.skill.clone(), t.sub.clone())).or_default();
                    e[0] += 1;
                    e[1] += smp.verdict.pass as usize;
                }
            }
        }
        Ok(out)
    }

    /// Per target skill, the lowest levels the current self has not mastered (plain-chat
    /// probe pass rate below 80 %), at most `max_levels` of them. A level the current self
    /// already practised and almost never passed, even under the scaffold (below 2 % of at
    /// least 100 samples), is out of reach: it gives no data, so it and the harder levels of
    /// its family (same operation) wait until a promotion makes them reachable, and the round
    /// practises levels that can teach something instead.
    pub(super) fn curriculum(
        &self,
        site: &ProbeSite,
        obs: Observer,
    ) -> Result<Vec<CurriculumLevel>, ImproveError> {
        let ProbeSite {
            cfg,
            targets,
            held,
            me,
            round,
            reach,
        } = *site;
        obs(&Event::Phase {
            phase: Phase::Probe,
            total: 0,
        });
        let mut out = Vec::new();
        for s in targets {
            let probe = |level: usize| -> Result<f64, ImproveError> {
                let mut rng = Rng::derive(
                    cfg.seed,
                    &format!("probe:{}:{round}", s.name()),
                    level as u64,
                );
                let tasks: Vec<Task> = (0..cfg.probe_tasks)
                    .map(|_| held.train_task(s, level, &mut rng))
                    .collect::<Result<_, _>>()?;
                let jobs = tasks
                    .iter()
                    .map(|t| {
                        Ok(Job {
                            prompt: chat_prompt(self.model, &[Message::new("user", &t.prompt)])?,
                            params: SamplingParams {
                                max_tokens: s.max_tokens(),
                                stop: chat_stop(self.model),
                                ..SamplingParams::greedy()
                            },
                            adapter: me.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, ImproveError>>()?;
                let mut passed = 0;
                generate(self.model, jobs, cfg.max_active, Prefixes::Exact, |i, o| {
                    passed += s.verify(&tasks[i], &o.text, o.cut_off).pass as usize;
                    Ok(())
                })?;
                Ok(passed as f64 / tasks.len().max(1) as f64)
            };
            out.extend(select_levels(
                s.name(),
                &s.levels(),
                cfg.max_levels,
                reach,
                probe,
            )?);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurriculumLevel {
    pub skill: String,
    pub level: usize,
    pub sub: String,
    /// Not probed (NaN, stored as null) when the level is out of reach.
    #[serde(deserialize_with = "nan_when_null")]
    pub probe_pass_rate: f64,
    pub practise: bool,
    /// Skipped: the current self's own attempts at it (or at an easier level of its family)
    /// almost never passed. Rounds recorded before this rule have none.
    #[serde(default)]
    pub out_of_reach: bool,
}

fn nan_when_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Below this share of verified samples a practised level is out of reach …
const OUT_OF_REACH: f64 = 0.02;
/// … once the current self has made at least this many attempts at it.
const OUT_OF_REACH_MIN_SAMPLES: usize = 100;

/// The curriculum's choice for one skill (see `Improver::curriculum`): `probe(level)` is the
/// current self's plain-chat pass rate, asked only of levels that are not out of reach.
pub(super) fn select_levels(
    skill: &str,
    levels: &[String],
    max_levels: usize,
    reach: &Reach,
    mut probe: impl FnMut(usize) -> Result<f64, ImproveError>,
) -> Result<Vec<CurriculumLevel>, ImproveError> {
    let mut out = Vec::new();
    let mut chosen = 0;
    let mut closed_families: BTreeSet<&str> = BTreeSet::new();
    for (level, sub) in levels.iter().enumerate() {
        if chosen >= max_levels {
            break;
        }
        let family = sub.split('-').next().unwrap_or("");
        let unreachable = reach
            .get(&(skill.to_string(), sub.clone()))
            .is_some_and(|[n, pass]| {
                *n >= OUT_OF_REACH_MIN_SAMPLES && (*pass as f64) < OUT_OF_REACH * *n as f64
            });
        if unreachable || closed_families.contains(family) {
            closed_families.insert(family);
            out.push(CurriculumLevel {
                skill: skill.into(),
                level,
                sub: sub.clone(),
                probe_pass_rate: f64::NAN,
                practise: false,
                out_of_reach: true,
            });
            continue;
        }
        let rate = probe(level)?;
        let practise = rate < 0.8;
        out.push(CurriculumLevel {
            skill: skill.into(),
            level,
            sub: sub.clone(),
            probe_pass_rate: rate,
            practise,
            out_of_reach: false,
        });
        chosen += practise as usize;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_out_of_reach_and_harder_ones_of_their_family_wait() {
        let levels: Vec<String> = [
            "add-1", "sub-1", "mul-1x1", "add-2", "sub-2", "mul-2x1", "add-3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rates = [0.9, 0.5, 0.9, 0.0, 0.05, 0.2, 0.0];
        let mut reach = Reach::new();
        reach.insert(("arithmetic".into(), "add-2".into()), [720, 3]);
        // Too few attempts to judge: still practised.
        reach.insert(("arithmetic".into(), "sub-2".into()), [50, 0]);
        let mut probed = Vec::new();
        let got = select_levels("arithmetic", &levels, 3, &reach, |l| {
            probed.push(l);
            Ok(rates[l])
        })
        .unwrap();
        let practised: Vec<&str> = got
            .iter()
            .filter(|c| c.practise)
            .map(|c| c.sub.as_str())
            .collect();
        assert_eq!(practised, ["sub-1", "sub-2", "mul-2x1"]);
        let out: Vec<&str> = got
            .iter()
            .filter(|c| c.out_of_reach)
            .map(|c| c.sub.as_str())
            .collect();
        assert_eq!(out, ["add-2"]);
        assert!(!probed.contains(&3), "an out-of-reach level is not probed");
        // add-3 comes after add-2 in the same family: it waits too.
        let got = select_levels("arithmetic", &levels, 9, &reach, |l| Ok(rates[l])).unwrap();
        assert!(got
            .iter()
            .any(|c| c.sub == "add-3" && c.out_of_reach && !c.practise));
        // A record of the level round-trips through the registry's JSON (NaN as null).
        let j = serde_json::to_value(&got).unwrap();
        let back: Vec<CurriculumLevel> = serde_json::from_value(j).unwrap();
        assert!(back[3].probe_pass_rate.is_nan() && back[3].out_of_reach);
        assert_eq!(back[1].probe_pass_rate, 0.5);
    }
}

/// (skill, level) → [samples, passes] of the current self's earlier attempts in a run.
pub(super) type Reach = BTreeMap<(String, String), [usize; 2]>;

/// What the curriculum probes with.
#[derive(Clone, Copy)]
pub(super) struct ProbeSite<'a> {
    pub(super) cfg: &'a ImproveConfig,
    pub(super) targets: &'a [Skill],
    pub(super) held: &'a HeldOut,
    pub(super) me: &'a Option<Arc<LoraAdapter>>,
    pub(super) round: i64,
    pub(super) reach: &'a Reach,
}
