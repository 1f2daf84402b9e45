//! What a round practises: proposals from the current self, tasks, demonstrations and the
//! rollouts that attempt them, committed to the registry a chunk at a time.
use super::*;

/// Few-shot demonstrations (user turn, verified answer) and where they came from.
pub(super) type Demos = (Vec<(String, String)>, &'static str);

/// What a round's demonstrations are drawn for: the run's settings, its skill and its verified
/// pool.
#[derive(Clone, Copy)]
pub(super) struct DemoSite<'a> {
    pub(super) cfg: &'a ImproveConfig,
    pub(super) skill: &'a Skill,
    pub(super) held: &'a HeldOut,
    pub(super) round: i64,
    pub(super) pool: &'a [(Task, String)],
}

/// One kind of list the model continues with proposals, and how its lines are kept.
pub(super) struct ProposalList<'a> {
    /// The registry's name for it.
    pub(super) key: &'a str,
    pub(super) what: &'a str,
    pub(super) header: &'a str,
    pub(super) seeds: &'a [&'a str],
    pub(super) held_out: &'a [&'a str],
    pub(super) clean: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Improver<'a> {
    /// The instructions skill's writing requests for a new round: those proposed in earlier
    /// rounds, and new ones from the current self (kept in the registry, so a resumed run
    /// practises the same).
    pub(super) fn propose(
        &mut self,
        run: &str,
        round: i64,
        cfg: &ImproveConfig,
        targets: &mut [Skill],
        me: &Option<Arc<LoraAdapter>>,
        obs: Observer,
    ) -> Result<(), ImproveError> {
        let mut notes = Vec::new();
        for s in targets.iter_mut() {
            match s {
                Skill::Instructions(proposed) => {
                    let seeds = instructions::requests(Split::Train);
                    let held_out = instructions::requests(Split::Eval);
                    let list = ProposalList {
                        key: "instructions",
                        what: "writing requests",
                        header: REQUESTS_HEADER,
                        seeds: &seeds,
                        held_out: &held_out,
                        clean: &crate::propose::clean,
                    };
                    notes.push(self.propose_list(run, round, cfg, me, &list, proposed)?);
                }
                Skill::Arithmetic(proposed) => {
                    for op in arithmetic::Op::ALL {
                        let seeds = arithmetic::phrasings(op, Split::Train);
                        let held_out = arithmetic::phrasings(op, Split::Eval);
                        let key = format!("arithmetic:{}", op.name());
                        let header = format!("Ways people ask an assistant {}:", op.asking());
                        let clean = move |l: &str| arithmetic::clean_phrasing(l, op);
                        let list = ProposalList {
                            key: &key,
                            what: "phrasings",
                            header: &header,
                            seeds: &seeds,
                            held_out: &held_out,
                            clean: &clean,
                        };
                        notes.push(self.propose_list(
                            run,
                            round,
                            cfg,
                            me,
                            &list,
                            proposed.of_mut(op),
                        )?);
                    }
                }
                _ => {}
            }
        }
        if cfg.propose.samples > 0 {
            for n in notes {
                obs(&Event::Note(n));
            }
        }
        Ok(())
    }

    /// One list's proposals for a new round: the earlier rounds' from the registry, then new
    /// ones from the current self, stored before the round's tasks are drawn. Returns what to
    /// tell the user.
    pub(super) fn propose_list(
        &mut self,
        run: &str,
        round: i64,
        cfg: &ImproveConfig,
        me: &Option<Arc<LoraAdapter>>,
        list: &ProposalList,
        proposed: &mut Vec<String>,
    ) -> Result<String, ImproveError> {
        *proposed = self.reg.proposals(run, list.key, round)?;
        let seeds: Vec<String> = list.seeds.iter().map(|s| s.to_string()).collect();
        let known: Vec<String> = seeds.iter().chain(proposed.iter()).cloned().collect();
        let new = crate::propose::propose(&Ask {
            model: self.model,
            adapter: me.clone(),
            header: list.header,
            seeds: &seeds,
            clean: list.clean,
            known: &known,
            held_out: list.held_out,
            settings: &cfg.propose,
            seed: cfg.seed ^ fnv(format!("propose:{round}:{}", list.key).as_bytes()),
            max_active: cfg.max_active,
        })?;
        self.reg.put_proposals(run, round, list.key, &new)?;
        let said = format!(
            "{}: the model proposed {} new {} ({} of its own in all)",
            list.key,
            new.len(),
            list.what,
            proposed.len() + new.len()
        );
        proposed.extend(new);
        Ok(said)
    }

    pub(super) fn make_tasks(
        &self,
        cfg: &ImproveConfig,
        targets: &[Skill],
        held: &HeldOut,
        cur: &[CurriculumLevel],
        round: i64,
    ) -> Result<Vec<Task>, ImproveError> {
        let chosen: Vec<&CurriculumLevel> = cur.iter().filter(|c| c.practise).collect();
        let mut tasks = Vec::new();
        if chosen.is_empty() {
            return Ok(tasks);
        }
        let per = cfg.tasks_per_round.div_ceil(chosen.len());
        for c in chosen {
            let s = targets
                .iter()
                .find(|s| s.name() == c.skill)
                .expect("curriculum skills are targets");
            let mut rng = Rng::derive(
                cfg.seed,
                &format!("tasks:{}:{round}", c.skill),
                c.level as u64,
            );
            for _ in 0..per {
                tasks.push(held.train_task(s, c.level, &mut rng)?);
            }
        }
        tasks.truncate(cfg.tasks_per_round);
        Ok(tasks)
    }

    /// Few-shot demonstrations for `task`: generator-made (a program knows the answer), else
    /// this run's verified pool; shared by blocks of eight tasks so their prefixes are reused.
    pub(super) fn demos(
        &self,
        at: DemoSite,
        task: &Task,
        index: usize,
    ) -> Result<Demos, ImproveError> {
        let DemoSite {
            cfg,
            skill: s,
            held,
            round,
            pool,
        } = at;
        let mut rng = Rng::derive(
            cfg.seed,
            &format!("demos:{round}:{}", task.sub),
            (index / 8) as u64,
        );
        let mut demos = Vec::new();
        let mut source = "none";
        if s.reference_answer(task).is_some() {
            source = if matches!(s, Skill::User(_)) {
                "examples"
            } else {
                "generator"
            };
            let mut tries = 0;
            while demos.len() < cfg.shots && tries < 50 * cfg.shots {
                tries += 1;
                let d = held.train_task(s, task.level, &mut rng)?;
                if d.key == task.key {
                    continue;
                }
                if let Some(a) = s.demonstration(&d) {
                    demos.push((d.prompt, a));
                }
            }
        } else {
            let same: Vec<&(Task, String)> = pool
                .iter()
                .filter(|(t, _)| t.skill == task.skill && t.key != task.key)
                .collect();
            if !same.is_empty() {
                source = "pool";
                for _ in 0..cfg.shots.min(same.len()) {
                    let (t, a) = rng.pick(&same);
                    demos.push((t.prompt.clone(), a.trim().to_string()));
                }
            }
        }
        Ok((demos, source))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn rollout_chunk(
        &self,
        run: &str,
        cfg: &ImproveConfig,
        targets: &[Skill],
        held: &HeldOut,
        me: &Option<Arc<LoraAdapter>>,
        round: i64,
        tasks: &[Task],
        chunk: &[usize],
    ) -> Result<(Vec<SampleRow>, GenStats, f64), ImproveError> {
        let pool = if round > 0
            || tasks.iter().any(|t| {
                targets
                    .iter()
                    .any(|s| s.name() == t.skill && s.reference_answer(t).is_none())
            }) {
            self.reg.verified(run, round)?
        } else {
            Vec::new()
        };
        let mut jobs = Vec::new();
        let mut meta = Vec::new();
        for &ti in chunk {
            let t = &tasks[ti];
            let s = targets
                .iter()
                .find(|s| s.name() == t.skill)
                .ok_or_else(|| ImproveError::UnknownSkill(t.skill.clone()))?;
            held.check(t)?;
            let site = DemoSite {
                cfg,
                skill: s,
                held,
                round,
                pool: &pool,
            };
            let (demos, mut source) = self.demos(site, t, ti)?;
            // A skill with no answers to show yet (instructions before its first verified
            // reply) is bootstrapped zero-shot: the raw base continues a question-and-answer
            // page, where it writes an answer instead of echoing the chat turn.
            // A user skill whose file says `scaffold = "none"` is only ever asked in plain chat.
            let no_scaffold = matches!(s, Skill::User(u) if !u.scaffold_from_examples);
            if demos.is_empty() {
                source = if cfg.shots > 0 && !no_scaffold {
                    "zero-shot"
                } else {
                    "none"
                };
            }
            let single_line = demos.iter().all(|(_, a)| !a.contains('\n'));
            for k in 0..cfg.samples_per_task.max(1) {
                let scaffolded = k > 0 && source != "none";
                // Demonstrations go on a raw question-and-answer page, which a raw base
                // continues best, or as earlier chat turns when they span lines. A trained
                // current self has learned the chat turn, so every other sample of its shows
                // one-line demonstrations as chat turns too; the round's stats say which
                // form passed more often.
                let as_chat = !demos.is_empty() && (!single_line || (me.is_some() && k % 2 == 0));
                // From the run's seed, not its id: `--seed` reproduces a run's rollouts.
                let seed = fnv(format!("sample:{round}:{ti}:{k}").as_bytes()) ^ cfg.seed;
                let mut params = SamplingParams {
                    temperature: cfg.temperature,
                    seed,
                    max_tokens: s.max_tokens(),
                    stop: chat_stop(self.model),
                    ..SamplingParams::default()
                };
                let prompt = if !scaffolded {
                    chat_prompt(self.model, &[Message::new("user", &t.prompt)])?
                } else if demos.is_empty() {
                    params.stop = vec!["\nQ:".into()];
                    raw_prompt(self.model, &format!("Q: {}\nA:", t.prompt))
                } else if !as_chat {
                    let mut text = String::new();
                    for (q, a) in &demos {
                        text.push_str(&format!("Q: {q}\nA: {a}\n\n"));
                    }
                    text.push_str(&format!("Q: {}\nA:", t.prompt));
                    params.stop = vec!["\n".into()];
                    raw_prompt(self.model, &text)
                } else {
                    let mut msgs = Vec::new();
                    for (q, a) in &demos {
                        msgs.push(Message::new("user", q));
                        msgs.push(Message::new("assistant", a));
                    }
                    msgs.push(Message::new("user", &t.prompt));
                    chat_prompt(self.model, &msgs)?
                };
                jobs.push(Job {
                    prompt,
                    params,
                    adapter: me.clone(),
                });
                let label = match (scaffolded, as_chat) {
                    (false, _) => "none".to_string(),
                    (true, false) => source.to_string(),
                    (true, true) => format!("{source}/chat"),
                };
                meta.push((ti, k, label, s));
            }
        }
        let mut rows = Vec::with_capacity(jobs.len());
        let mut verify_s = 0.0;
        let stats = generate(
            self.model,
            jobs,
            cfg.max_active,
            Prefixes::Shared,
            |i, o| {
                let (ti, k, ref source, s) = meta[i];
                let t0 = Instant::now();
                let text = o.text.trim().to_string();
                // A raw-scaffold reply that stopped at its newline ended as it should.
                let v = s.verify(&tasks[ti], &text, o.cut_off);
                verify_s += ms(t0);
                rows.push(SampleRow {
                    task: ti as i64,
                    k: k as i64,
                    scaffold: source.clone(),
                    text,
                    tokens: o.tokens as i64,
                    cut_off: o.cut_off,
                    verdict: v,
                });
                Ok(())
            },
        )?;
        Ok((rows, stats, verify_s))
    }
}
