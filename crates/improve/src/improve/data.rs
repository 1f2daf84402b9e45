//! What a round trains on and how it is recorded: replayed text, verified examples, DPO
//! pairs, the SFT stage's score and the round's statistics.
use super::*;

impl<'a> Improver<'a> {
    /// The run's replay texts: sampled from the base at its first training and kept in the
    /// registry, so a resumed run trains on the same ones.
    pub(super) fn replay(
        &mut self,
        run: &str,
        cfg: &ImproveConfig,
        guard_text: Option<&str>,
        obs: Observer,
    ) -> Result<Vec<String>, ImproveError> {
        if cfg.replay.samples == 0 || cfg.replay.share <= 0.0 {
            return Ok(Vec::new());
        }
        let have = self.reg.replay(run)?;
        if !have.is_empty() {
            return Ok(have);
        }
        let avoid: Vec<&str> = guard_text.into_iter().collect();
        let s = crate::replay::sample(self.model, &cfg.replay, cfg.seed, cfg.max_active, &avoid)?;
        if s.overlapping > 0 {
            obs(&Event::Note(format!(
                "replay: {} of the base's samples shared a run of words with the guard text and were dropped",
                s.overlapping
            )));
        }
        self.reg.put_replay(run, &s.texts)?;
        Ok(s.texts)
    }

    /// Scores the SFT stage `improve` keeps beside candidate `version` while it trains DPO (see
    /// [`crate::trainer`]), records it with the round, and deletes it.
    pub(super) fn score_sft_stage(
        &mut self,
        run: &str,
        round: i64,
        version: i64,
        cfg: &ImproveConfig,
        targets: &[Skill],
        timings: &mut serde_json::Value,
    ) -> Result<(), ImproveError> {
        let stage = crate::trainer::sft_stage_name(&format!("self-v{version}"));
        if !self.adapters.adapters.exists(&stage) {
            return Ok(());
        }
        let mut st = self.reg.round_stats(run, round)?;
        if st.get("sft_stage").is_none() && st.is_object() {
            let t0 = Instant::now();
            let ad = self.adapters.get(&stage, &self.model.config)?;
            let mut scores = serde_json::Map::new();
            for s in targets {
                let set = self.eval_set(s)?;
                let (score, _, _) = evaluate(
                    self.model,
                    Some(ad.clone()),
                    s,
                    &set,
                    cfg.eval_n,
                    cfg.max_active,
                )?;
                scores.insert(
                    s.name().into(),
                    serde_json::to_value(&score.levels).expect("scores serialize"),
                );
            }
            st["sft_stage"] = scores.into();
            add_time(timings, "sft_stage_eval_s", ms(t0));
            self.reg
                .update_round(run, round, "eval", Some(version), timings, &st)?;
        }
        self.adapters.adapters.remove(&stage)?;
        Ok(())
    }

    /// DPO pairs from every attempt of the run so far (see [`crate::pairs`]), none from a
    /// held-out problem, verified under today's rules.
    pub(super) fn preference_pairs(
        &self,
        run: &str,
        round: i64,
        cfg: &ImproveConfig,
        held: &HeldOut,
        targets: &[Skill],
    ) -> Result<Vec<Pair>, ImproveError> {
        let attempts = self.reg.attempts(run, round)?;
        for (t, _, _) in &attempts {
            held.check(t)?;
            skill_of(targets, t)?;
        }
        let mut verify = |t: &Task, reply: &str, cut_off: bool| match skill_of(targets, t) {
            Ok(s) => s.verify(t, reply, cut_off),
            Err(_) => Verdict::degenerate(Degenerate::Empty),
        };
        Ok(preference_pairs(
            &attempts,
            &mut verify,
            PairLimits {
                per_task: cfg.cap_per_task,
                total: cfg.dpo.max_pairs,
                seed: cfg.seed,
            },
        ))
    }

    /// Every verified answer of the run so far as plain chat turns: deduplicated, at most
    /// `cap_per_task` per problem, none from a held-out problem.
    pub(super) fn training_examples(
        &self,
        run: &str,
        round: i64,
        cfg: &ImproveConfig,
        held: &HeldOut,
        targets: &[Skill],
    ) -> Result<Vec<Example>, ImproveError> {
        let mut seen = BTreeSet::new();
        let mut per_key: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut out = Vec::new();
        for (t, text) in self.reg.verified(run, round)? {
            held.check(&t)?;
            let e = Example {
                user: t.prompt.clone(),
                answer: text.trim().to_string(),
            };
            // Verified again under today's rules: a run resumed across a change of them (garbled
            // replies, arithmetic answers that run on) trains only on what passes now.
            let passes = skill_of(targets, &t)?.verify(&t, &e.answer, false).pass;
            if e.answer.is_empty() || !passes || !seen.insert(e.clone()) {
                continue;
            }
            let c = per_key.entry((t.skill.clone(), t.key.clone())).or_default();
            if *c >= cfg.cap_per_task {
                continue;
            }
            *c += 1;
            out.push(e);
        }
        Ok(out)
    }

    /// Pass rates by level and scaffold, verified share and degenerate share of a round.
    pub(super) fn round_stats(
        &self,
        run: &str,
        round: i64,
        tasks: &[Task],
    ) -> Result<serde_json::Value, ImproveError> {
        let samples = self.reg.samples(run, round)?;
        let mut rates: LevelRates = BTreeMap::new();
        let mut degenerate: BTreeMap<&str, usize> = BTreeMap::new();
        // Per level and scaffold form: [samples, passes].
        let mut by_scaffold: BTreeMap<String, BTreeMap<&str, [usize; 2]>> = BTreeMap::new();
        for s in &samples {
            let Some(t) = tasks.get(s.task as usize) else {
                continue;
            };
            let b = by_scaffold
                .entry(t.sub.clone())
                .or_default()
                .entry(s.scaffold.as_str())
                .or_default();
            b[0] += 1;
            b[1] += s.verdict.pass as usize;
            let r = rates.entry((t.sub.clone(), t.level)).or_default();
            let off = if s.scaffold == "none" { 0 } else { 2 };
            r[off] += 1;
            r[off + 1] += s.verdict.pass as usize;
            if let Some(d) = s.verdict.degenerate {
                *degenerate.entry(d.name()).or_default() += 1;
            }
        }
        let levels: Vec<serde_json::Value> = rates
            .iter()
            .map(|((sub, level), r)| {
                serde_json::json!({"sub": sub, "level": level, "plain_n": r[0], "plain_pass": r[1],
                                   "scaffold_n": r[2], "scaffold_pass": r[3]})
            })
            .collect();
        let n = samples.len();
        let passed = samples.iter().filter(|s| s.verdict.pass).count();
        let deg: usize = degenerate.values().sum();
        Ok(serde_json::json!({
            "tasks": tasks.len(),
            "samples": n,
            "verified": passed,
            "verified_share": passed as f64 / n.max(1) as f64,
            "degenerate_share": deg as f64 / n.max(1) as f64,
            "degenerate": degenerate,
            "levels": levels,
            "by_scaffold": by_scaffold,
        }))
    }
}

/// The skill of `targets` that task `t` belongs to.
fn skill_of<'s>(targets: &'s [Skill], t: &Task) -> Result<&'s Skill, ImproveError> {
    targets
        .iter()
        .find(|s| s.name() == t.skill)
        .ok_or_else(|| ImproveError::UnknownSkill(t.skill.clone()))
}
