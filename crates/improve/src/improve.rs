//! The loop: per round, a curriculum probe, rollouts under a few-shot scaffold and in plain
//! chat, verification, training a candidate from the base on everything verified so far
//! (ReST-EM), held-out evaluation, the gate, and promotion or rejection — each step committed
//! to the registry so a killed run resumes where it stopped.
use crate::changes::Changes;
use crate::eval::{evalset_id, evaluate, perplexity};
use crate::evalset::{EvalSet, HeldOut};
use crate::pairs::{preference_pairs, PairLimits};
use crate::propose::{Ask, ProposeSettings, REQUESTS_HEADER};
use crate::registry::{now, AdapterRow, Registry, SampleRow, CANDIDATE};
use crate::replay::ReplaySettings;
use crate::rng::{fnv, Rng};
use crate::rollout::{chat_prompt, chat_stop, generate, raw_prompt, GenStats, Job, Prefixes};
use crate::score::{gate, Focus, GateConfig, SkillScore};
use crate::skill::{self, Skill};
use crate::task::{Degenerate, Split, Task, Verdict};
use crate::trainer::{train, Base, Candidate, DpoSettings, Example, Pair, TrainSettings};
use crate::{arithmetic, instructions, ImproveError};
use autodidact_engine::{AdapterCache, SamplingParams};
use autodidact_model::{LoraAdapter, Message, Model};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod curriculum;
mod data;
mod practice;

pub use curriculum::CurriculumLevel;
use curriculum::ProbeSite;

/// Where the loop keeps its files under `AUTODIDACT_HOME`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub home: PathBuf,
}

impl Paths {
    pub fn new(home: &Path) -> Self {
        Paths {
            home: home.to_path_buf(),
        }
    }
    pub fn registry(&self) -> PathBuf {
        self.home.join("improve").join("registry.sqlite")
    }
    pub fn evalsets(&self) -> PathBuf {
        self.home.join("improve").join("evalsets")
    }
    pub fn skills(&self) -> PathBuf {
        self.home.join("skills")
    }
    pub fn work(&self, run: &str, round: i64) -> PathBuf {
        self.home
            .join("improve")
            .join("runs")
            .join(run)
            .join(format!("round-{round}"))
    }
    /// Where a run's report (Markdown and plots) is written.
    pub fn report(&self, run: &str) -> PathBuf {
        self.home
            .join("improve")
            .join("runs")
            .join(run)
            .join("report")
    }
}

/// The promoted adapter that `run` and `serve` should use by default.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurrentSelf {
    pub version: i64,
    /// Its name in the adapter store.
    pub adapter: String,
    pub base_model: String,
}

/// The current self under `home`, or `None` for the base model (also when no run ever
/// happened: this never creates the registry).
pub fn current_self(home: &Path) -> Result<Option<CurrentSelf>, ImproveError> {
    let Some(reg) = Registry::open_existing(&Paths::new(home).registry())? else {
        return Ok(None);
    };
    let Some(v) = reg.current()? else {
        return Ok(None);
    };
    Ok(reg.adapter(v)?.map(|a| CurrentSelf {
        version: a.version,
        adapter: a.name,
        base_model: a.base_model,
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImproveConfig {
    /// Skills to improve (the gate's targets).
    pub skills: Vec<String>,
    /// Other skills scored for regressions.
    pub guard_skills: Vec<String>,
    pub rounds: usize,
    pub tasks_per_round: usize,
    /// Samples per task: one in plain chat (the current self as users see it), the rest under
    /// the few-shot scaffold when the skill has demonstrations.
    pub samples_per_task: usize,
    pub shots: usize,
    pub temperature: f32,
    /// Sequences in flight during generation.
    pub max_active: usize,
    /// Tasks whose rollouts are committed together.
    pub chunk_tasks: usize,
    /// Distinct verified answers kept per problem.
    pub cap_per_task: usize,
    /// Levels practised at once.
    pub max_levels: usize,
    /// Plain-chat probe tasks per level at the start of a round.
    pub probe_tasks: usize,
    /// Held-out tasks per level for target skills (0: all) and for guard skills.
    pub eval_n: usize,
    pub guard_n: usize,
    pub train: TrainSettings,
    /// The base's own free text trained beside the verified answers (keeps general language).
    /// Runs recorded before replay existed resume without it.
    #[serde(default = "ReplaySettings::off")]
    pub replay: ReplaySettings,
    /// Writing requests the model proposes each round (instructions). Runs recorded before
    /// proposals existed resume without them.
    #[serde(default = "ProposeSettings::off")]
    pub propose: ProposeSettings,
    /// DPO after SFT on pairs of the model's own passed and failed answers (off unless its
    /// `beta` is above 0; runs recorded before it existed resume without it).
    #[serde(default = "DpoSettings::off")]
    pub dpo: DpoSettings,
    pub gate: GateConfig,
    pub guard_text: Option<PathBuf>,
    pub guard_chunks: usize,
    pub seed: u64,
    /// Wall-clock seconds for the whole run (resumed runs get a fresh budget).
    pub budget_s: Option<f64>,
}

impl Default for ImproveConfig {
    fn default() -> Self {
        ImproveConfig {
            skills: vec!["arithmetic".into()],
            // Answering from what the conversation holds (the use chat makes of recalled
            // memories): an arithmetic run once promoted a self that had lost some of it, which
            // the arithmetic levels and the guard text could not see (README, round 10).
            guard_skills: vec!["recall".into()],
            rounds: 3,
            tasks_per_round: 600,
            samples_per_task: 4,
            shots: 4,
            temperature: 0.8,
            max_active: 32,
            chunk_tasks: 32,
            cap_per_task: 4,
            max_levels: 3,
            probe_tasks: 16,
            eval_n: 50,
            guard_n: 10,
            train: TrainSettings::default(),
            replay: ReplaySettings::default(),
            propose: ProposeSettings::default(),
            dpo: DpoSettings::default(),
            gate: GateConfig::default(),
            guard_text: None,
            guard_chunks: 8,
            seed: 1,
            budget_s: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Probe,
    Rollouts,
    Train,
    Eval,
    Gate,
}

/// What the loop reports as it goes (progress bars, logs).
#[derive(Debug, Clone)]
pub enum Event {
    Round {
        round: i64,
        of: usize,
    },
    Phase {
        phase: Phase,
        total: usize,
    },
    Progress {
        done: usize,
        total: usize,
        message: String,
    },
    Scored {
        subject: String,
        score: SkillScore,
    },
    Guard {
        subject: String,
        ppl: f64,
    },
    Verdict {
        version: i64,
        promoted: bool,
        reasons: Vec<String>,
    },
    Note(String),
}

/// Per round: what was practised and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct RoundSummary {
    pub round: i64,
    pub candidate: Option<i64>,
    pub promoted: bool,
    pub reasons: Vec<String>,
    pub stats: serde_json::Value,
    pub timings: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run: String,
    pub rounds: Vec<RoundSummary>,
    pub stopped_by_budget: bool,
    pub current: Option<i64>,
}

pub type Observer<'o> = &'o mut dyn FnMut(&Event) -> bool;

pub struct Improver<'a> {
    pub model: &'a Model,
    pub model_name: String,
    /// The base's sha256 when known: recorded in each adapter's metadata and checked on load.
    pub model_sha256: Option<String>,
    pub paths: Paths,
    pub reg: Registry,
    pub adapters: AdapterCache,
    pub skills: Vec<Skill>,
}

/// Who is scored: the base or an adapter version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Base,
    Version(i64),
}

impl Subject {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Subject::Base, Subject::Version)
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Per level: (plain samples, plain passes, scaffold samples, scaffold passes).
type LevelRates = BTreeMap<(String, usize), [usize; 4]>;

impl<'a> Improver<'a> {
    /// The loop over `model` (registered as `model_name`) in the store at `home`.
    pub fn new(
        model: &'a Model,
        model_name: &str,
        model_sha256: Option<String>,
        home: &Path,
    ) -> Result<Self, ImproveError> {
        let store = autodidact_store::Store::at(home)?;
        store.data_dir("improve")?;
        let paths = Paths::new(home);
        let reg = Registry::open(&paths.registry())?;
        let skills = skill::load_all(&store.skills_dir())?;
        Ok(Improver {
            model,
            model_name: model_name.into(),
            adapters: AdapterCache::new(store.adapters(), model_sha256.clone()),
            model_sha256,
            paths,
            reg,
            skills,
        })
    }

    fn subject_key(&self, s: Subject) -> String {
        match s {
            Subject::Base => format!("base:{}", self.model_name),
            Subject::Version(v) => format!("adapter:{v}"),
        }
    }

    fn adapter_of(&self, s: Subject) -> Result<Option<Arc<LoraAdapter>>, ImproveError> {
        match s {
            Subject::Base => Ok(None),
            Subject::Version(v) => {
                let row = self
                    .reg
                    .adapter(v)?
                    .ok_or(ImproveError::UnknownVersion(v))?;
                Ok(Some(self.adapters.get(&row.name, &self.model.config)?))
            }
        }
    }

    pub fn skill(&self, name: &str) -> Result<Skill, ImproveError> {
        skill::select(&self.skills, &[name.to_string()]).map(|mut v| v.remove(0))
    }

    pub fn eval_set(&self, s: &Skill) -> Result<EvalSet, ImproveError> {
        EvalSet::open(&self.paths.evalsets(), s)
    }

    /// Held-out score of `who` on `skill` (first `n` tasks per level), from the registry when
    /// already measured.
    pub fn score(
        &mut self,
        who: Subject,
        skill: &Skill,
        n: usize,
        max_active: usize,
        obs: Observer,
    ) -> Result<(SkillScore, Option<GenStats>), ImproveError> {
        let set = self.eval_set(skill)?;
        let key = self.subject_key(who);
        if let Some(s) = self
            .reg
            .score(&key, skill.name(), &evalset_id(&set, n))?
            .filter(SkillScore::has_passes)
        {
            // A score stored before task-by-task verdicts were kept is measured again, so the
            // gate can pair it with a candidate's.
            return Ok((s, None));
        }
        let ad = self.adapter_of(who)?;
        let (s, _, stats) = evaluate(self.model, ad, skill, &set, n, max_active)?;
        self.reg.put_score(&key, &s)?;
        obs(&Event::Scored {
            subject: key,
            score: s.clone(),
        });
        Ok((s, Some(stats)))
    }

    /// Guard perplexity of `who`, cached by the text's hash.
    pub fn guard(&mut self, who: Subject, text: &str, chunks: usize) -> Result<f64, ImproveError> {
        let h = format!("{:016x}:{chunks}", fnv(text.as_bytes()));
        let key = self.subject_key(who);
        if let Some(p) = self.reg.ppl(&key, &h)? {
            return Ok(p);
        }
        let ad = self.adapter_of(who)?;
        let p = perplexity(self.model, ad.as_deref(), text, 512, chunks)?;
        self.reg.put_ppl(&key, &h, p)?;
        Ok(p)
    }

    /// Starts a new run.
    pub fn start(&mut self, cfg: ImproveConfig, obs: Observer) -> Result<Summary, ImproveError> {
        let mut cfg = cfg;
        // A candidate is trained from the base on this run's data alone, so what the current
        // self was promoted for must be guarded, or a run for another skill would lose it.
        for s in self.current_self_skills()? {
            if !cfg.skills.contains(&s) && !cfg.guard_skills.contains(&s) {
                obs(&Event::Note(format!(
                    "guarding {s}: the current self was promoted for it, and a candidate that loses it is rejected"
                )));
                cfg.guard_skills.push(s);
            }
        }
        for s in cfg.skills.iter().chain(&cfg.guard_skills) {
            self.skill(s)?;
        }
        let mut id = format!("run-{}", now());
        let mut i = 1;
        while self.reg.run(&id)?.is_some() {
            i += 1;
            id = format!("run-{}-{i}", now());
        }
        let conf = serde_json::to_value(&cfg).expect("configs serialize");
        self.reg
            .create_run(&id, &self.model_name, &cfg.skills, &conf)?;
        self.drive(&id, cfg, obs)
    }

    /// The skills of the run that produced the current self (none for the base).
    fn current_self_skills(&self) -> Result<Vec<String>, ImproveError> {
        let Some(v) = self.reg.current()? else {
            return Ok(Vec::new());
        };
        let Some(a) = self.reg.adapter(v)? else {
            return Ok(Vec::new());
        };
        Ok(self.reg.run(&a.run)?.map(|r| r.skills).unwrap_or_default())
    }

    /// Continues `run` from its last committed step, with `changes` to the settings of the
    /// rounds still to come (recorded in the registry's history and said through `obs`).
    pub fn resume(
        &mut self,
        run: &str,
        changes: &Changes,
        obs: Observer,
    ) -> Result<Summary, ImproveError> {
        let row = self
            .reg
            .run(run)?
            .ok_or_else(|| ImproveError::UnknownRun(run.into()))?;
        let mut cfg: ImproveConfig =
            serde_json::from_value(row.config).map_err(|e| ImproveError::Run {
                run: run.into(),
                reason: format!("stored configuration unreadable: {e}"),
            })?;
        if row.model != self.model_name {
            return Err(ImproveError::Run {
                run: run.into(),
                reason: format!(
                    "was started on model {}, not {}",
                    row.model, self.model_name
                ),
            });
        }
        let started = self.reg.rounds(run)?.iter().map(|r| r.idx + 1).max();
        changes
            .check(started.unwrap_or(0) as usize)
            .map_err(|reason| ImproveError::Run {
                run: run.into(),
                reason,
            })?;
        if cfg.replay.samples == 0
            && (changes.replay_share.is_some() || changes.replay_top_k.is_some())
        {
            return Err(ImproveError::Run {
                run: run.into(),
                reason: "replays no text, so its replay share and top-k cannot change".into(),
            });
        }
        let said = changes.apply(&mut cfg);
        if !said.is_empty() {
            let conf = serde_json::to_value(&cfg).expect("configs serialize");
            let note = format!("resumed with {}", said.join(", "));
            self.reg.change_run_config(run, &conf, &note)?;
            obs(&Event::Note(format!("{run} {note}")));
        }
        self.reg.set_run_status(run, "running", "")?;
        self.drive(run, cfg, obs)
    }

    fn drive(
        &mut self,
        run: &str,
        cfg: ImproveConfig,
        obs: Observer,
    ) -> Result<Summary, ImproveError> {
        let started = Instant::now();
        let over = |cfg: &ImproveConfig| {
            cfg.budget_s
                .is_some_and(|b| started.elapsed().as_secs_f64() > b)
        };
        let mut targets: Vec<Skill> = cfg
            .skills
            .iter()
            .map(|s| self.skill(s))
            .collect::<Result<_, _>>()?;
        let guards: Vec<Skill> = cfg
            .guard_skills
            .iter()
            .filter(|s| !cfg.skills.contains(s))
            .map(|s| self.skill(s))
            .collect::<Result<_, _>>()?;
        let mut sets = Vec::new();
        for s in targets.iter().chain(&guards) {
            sets.push(self.eval_set(s)?);
        }
        let held = HeldOut::new(&sets);
        let guard_text = match &cfg.guard_text {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| ImproveError::io(p, e))?),
            None => None,
        };
        let mut summary = Summary {
            run: run.into(),
            rounds: Vec::new(),
            stopped_by_budget: false,
            current: self.reg.current()?,
        };
        let interrupted = || ImproveError::Interrupted { run: run.into() };
        for round in 0..cfg.rounds as i64 {
            let existing = self.reg.rounds(run)?.into_iter().find(|r| r.idx == round);
            if let Some(r) = &existing {
                if r.status == "done" {
                    summary.rounds.push(RoundSummary {
                        round,
                        candidate: r.candidate,
                        promoted: r.stats["promoted"].as_bool().unwrap_or(false),
                        reasons: serde_json::from_value(r.stats["reasons"].clone())
                            .unwrap_or_default(),
                        stats: r.stats.clone(),
                        timings: r.timings.clone(),
                    });
                    continue;
                }
            }
            if over(&cfg) {
                summary.stopped_by_budget = true;
                break;
            }
            if !obs(&Event::Round {
                round,
                of: cfg.rounds,
            }) {
                return Err(interrupted());
            }
            let parent = self.reg.current()?;
            let me = Subject::from(parent);
            let me_adapter = self.adapter_of(me)?;
            let mut timings = existing
                .as_ref()
                .map(|r| r.timings.clone())
                .filter(|t| t.is_object())
                .unwrap_or_else(|| serde_json::json!({}));
            // 1. Curriculum and tasks.
            let tasks = match &existing {
                Some(_) => self.reg.tasks(run, round)?,
                None => {
                    let t0 = Instant::now();
                    self.propose(run, round, &cfg, &mut targets, &me_adapter, obs)?;
                    timings["propose_s"] = ms(t0).into();
                    let t0 = Instant::now();
                    let reach = self.reach(run, round, parent)?;
                    let site = ProbeSite {
                        cfg: &cfg,
                        targets: &targets,
                        held: &held,
                        me: &me_adapter,
                        round,
                        reach: &reach,
                    };
                    let cur = self.curriculum(&site, obs)?;
                    let tasks = self.make_tasks(&cfg, &targets, &held, &cur, round)?;
                    timings["probe_s"] = ms(t0).into();
                    let curj = serde_json::to_value(&cur).expect("curricula serialize");
                    self.reg.start_round(run, round, &curj, &tasks)?;
                    self.reg.update_round(
                        run,
                        round,
                        "rollouts",
                        None,
                        &timings,
                        &serde_json::json!({}),
                    )?;
                    tasks
                }
            };
            // 2-3. Rollouts and verification, committed per chunk.
            let status = existing
                .as_ref()
                .map(|r| r.status.clone())
                .unwrap_or_else(|| "rollouts".into());
            if status == "rollouts" {
                let done: BTreeSet<i64> = self
                    .reg
                    .samples(run, round)?
                    .iter()
                    .map(|s| s.task)
                    .collect();
                let todo: Vec<usize> = (0..tasks.len())
                    .filter(|i| !done.contains(&(*i as i64)))
                    .collect();
                obs(&Event::Phase {
                    phase: Phase::Rollouts,
                    total: tasks.len(),
                });
                let mut gen_total = GenStats::default();
                let mut finished = done.len();
                for chunk in todo.chunks(cfg.chunk_tasks.max(1)) {
                    if over(&cfg) {
                        summary.stopped_by_budget = true;
                        break;
                    }
                    let (rows, gs, vs) = self.rollout_chunk(
                        run,
                        &cfg,
                        &targets,
                        &held,
                        &me_adapter,
                        round,
                        &tasks,
                        chunk,
                    )?;
                    self.reg.insert_samples(run, round, &rows)?;
                    gen_total.add(&gs);
                    // Recorded chunk by chunk: a round killed mid-rollouts keeps the time and
                    // tokens of what it had done when it resumes.
                    add_time(&mut timings, "rollout_generate_s", gs.seconds - vs);
                    add_time(&mut timings, "rollout_verify_s", vs);
                    add_count(
                        &mut timings,
                        "rollout_generated_tokens",
                        gs.generated_tokens,
                    );
                    add_count(&mut timings, "rollout_prompt_tokens", gs.prompt_tokens);
                    add_count(&mut timings, "rollout_cached_tokens", gs.cached_tokens);
                    self.reg.update_round(
                        run,
                        round,
                        "rollouts",
                        None,
                        &timings,
                        &serde_json::json!({}),
                    )?;
                    finished += chunk.len();
                    let all = self.reg.samples(run, round)?;
                    let passed = all.iter().filter(|s| s.verdict.pass).count();
                    let msg = format!(
                        "{} samples, {:.1} % verified, {:.0} tok/s",
                        all.len(),
                        100.0 * passed as f64 / all.len().max(1) as f64,
                        gen_total.tokens_per_s()
                    );
                    if !obs(&Event::Progress {
                        done: finished,
                        total: tasks.len(),
                        message: msg,
                    }) {
                        return Err(interrupted());
                    }
                }
                if summary.stopped_by_budget {
                    // Each committed chunk already recorded its time with the round.
                    break;
                }
                self.reg.update_round(
                    run,
                    round,
                    "train",
                    None,
                    &timings,
                    &serde_json::json!({}),
                )?;
            }
            let stats = self.round_stats(run, round, &tasks)?;
            // 4. Train a candidate from the base on everything verified so far.
            let row = self
                .reg
                .rounds(run)?
                .into_iter()
                .find(|r| r.idx == round)
                .expect("started above");
            let mut candidate = row
                .candidate
                .or(self.reg.adapter_for(run, round)?.map(|a| a.version));
            if row.status == "train" || candidate.is_none() {
                if over(&cfg) {
                    summary.stopped_by_budget = true;
                    break;
                }
                let examples = self.training_examples(run, round, &cfg, &held, &targets)?;
                let pairs = if cfg.dpo.on() {
                    self.preference_pairs(run, round, &cfg, &held, &targets)?
                } else {
                    Vec::new()
                };
                if examples.is_empty() {
                    let reasons = vec!["no verified samples to learn from".to_string()];
                    let mut st = stats.clone();
                    st["promoted"] = false.into();
                    st["reasons"] = serde_json::to_value(&reasons).expect("strings serialize");
                    self.reg
                        .update_round(run, round, "done", None, &timings, &st)?;
                    obs(&Event::Note(format!("round {}: {}", round + 1, reasons[0])));
                    summary.rounds.push(RoundSummary {
                        round,
                        candidate: None,
                        promoted: false,
                        reasons,
                        stats: st,
                        timings,
                    });
                    continue;
                }
                obs(&Event::Phase {
                    phase: Phase::Train,
                    total: 0,
                });
                let t0 = Instant::now();
                let replay = self.replay(run, &cfg, guard_text.as_deref(), obs)?;
                add_time(&mut timings, "replay_s", ms(t0));
                let t0 = Instant::now();
                let version = self.reg.next_version()?;
                let name = format!("self-v{version}");
                let mut stop = false;
                let parent_name = match parent {
                    Some(p) => self.reg.adapter(p)?.map(|a| a.name),
                    None => None,
                };
                let base = Base {
                    model: self.model,
                    name: &self.model_name,
                    sha256: self.model_sha256.as_deref(),
                };
                let work = self.paths.work(run, round);
                let job = Candidate {
                    name: &name,
                    parent: parent_name.as_deref(),
                    examples: &examples,
                    replay: &replay,
                    replay_share: cfg.replay.share,
                    replay_top_k: cfg.replay.top_k,
                    settings: &cfg.train,
                    pairs: &pairs,
                    dpo: &cfg.dpo,
                    work: &work,
                };
                let trained = train(&base, &self.adapters.adapters, &job, &mut |p| {
                    let go = obs(&Event::Progress {
                        done: p.step,
                        total: p.total,
                        message: format!("loss {:.4}  {:.0} tok/s", p.loss, p.tokens_per_s),
                    });
                    stop |= !go;
                    go
                });
                let trained = match trained {
                    Err(_) if stop => return Err(interrupted()),
                    r => r?,
                };
                add_time(&mut timings, "train_s", ms(t0));
                let hash = format!(
                    "{:016x}",
                    fnv(examples
                        .iter()
                        .map(|e| format!("{}\u{1}{}\u{2}", e.user, e.answer))
                        .collect::<String>()
                        .as_bytes())
                );
                self.reg.add_adapter(&AdapterRow {
                    version,
                    name,
                    run: run.into(),
                    round,
                    parent,
                    base_model: self.model_name.clone(),
                    data_hash: hash,
                    examples: examples.len() as i64,
                    seed: cfg.train.seed as i64,
                    config: {
                        let mut c = serde_json::to_value(&cfg.train).expect("settings serialize");
                        if trained.sft_stage.is_some() {
                            c["dpo"] = serde_json::to_value(cfg.dpo).expect("settings serialize");
                        }
                        c
                    },
                    status: CANDIDATE.into(),
                    reason: String::new(),
                    created: now(),
                })?;
                timings["train_steps"] = trained.steps.into();
                timings["train_tokens_per_s"] = trained.tokens_per_s.into();
                let mut st = stats.clone();
                st["train_examples"] = examples.len().into();
                st["replay_texts"] = replay.len().into();
                st["train_loss_first"] = trained.losses.first().copied().into();
                st["train_loss_last"] = trained.final_loss.into();
                st["train_losses"] =
                    serde_json::to_value(&trained.losses).expect("floats serialize");
                if trained.sft_stage.is_some() {
                    st["dpo_pairs"] = pairs.len().into();
                    st["dpo_loss_first"] = trained.dpo_losses.first().copied().into();
                    st["dpo_loss_last"] = trained.dpo_losses.last().copied().into();
                }
                self.reg
                    .update_round(run, round, "eval", Some(version), &timings, &st)?;
                candidate = Some(version);
            }
            let version = candidate.expect("a candidate exists past training");
            // What DPO added: the SFT stage scored on the same held-out tasks, then deleted. Done
            // here, after the candidate is registered, so a kill while it is scored loses no
            // training; a stage left by a killed or changed round is scored or removed here too.
            self.score_sft_stage(run, round, version, &cfg, &targets, &mut timings)?;
            // 5. Evaluate the candidate and the current self on the held-out sets.
            obs(&Event::Phase {
                phase: Phase::Eval,
                total: targets.len() + guards.len(),
            });
            let t0 = Instant::now();
            let (mut cur_scores, mut cand_scores) = (Vec::new(), Vec::new());
            for (s, n) in targets
                .iter()
                .map(|s| (s, cfg.eval_n))
                .chain(guards.iter().map(|s| (s, cfg.guard_n)))
            {
                let (a, _) = self.score(me, s, n, cfg.max_active, obs)?;
                let (b, _) = self.score(Subject::Version(version), s, n, cfg.max_active, obs)?;
                cur_scores.push(a);
                cand_scores.push(b);
            }
            add_time(&mut timings, "eval_s", ms(t0));
            let t0 = Instant::now();
            let ppl = match &guard_text {
                Some(text) => {
                    let base = self.guard(Subject::Base, text, cfg.guard_chunks)?;
                    let cand = self.guard(Subject::Version(version), text, cfg.guard_chunks)?;
                    obs(&Event::Guard {
                        subject: format!("adapter:{version}"),
                        ppl: cand,
                    });
                    Some((base, cand))
                }
                None => None,
            };
            add_time(&mut timings, "guard_s", ms(t0));
            // 6. Gate.
            let foci: Vec<Focus> = cfg
                .skills
                .iter()
                .map(|skill| Focus {
                    skill: skill.clone(),
                    levels: tasks
                        .iter()
                        .filter(|t| &t.skill == skill)
                        .map(|t| t.sub.clone())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                })
                .collect();
            let verdict = gate(&cfg.gate, &foci, &cur_scores, &cand_scores, ppl);
            let reason = verdict.reasons.join("; ");
            let still_candidate = self
                .reg
                .adapter(version)?
                .is_some_and(|a| a.status == CANDIDATE);
            if still_candidate {
                if verdict.promote {
                    self.reg.promote(version, &reason)?;
                } else {
                    self.reg.reject(version, &reason)?;
                    // Rejected weights are not kept: the registry row says what they were.
                    let _ = self.adapters.adapters.remove(&format!("self-v{version}"));
                }
            }
            let mut st = self
                .reg
                .rounds(run)?
                .into_iter()
                .find(|r| r.idx == round)
                .map(|r| r.stats)
                .unwrap_or_default();
            if !st.is_object() {
                st = stats.clone();
            }
            st["promoted"] = verdict.promote.into();
            st["reasons"] = serde_json::to_value(&verdict.reasons).expect("strings serialize");
            if let Some((b, c)) = ppl {
                st["ppl_base"] = b.into();
                st["ppl_candidate"] = c.into();
            }
            self.reg
                .update_round(run, round, "done", Some(version), &timings, &st)?;
            obs(&Event::Verdict {
                version,
                promoted: verdict.promote,
                reasons: verdict.reasons.clone(),
            });
            summary.rounds.push(RoundSummary {
                round,
                candidate: Some(version),
                promoted: verdict.promote,
                reasons: verdict.reasons,
                stats: st,
                timings,
            });
        }
        summary.current = self.reg.current()?;
        let status = if summary.stopped_by_budget {
            "stopped"
        } else {
            "done"
        };
        let text = summary
            .rounds
            .iter()
            .map(|r| {
                format!(
                    "round {}: {} ({})",
                    r.round + 1,
                    match (r.candidate, r.promoted) {
                        (Some(v), true) => format!("v{v} promoted"),
                        (Some(v), false) => format!("v{v} rejected"),
                        (None, _) => "no candidate".into(),
                    },
                    r.reasons.join("; ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        self.reg.set_run_status(run, status, &text)?;
        Ok(summary)
    }
}

fn add_time(t: &mut serde_json::Value, key: &str, s: f64) {
    let prev = t[key].as_f64().unwrap_or(0.0);
    t[key] = (prev + s.max(0.0)).into();
}

fn add_count(t: &mut serde_json::Value, key: &str, n: usize) {
    let prev = t[key].as_u64().unwrap_or(0);
    t[key] = (prev + n as u64).into();
}
