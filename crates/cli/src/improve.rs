//! `autodidact skills|eval|improve|runs|rollback`: the self-improvement loop's commands, with
//! progress bars and plain summaries over the `autodidact-improve` library.
use anyhow::{bail, Context, Result};
use autodidact_improve::eval::{evalset_id, evaluate};
use autodidact_improve::evalset::EvalSet;
use autodidact_improve::replay::ReplaySettings;
use autodidact_improve::report::{write_report, RunReport};
use autodidact_improve::skill::{load_all, select};
use autodidact_improve::trainer::{DpoSettings, TrainSettings};
use autodidact_improve::{
    current_self, Changes, Event, ImproveConfig, Improver, Paths, Phase, Registry, Skill,
    SkillScore,
};
use autodidact_model::Model;
use autodidact_store::{ResolvedModel, Store};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

#[derive(Subcommand)]
pub enum SkillsCmd {
    /// Built-in skills and those in $AUTODIDACT_HOME/skills.
    List,
    /// A skill's levels, verifier and two sample tasks.
    Show { skill: String },
}

#[derive(Args)]
pub struct EvalArgs {
    #[arg(short, long, default_value = autodidact_store::DEFAULT_MODEL)]
    pub model: String,
    /// A stored adapter to score (default: the current self).
    #[arg(long, conflicts_with = "base")]
    pub adapter: Option<String>,
    /// Score the raw base model.
    #[arg(long)]
    pub base: bool,
    /// Skills to score (default: every built-in skill); repeatable.
    #[arg(long = "skill")]
    pub skills: Vec<String>,
    /// Held-out tasks per level (0: the whole set).
    #[arg(long, default_value_t = 50)]
    pub n: usize,
    /// Sequences generated at once.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// One JSON object with an `accuracy` per skill.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ImproveArgs {
    #[arg(short, long, default_value = autodidact_store::DEFAULT_MODEL)]
    pub model: String,
    /// Skills to improve; repeatable (default arithmetic).
    #[arg(long = "skill")]
    pub skills: Vec<String>,
    /// Other skills scored so that none regresses; repeatable. `recall` (answering from what the
    /// conversation says) is always guarded unless it is practised.
    #[arg(long = "guard-skill")]
    pub guard_skills: Vec<String>,
    /// Rounds in all (default 3; on --resume, more rounds continue a finished run).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Wall-clock limit, e.g. 90m, 2h, 1h30m, 45s.
    #[arg(long)]
    pub budget: Option<String>,
    /// Continue an interrupted or stopped run. The settings marked "changeable" may be given
    /// anew: they apply to the rounds still to come, and the change is recorded.
    #[arg(long)]
    pub resume: Option<String>,
    /// Tasks per round (default 600; changeable).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Levels of each skill practised at once: the lowest ones the current self has not
    /// mastered (default 3; changeable).
    #[arg(long)]
    pub levels: Option<usize>,
    /// Samples per task, one in plain chat and the rest under the few-shot scaffold (default 4;
    /// changeable).
    #[arg(short = 'k', long)]
    pub samples: Option<usize>,
    /// Demonstrations in the scaffold (default 4; changeable).
    #[arg(long)]
    pub shots: Option<usize>,
    /// Sampling temperature of rollouts (default 0.8; changeable).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Held-out tasks per level for the target skills (0: all; default 50).
    #[arg(long)]
    pub eval_n: Option<usize>,
    /// Held-out tasks per level for guard skills (default 10).
    #[arg(long)]
    pub guard_n: Option<usize>,
    /// Sequences generated at once (default 32; changeable).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Training epochs (default 3; changeable).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// LoRA rank, alpha twice the rank (default 16; changeable).
    #[arg(long)]
    pub rank: Option<usize>,
    /// Learning rate (default 2e-4; changeable).
    #[arg(long)]
    pub lr: Option<f32>,
    /// Comma-separated layers the adapter changes: q,k,v,o,gate,up,down (default gate,up,down;
    /// changeable).
    #[arg(long)]
    pub targets: Option<String>,
    /// Whether the chat template's marker tokens (Gemma: <start_of_turn>, <end_of_turn>) also
    /// train their own embedding rows, which a base model never learned (default true;
    /// changeable).
    #[arg(long, value_name = "BOOL")]
    pub template_tokens: Option<bool>,
    /// Text whose perplexity guards general language (default: reference/texts/gpl-3.txt
    /// found above the working directory or the executable).
    #[arg(long)]
    pub guard_text: Option<PathBuf>,
    /// Skip the perplexity guard.
    #[arg(long)]
    pub no_guard: bool,
    /// Chunks of 512 tokens of the guard text scored, a paired comparison with the base
    /// (default 8).
    #[arg(long)]
    pub guard_chunks: Option<usize>,
    /// Seed of the run's tasks, samples and replay (default: a fresh one, printed and recorded).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Samples of the base's own free text trained beside the verified answers, so general
    /// language stays where it was (0: none; default 512).
    #[arg(long)]
    pub replay: Option<usize>,
    /// The replayed text's total loss weight relative to the verified answers' (default 4;
    /// changeable).
    #[arg(long)]
    pub replay_share: Option<f32>,
    /// Train replayed text toward the base's distribution over its K likeliest tokens at each
    /// position (distillation); 0 trains on the sampled tokens themselves (default 32;
    /// changeable).
    #[arg(long, value_name = "K")]
    pub replay_top_k: Option<usize>,
    /// After SFT, train DPO with this beta on pairs of the model's own passed and failed
    /// answers to one task (0: no DPO, the default; changeable).
    #[arg(long, value_name = "BETA")]
    pub dpo_beta: Option<f32>,
    /// DPO's learning rate (default 2e-5; changeable).
    #[arg(long)]
    pub dpo_lr: Option<f32>,
}

#[derive(Subcommand)]
pub enum RunsCmd {
    List,
    Show {
        run: String,
    },
    /// Write a run's report: Markdown with PNG plots (accuracy per round, pass rate by
    /// difficulty, data volume, training loss).
    Report {
        run: String,
        /// Where to write it (default: the run's folder in the store).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct RollbackArgs {
    /// A promoted version to return to (0: the base model); default the one before.
    #[arg(long)]
    pub to: Option<i64>,
}

fn skills_of(home: &Path) -> Result<Vec<Skill>> {
    Ok(load_all(&Paths::new(home).skills())?)
}

pub fn skills(store: &Store, cmd: SkillsCmd) -> Result<()> {
    let home = store.home();
    let all = skills_of(home)?;
    match cmd {
        SkillsCmd::List => {
            for s in &all {
                println!(
                    "{}\t{} levels\t{}",
                    s.name(),
                    s.levels().len(),
                    s.description()
                );
            }
        }
        SkillsCmd::Show { skill } => {
            let s = select(&all, &[skill])?.remove(0);
            println!("{}: {}", s.name(), s.description());
            println!("levels (easiest first): {}", s.levels().join(", "));
            let mut rng = autodidact_improve::rng::Rng::new(7);
            let held = EvalSet::open(&Paths::new(home).evalsets(), &s)?;
            println!(
                "held-out set: {} tasks, {}",
                held.tasks.len(),
                held.path.display()
            );
            let keys = autodidact_improve::evalset::HeldOut::new(&[held]);
            for level in [0, s.levels().len() - 1] {
                let t = keys.train_task(&s, level, &mut rng)?;
                println!("example ({}): {}", t.sub, t.prompt);
            }
        }
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

fn print_scores(scores: &[SkillScore]) {
    println!("| skill | level | n | accuracy % | 95 % interval | format ok % | degenerate % |");
    println!("| ----- | ----- | -: | ---------: | ------------- | ----------: | -----------: |");
    for s in scores {
        for l in s.levels.iter().chain(std::iter::once(&s.total())) {
            let (lo, hi) = l.interval();
            println!(
                "| {} | {} | {} | {} | {}–{} | {} | {} |",
                s.skill,
                l.sub,
                l.n,
                pct(l.accuracy()),
                pct(lo),
                pct(hi),
                pct(l.format_ok as f64 / l.n.max(1) as f64),
                pct(l.degenerate as f64 / l.n.max(1) as f64)
            );
        }
    }
}

pub fn eval(store: &Store, args: EvalArgs, m: &Model, base: &ResolvedModel) -> Result<()> {
    let home = store.home();
    let all = skills_of(home)?;
    let chosen = select(&all, &args.skills)?;
    let (adapter, label) = if args.base {
        (None, "base".to_string())
    } else if let Some(a) = &args.adapter {
        (
            Some(crate::adapters::resolve(store, a, m, base)?),
            a.clone(),
        )
    } else if let Some(c) = current_self(home)? {
        eprintln!(
            "scoring the current self {} (use --base for the raw model)",
            c.adapter
        );
        (
            Some(crate::adapters::resolve(store, &c.adapter, m, base)?),
            c.adapter,
        )
    } else {
        (None, "base".to_string())
    };
    let mut scores = Vec::new();
    for s in &chosen {
        let set = EvalSet::open(&Paths::new(home).evalsets(), s)?;
        let (score, _, stats) = evaluate(m, adapter.clone(), s, &set, args.n, args.batch)?;
        eprintln!(
            "{}: {} tasks in {:.1} s ({:.0} generated tok/s)",
            s.name(),
            score.total().n,
            stats.seconds,
            stats.tokens_per_s()
        );
        scores.push(score);
    }
    if args.json {
        let mut acc = serde_json::Map::new();
        let mut detail = serde_json::Map::new();
        for s in &scores {
            let t = s.total();
            acc.insert(s.skill.clone(), t.accuracy().into());
            let levels: serde_json::Map<String, serde_json::Value> = s
                .levels
                .iter()
                .map(|l| {
                    (
                        l.sub.clone(),
                        serde_json::json!({"n": l.n, "accuracy": l.accuracy(), "interval": l.interval(),
                            "format_ok": l.format_ok as f64 / l.n.max(1) as f64,
                            "degenerate": l.degenerate as f64 / l.n.max(1) as f64}),
                    )
                })
                .collect();
            detail.insert(
                s.skill.clone(),
                serde_json::json!({"n": t.n, "accuracy": t.accuracy(), "interval": t.interval(),
                    "format_ok": t.format_ok as f64 / t.n.max(1) as f64,
                    "degenerate": t.degenerate as f64 / t.n.max(1) as f64, "evalset": s.evalset, "levels": levels}),
            );
        }
        println!(
            "{}",
            serde_json::json!({"model": args.model, "adapter": label, "accuracy": acc, "skills": detail})
        );
    } else {
        println!("model {} with {label}", args.model);
        print_scores(&scores);
    }
    Ok(())
}

/// `90m`, `2h`, `1h30m`, `45s`, or plain seconds.
pub fn parse_budget(s: &str) -> Result<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => bail!("--budget {s:?}: use a duration such as 90m, 2h, 1h30m or 45s"),
        };
        let v: f64 = num
            .parse()
            .with_context(|| format!("--budget {s:?}: a number must come before {c:?}"))?;
        total += v * unit;
        num.clear();
    }
    if !num.is_empty() {
        total += num
            .parse::<f64>()
            .with_context(|| format!("--budget {s:?}: not a duration"))?;
    }
    if total <= 0.0 {
        bail!("--budget must be longer than zero");
    }
    Ok(total)
}

/// `reference/texts/gpl-3.txt` above the working directory or the executable.
fn find_guard_text() -> Option<PathBuf> {
    let rel = Path::new("reference").join("texts").join("gpl-3.txt");
    let mut starts = Vec::new();
    if let Ok(d) = std::env::current_dir() {
        starts.push(d);
    }
    if let Ok(e) = std::env::current_exe() {
        starts.push(e);
    }
    for s in starts {
        for d in s.ancestors() {
            let p = d.join(&rel);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

struct Bars {
    bar: Option<ProgressBar>,
    phase: &'static str,
}

impl Bars {
    fn event(&mut self, e: &Event) {
        match e {
            Event::Round { round, of } => eprintln!("round {}/{of}", round + 1),
            Event::Phase { phase, total } => {
                if let Some(b) = self.bar.take() {
                    b.finish();
                }
                self.phase = match phase {
                    Phase::Probe => "probe",
                    Phase::Rollouts => "rollouts",
                    Phase::Train => "train",
                    Phase::Eval => "eval",
                    Phase::Gate => "gate",
                };
                let b = ProgressBar::new(*total as u64);
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>9} {bar:30} {pos}/{len}  {msg}  ETA {eta}",
                    )
                    .expect("the template is valid"),
                );
                b.set_prefix(self.phase);
                self.bar = Some(b);
            }
            Event::Progress {
                done,
                total,
                message,
            } => {
                if let Some(b) = &self.bar {
                    b.set_length(*total as u64);
                    b.set_position(*done as u64);
                    b.set_message(message.clone());
                    if b.is_hidden() && (*done == *total || done % 10 == 0) {
                        eprintln!("{} {done}/{total}: {message}", self.phase);
                    }
                }
            }
            Event::Scored { subject, score } => {
                let t = score.total();
                let (lo, hi) = t.interval();
                let msg = format!(
                    "held-out {} of {subject}: {} % [{}, {}], format {} %",
                    score.skill,
                    pct(t.accuracy()),
                    pct(lo),
                    pct(hi),
                    pct(t.format_ok as f64 / t.n.max(1) as f64)
                );
                match &self.bar {
                    Some(b) if !b.is_hidden() => b.println(msg),
                    _ => eprintln!("{msg}"),
                }
            }
            Event::Guard { subject, ppl } => eprintln!("guard perplexity of {subject}: {ppl:.3}"),
            Event::Verdict {
                version,
                promoted,
                reasons,
            } => {
                if let Some(b) = self.bar.take() {
                    b.finish();
                }
                eprintln!(
                    "v{version} {}: {}",
                    if *promoted { "PROMOTED" } else { "rejected" },
                    reasons.join("; ")
                );
            }
            Event::Note(n) => eprintln!("{n}"),
        }
    }
}

pub fn improve(store: &Store, args: ImproveArgs, m: &Model, base: &ResolvedModel) -> Result<()> {
    let home = store.home();
    crate::train::keep_freed_memory();
    let budget = args.budget.as_deref().map(parse_budget).transpose()?;
    let sha = store.model_sha256(base).ok();
    let mut imp = Improver::new(m, &base.name, sha, home)?;
    let interrupted = crate::ctrl_c_flag()?;
    interrupted.store(false, Ordering::SeqCst);
    let mut bars = Bars {
        bar: None,
        phase: "",
    };
    let mut obs = |e: &Event| {
        bars.event(e);
        !interrupted.load(Ordering::SeqCst)
    };
    let changes = Changes {
        budget_s: budget,
        rounds: args.rounds,
        tasks_per_round: args.tasks,
        max_levels: args.levels,
        samples_per_task: args.samples,
        shots: args.shots,
        temperature: args.temperature,
        max_active: args.batch,
        epochs: args.epochs,
        rank: args.rank,
        lr: args.lr,
        targets: args.targets.as_deref().map(train_targets).transpose()?,
        template_tokens: args.template_tokens,
        replay_share: args.replay_share,
        replay_top_k: args.replay_top_k,
        dpo_beta: args.dpo_beta,
        dpo_lr: args.dpo_lr,
    };
    let summary = match &args.resume {
        Some(run) => {
            let fixed = [
                ("--skill", !args.skills.is_empty()),
                ("--guard-skill", !args.guard_skills.is_empty()),
                ("--eval-n", args.eval_n.is_some()),
                ("--guard-n", args.guard_n.is_some()),
                ("--guard-text", args.guard_text.is_some()),
                ("--no-guard", args.no_guard),
                ("--guard-chunks", args.guard_chunks.is_some()),
                ("--seed", args.seed.is_some()),
                ("--replay", args.replay.is_some()),
            ];
            if let Some((flag, _)) = fixed.iter().find(|(_, given)| *given) {
                bail!(
                    "{flag} cannot change when a run resumes: its rounds are compared on it (start a new run instead)"
                );
            }
            imp.resume(run, &changes, &mut obs)?
        }
        None => {
            let guard_text = if args.no_guard {
                None
            } else {
                Some(match args.guard_text.clone().or_else(find_guard_text) {
                    Some(p) => p,
                    None => bail!(
                        "no guard text found: pass --guard-text PATH (the repository's reference/texts/gpl-3.txt) or --no-guard"
                    ),
                })
            };
            // The settings a resume could change are checked the same way for a new run.
            if let Err(e) = changes.check(0) {
                bail!("{e}");
            }
            let d = ImproveConfig::default();
            let rank = args.rank.unwrap_or(d.train.rank);
            let cfg = ImproveConfig {
                skills: if args.skills.is_empty() {
                    d.skills.clone()
                } else {
                    args.skills.clone()
                },
                // The default guards always, and those asked for besides.
                guard_skills: {
                    let mut g = d.guard_skills.clone();
                    for s in &args.guard_skills {
                        if !g.contains(s) {
                            g.push(s.clone());
                        }
                    }
                    g
                },
                rounds: args.rounds.unwrap_or(d.rounds),
                tasks_per_round: args.tasks.unwrap_or(d.tasks_per_round),
                max_levels: args.levels.unwrap_or(d.max_levels),
                samples_per_task: args.samples.unwrap_or(d.samples_per_task),
                shots: args.shots.unwrap_or(d.shots),
                temperature: args.temperature.unwrap_or(d.temperature),
                max_active: args.batch.unwrap_or(d.max_active),
                eval_n: args.eval_n.unwrap_or(d.eval_n),
                guard_n: args.guard_n.unwrap_or(d.guard_n),
                train: TrainSettings {
                    rank,
                    alpha: d.train.alpha / d.train.rank as f32 * rank as f32,
                    lr: args.lr.unwrap_or(d.train.lr),
                    epochs: args.epochs.unwrap_or(d.train.epochs),
                    targets: match &args.targets {
                        Some(t) => train_targets(t)?,
                        None => d.train.targets.clone(),
                    },
                    template_tokens: args.template_tokens.unwrap_or(d.train.template_tokens),
                    ..d.train.clone()
                },
                replay: ReplaySettings {
                    samples: args.replay.unwrap_or(d.replay.samples),
                    share: args.replay_share.unwrap_or(d.replay.share),
                    top_k: args.replay_top_k.unwrap_or(d.replay.top_k),
                    ..d.replay.clone()
                },
                dpo: DpoSettings {
                    beta: args.dpo_beta.unwrap_or(d.dpo.beta),
                    lr: args.dpo_lr.unwrap_or(d.dpo.lr),
                    ..d.dpo
                },
                guard_text,
                guard_chunks: args.guard_chunks.unwrap_or(d.guard_chunks),
                seed: args.seed.unwrap_or_else(fresh_seed),
                budget_s: budget,
                ..d
            };
            eprintln!(
                "seed {} (--seed {} repeats this run's tasks and samples)",
                cfg.seed, cfg.seed
            );
            imp.start(cfg, &mut obs)?
        }
    };
    if let Some(b) = bars.bar.take() {
        b.finish();
    }
    println!("run {}", summary.run);
    for r in &summary.rounds {
        let st = &r.stats;
        println!(
            "round {}: {} tasks, {} samples, {} % verified, {} % degenerate, {} training examples -> {}",
            r.round + 1,
            st["tasks"],
            st["samples"],
            pct(st["verified_share"].as_f64().unwrap_or(0.0)),
            pct(st["degenerate_share"].as_f64().unwrap_or(0.0)),
            st["train_examples"],
            match (r.candidate, r.promoted) {
                (Some(v), true) => format!("v{v} promoted"),
                (Some(v), false) => format!("v{v} rejected"),
                (None, _) => "no candidate".into(),
            }
        );
        if let Some(pairs) = st["dpo_pairs"].as_u64() {
            let stage: Vec<String> = autodidact_improve::report::stage_accuracy(&st["sft_stage"])
                .iter()
                .map(|(skill, a)| format!("{skill} {} %", pct(*a)))
                .collect();
            println!(
                "  DPO after SFT on {pairs} pairs; the SFT stage alone: {}",
                stage.join(", ")
            );
        }
        for why in &r.reasons {
            println!("  {why}");
        }
    }
    if summary.stopped_by_budget {
        println!(
            "stopped by --budget; continue with `autodidact improve --resume {}`",
            summary.run
        );
    }
    match summary.current {
        Some(v) => println!(
            "current self: self-v{v} (run and serve use it; `autodidact rollback` returns)"
        ),
        None => println!("current self: the base model"),
    }
    let files = write_report(store.home(), &summary.run)?;
    if let Some(md) = files.first() {
        println!("report: {}", md.display());
    }
    Ok(())
}

/// A seed for a run started without `--seed`: a second run on the same self then practises
/// other tasks and samples instead of repeating the first. The run records it.
fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ (u64::from(std::process::id()) << 32)) % 1_000_000_007
}

fn registry(home: &Path) -> Result<Registry> {
    Ok(Registry::open(&Paths::new(home).registry())?)
}

pub fn runs(store: &Store, cmd: RunsCmd) -> Result<()> {
    let home = store.home();
    let reg = registry(home)?;
    match cmd {
        RunsCmd::List => {
            let runs = reg.runs()?;
            if runs.is_empty() {
                println!("no runs yet: try `autodidact improve --skill arithmetic`");
            }
            for r in runs {
                let rounds = reg.rounds(&r.id)?;
                println!(
                    "{}\t{}\t{}\t{} rounds\t{}",
                    r.id,
                    r.model,
                    r.skills.join(","),
                    rounds.len(),
                    r.status
                );
            }
        }
        RunsCmd::Report { run, out } => {
            let files = match out {
                Some(dir) => RunReport::load(&reg, &run)?
                    .with_context(|| format!("no run {run:?} (see `autodidact runs list`)"))?
                    .write(&dir)?,
                None => write_report(home, &run)?,
            };
            for f in files {
                println!("{}", f.display());
            }
        }
        RunsCmd::Show { run } => {
            let r = reg
                .run(&run)?
                .with_context(|| format!("no run {run:?} (see `autodidact runs list`)"))?;
            println!(
                "run {} on {} ({}), skills {}",
                r.id,
                r.model,
                r.status,
                r.skills.join(", ")
            );
            let eval_n = r.config["eval_n"].as_u64().unwrap_or(50) as usize;
            let all = skills_of(home)?;
            for rd in reg.rounds(&run)? {
                let st = &rd.stats;
                println!(
                    "\nround {} [{}]: {} tasks, {} samples, {} % verified, {} % degenerate, {} training examples",
                    rd.idx + 1,
                    rd.status,
                    st["tasks"],
                    st["samples"],
                    pct(st["verified_share"].as_f64().unwrap_or(0.0)),
                    pct(st["degenerate_share"].as_f64().unwrap_or(0.0)),
                    st["train_examples"]
                );
                if let Some(levels) = rd.curriculum.as_array() {
                    let practised: Vec<String> = levels
                        .iter()
                        .filter(|l| l["practise"].as_bool() == Some(true))
                        .map(|l| {
                            format!(
                                "{} (probe {} %)",
                                l["sub"].as_str().unwrap_or("?"),
                                pct(l["probe_pass_rate"].as_f64().unwrap_or(0.0))
                            )
                        })
                        .collect();
                    println!("  practised: {}", practised.join(", "));
                    let out: Vec<&str> = levels
                        .iter()
                        .filter(|l| l["out_of_reach"].as_bool() == Some(true))
                        .filter_map(|l| l["sub"].as_str())
                        .collect();
                    if !out.is_empty() {
                        println!(
                            "  out of reach (the current self's attempts almost never passed): {}",
                            out.join(", ")
                        );
                    }
                }
                println!("  timings: {}", rd.timings);
                if let Some(v) = rd.candidate {
                    if let Some(a) = reg.adapter(v)? {
                        println!(
                            "  candidate v{} ({}, parent {:?}): {}",
                            v, a.status, a.parent, a.reason
                        );
                    }
                    let mut scores = Vec::new();
                    for name in &r.skills {
                        if let Ok(s) = select(&all, std::slice::from_ref(name)) {
                            let set = EvalSet::open(&Paths::new(home).evalsets(), &s[0])?;
                            if let Some(sc) =
                                reg.score(&format!("adapter:{v}"), name, &evalset_id(&set, eval_n))?
                            {
                                scores.push(sc);
                            }
                        }
                    }
                    if !scores.is_empty() {
                        print_scores(&scores);
                    }
                }
            }
        }
    }
    Ok(())
}

pub fn rollback(store: &Store, args: RollbackArgs) -> Result<()> {
    let mut reg = registry(store.home())?;
    match reg.rollback(args.to)? {
        Some(v) => {
            let a = reg
                .adapter(v)?
                .context("the registry lost the version just restored")?;
            println!("current self: {} (version {v})", a.name);
        }
        None => println!("current self: the base model"),
    }
    Ok(())
}

/// `--targets`: at least one layer, each named as `autodidact train --targets` names them.
fn train_targets(s: &str) -> Result<Vec<autodidact_model::Target>> {
    let t = crate::train::targets(s)?;
    if t.is_empty() {
        bail!("--targets must name at least one of q,k,v,o,gate,up,down");
    }
    Ok(t)
}
