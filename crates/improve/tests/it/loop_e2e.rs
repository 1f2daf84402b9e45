use autodidact_improve::replay::ReplaySettings;
use autodidact_improve::trainer::{DpoSettings, TrainSettings};
use autodidact_improve::{
    current_self, Changes, Event, GateConfig, ImproveConfig, ImproveError, Improver, Registry,
};
use autodidact_kernels::GgmlType;
use autodidact_model::testing::{tiny_model_with, TinySpec};
use autodidact_model::{Arch, Model};
use std::path::{Path, PathBuf};

/// The loop's runs take turns: a training run whose rayon pool is shared with another test's
/// splits its reductions differently, and a random model's greedy reply (the same few tokens
/// for every held-out prompt) can flip on that.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn temp_home(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ad-improve-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("skills")).unwrap();
    d
}

fn tiny() -> Model {
    // Chat prompts of byte-level tokens run past the default 256 positions; a turn ends with
    // one `<end_of_turn>` token, as in Gemma's own vocabulary.
    let spec = TinySpec {
        ctx: 1024,
        chat_markers: true,
        ..TinySpec::small(Arch::Gemma3, GgmlType::Q8_0, 11)
    };
    let bytes = tiny_model_with(&spec);
    // One file per call: tests run in parallel, and one must not load another's half-written copy.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ad-improve-model-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("tiny.gguf");
    std::fs::write(&p, bytes).unwrap();
    Model::load(&p).unwrap()
}

/// A user skill a random model can pass only by ending its turn: any short reply that ends
/// before the token limit and is no echo, loop or garbled bytes. Training on its own rare
/// successes teaches it to stop — something the held-out set can see. (Before garbled replies
/// were refused, it learned to end after the three bytes of U+FFFD, which its verified replies
/// held wherever it had produced invalid bytes, and the held-out set rightly saw no gain.)
fn write_skill(home: &Path) {
    let mut s = String::from(
        "name = \"stop\"\ndescription = \"say something short and end the turn\"\n\
         prompt = \"Say a word about {w}.\"\nmax_tokens = 8\nscaffold = \"none\"\n\
         [verifier]\nkind = \"regex\"\npattern = \".\"\n",
    );
    for i in 0..64 {
        s.push_str(&format!("[[examples]]\nw = \"thing{i}\"\n"));
    }
    std::fs::write(home.join("skills").join("stop.toml"), s).unwrap();
}

fn config(home: &Path) -> ImproveConfig {
    let guard = home.join("guard.txt");
    std::fs::write(
        &guard,
        "The quick brown fox jumps over the lazy dog. ".repeat(20),
    )
    .unwrap();
    ImproveConfig {
        skills: vec!["stop".into()],
        rounds: 2,
        tasks_per_round: 48,
        samples_per_task: 16,
        temperature: 1.0,
        max_active: 16,
        chunk_tasks: 8,
        cap_per_task: 4,
        probe_tasks: 4,
        eval_n: 0,
        train: TrainSettings {
            rank: 8,
            alpha: 16.0,
            lr: 1e-2,
            epochs: 8,
            batch: 8,
            seq_len: 128,
            seed: 3,
            // The seed below was chosen with every layer adapted.
            targets: autodidact_model::Target::ALL.to_vec(),
            template_tokens: true,
        },
        // A random model's perplexity moves a lot under any training; the guard still runs.
        gate: GateConfig {
            max_ppl_rise: 10.0,
            ..GateConfig::default()
        },
        guard_text: Some(guard),
        guard_chunks: 1,
        replay: ReplaySettings {
            samples: 16,
            tokens: 24,
            share: 0.5,
            top_k: 8,
        },
        // A random model learns this skill or not depending on the samples it happens to draw
        // (round 1 promotes for about half of the seeds 1-9, all or nothing, since its greedy
        // reply is the same few tokens for every held-out prompt). Rollouts derive from the
        // seed alone, so the run is the same on every run of the test; this seed's promotes
        // (also with 1, 3 and 4 threads).
        seed: 2,
        // The default recall guard would only add evaluation time on a random model.
        guard_skills: Vec::new(),
        ..ImproveConfig::default()
    }
}

#[test]
fn the_loop_promotes_rejects_resumes_and_rolls_back() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let home = temp_home("loop");
    write_skill(&home);
    let model = tiny();
    let mut imp = Improver::new(&model, "tiny", None, &home).unwrap();
    // Interrupt after two committed rollout chunks, as Ctrl-C or a kill would.
    let mut chunks = 0;
    let err = imp
        .start(config(&home), &mut |e| {
            if let Event::Progress { .. } = e {
                chunks += 1;
            }
            chunks < 2
        })
        .unwrap_err();
    let ImproveError::Interrupted { run } = err else {
        panic!("expected an interruption, got {err:?}")
    };
    let reg = Registry::open(&home.join("improve/registry.sqlite")).unwrap();
    let before = reg.samples(&run, 0).unwrap();
    assert_eq!(
        before.len(),
        2 * 8 * 16,
        "two chunks of 8 tasks x 16 samples were committed"
    );
    // Their time and tokens were recorded with them, not lost with the interrupted round.
    let t = &reg.rounds(&run).unwrap()[0].timings;
    let tokens_before = t["rollout_generated_tokens"].as_u64().unwrap();
    assert!(
        tokens_before > 0 && t["rollout_generate_s"].as_f64().unwrap() > 0.0,
        "{t}"
    );
    drop(reg);

    let mut events = Vec::new();
    let summary = imp
        .resume(&run, &Changes::default(), &mut |e| {
            events.push(format!("{e:?}"));
            true
        })
        .unwrap();
    let reg = Registry::open(&home.join("improve/registry.sqlite")).unwrap();
    let after = reg.samples(&run, 0).unwrap();
    assert_eq!(
        after.len(),
        48 * 16,
        "every task sampled exactly once per k"
    );
    for s in &before {
        let same = after
            .iter()
            .find(|a| a.task == s.task && a.k == s.k)
            .unwrap();
        assert_eq!(same.text, s.text, "a finished rollout was redone");
    }
    assert_eq!(summary.rounds.len(), 2);
    let t = &reg.rounds(&run).unwrap()[0].timings;
    let generated: u64 = after.iter().map(|s| s.tokens as u64).sum();
    assert_eq!(
        t["rollout_generated_tokens"].as_u64(),
        Some(generated),
        "{t}"
    );
    assert!(generated > tokens_before);
    let r0 = &summary.rounds[0];
    assert!(r0.stats["verified"].as_u64().unwrap() > 0, "{:?}", r0.stats);
    assert!(r0.promoted, "round 1 should promote: {:?}", r0.reasons);
    let v1 = r0.candidate.unwrap();
    // The candidate trained the chat markers' own embedding rows beside its layers.
    let ad = autodidact_model::LoraAdapter::load_gguf(
        &home.join(format!("adapters/self-v{v1}/adapter.gguf")),
        &model.config,
    )
    .unwrap();
    let id = |t: &str| model.tokenizer.token_id(t).unwrap();
    assert_eq!(
        ad.tokens.map(|t| t.ids),
        Some(vec![id("<start_of_turn>"), id("<end_of_turn>")])
    );
    assert_eq!(
        current_self(&home).unwrap().unwrap().version.max(v1),
        current_self(&home).unwrap().unwrap().version
    );
    // The second candidate must beat the promoted first significantly; at or near the
    // ceiling it cannot, and the gate says so.
    let r1 = &summary.rounds[1];
    let adapters = reg.adapters().unwrap();
    assert!(adapters.iter().any(|a| a.status == "promoted"));
    if !r1.promoted {
        assert!(
            r1.reasons
                .iter()
                .any(|r| r.contains("no significant gain") || r.contains("regressed")),
            "{:?}",
            r1.reasons
        );
        let rej = reg.adapter(r1.candidate.unwrap()).unwrap().unwrap();
        assert_eq!(rej.status, "rejected");
        assert!(!rej.reason.is_empty());
    }
    // Lineage: the second candidate's parent is the first promoted version.
    let c2 = reg.adapter(r1.candidate.unwrap()).unwrap().unwrap();
    assert_eq!(c2.parent, Some(v1));
    // A finished run resumes to the same summary without redoing anything.
    let again = imp
        .resume(&run, &Changes::default(), &mut |_| true)
        .unwrap();
    assert_eq!(again.rounds.len(), 2);
    assert_eq!(reg.samples(&run, 0).unwrap().len(), 48 * 16);
    // A run for another skill guards the one the current self was promoted for: its candidate
    // is trained from the base on arithmetic alone and would lose it.
    let mut other = config(&home);
    other.skills = vec!["arithmetic".into()];
    other.rounds = 1;
    other.tasks_per_round = 4;
    other.samples_per_task = 1;
    other.eval_n = 2;
    other.guard_n = 2;
    other.replay = ReplaySettings::off();
    let mut notes = Vec::new();
    let s2 = imp
        .start(other, &mut |e| {
            if let Event::Note(n) = e {
                notes.push(n.clone());
            }
            true
        })
        .unwrap();
    let row = reg.run(&s2.run).unwrap().unwrap();
    assert_eq!(row.config["guard_skills"], serde_json::json!(["stop"]));
    assert!(
        notes.iter().any(|n| n.starts_with("guarding stop")),
        "{notes:?}"
    );
    let cur = current_self(&home).unwrap().unwrap();
    // Rollback returns to the base (or the earlier version) in one step.
    let mut reg = reg;
    let to = reg.rollback(None).unwrap();
    assert_ne!(to, Some(cur.version));
    assert_eq!(current_self(&home).unwrap().map(|c| c.version), to);
    let _ = std::fs::remove_dir_all(&home);
}

/// Resumed with changes, a run goes on with the new settings for the rounds to come and records
/// what changed; what its rounds are compared on stays.
#[test]
fn a_resumed_run_takes_changes_for_the_rounds_to_come() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let home = temp_home("changes");
    write_skill(&home);
    let model = tiny();
    let mut imp = Improver::new(&model, "tiny", None, &home).unwrap();
    let mut cfg = config(&home);
    cfg.rounds = 1;
    cfg.tasks_per_round = 8;
    cfg.samples_per_task = 2;
    cfg.train.epochs = 1;
    let first = imp.start(cfg, &mut |_| true).unwrap();
    assert_eq!(first.rounds.len(), 1);
    let more = Changes {
        rounds: Some(2),
        lr: Some(0.0009765625),
        tasks_per_round: Some(4),
        ..Changes::default()
    };
    let mut said = Vec::new();
    let second = imp
        .resume(&first.run, &more, &mut |e| {
            if let Event::Note(n) = e {
                said.push(n.clone());
            }
            true
        })
        .unwrap();
    assert_eq!(second.rounds.len(), 2);
    assert_eq!(second.rounds[1].stats["tasks"], 4, "{:?}", second.rounds[1]);
    assert!(
        said.iter()
            .any(|n| n.contains("rounds 1 -> 2") && n.contains("lr 0.01 -> 0.0009765625")),
        "{said:?}"
    );
    let reg = Registry::open(&home.join("improve/registry.sqlite")).unwrap();
    let stored = reg.run(&first.run).unwrap().unwrap().config;
    assert_eq!(stored["train"]["lr"], 0.0009765625);
    assert_eq!(stored["eval_n"], 0, "the held-out size is kept");
    let history = reg.history().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.action == "config" && h.note.contains("tasks 8 -> 4")),
        "{history:?}"
    );
    // Nothing to change: the finished run resumes as it was, and no entry is added.
    let again = imp
        .resume(&first.run, &Changes::default(), &mut |_| true)
        .unwrap();
    assert_eq!(again.rounds.len(), 2);
    assert_eq!(reg.history().unwrap().len(), history.len());
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn dpo_follows_sft_on_the_models_own_passed_and_failed_answers() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let home = temp_home("dpo");
    write_skill(&home);
    let model = tiny();
    let mut imp = Improver::new(&model, "tiny", None, &home).unwrap();
    let mut cfg = config(&home);
    cfg.rounds = 1;
    cfg.tasks_per_round = 48;
    cfg.samples_per_task = 16;
    cfg.train.epochs = 1;
    cfg.dpo = DpoSettings {
        beta: 0.1,
        lr: 1e-3,
        ..DpoSettings::default()
    };
    let sum = imp.start(cfg, &mut |_| true).unwrap();
    let st = &sum.rounds[0].stats;
    let pairs = st["dpo_pairs"].as_u64().unwrap();
    assert!(pairs > 0 && pairs <= 48 * 4, "{st}");
    // DPO starts from the SFT adapter and is measured against it: even odds at its first step.
    let first = st["dpo_loss_first"].as_f64().unwrap();
    assert!((first - std::f64::consts::LN_2).abs() < 1e-3, "{first}");
    // The SFT stage was scored on the same held-out tasks, then deleted.
    let stage = &st["sft_stage"]["stop"];
    assert_eq!(stage[0]["sub"], "default", "{st}");
    let store = autodidact_store::Store::at(&home).unwrap();
    assert!(
        store
            .adapters()
            .names()
            .iter()
            .all(|n| !n.ends_with("-sft")),
        "{:?}",
        store.adapters().names()
    );
    let reg = Registry::open(&home.join("improve/registry.sqlite")).unwrap();
    let row = reg
        .adapter(sum.rounds[0].candidate.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(row.config["dpo"]["beta"], 0.1f32 as f64);
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_run_without_replay_refuses_replay_changes() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let home = temp_home("noreplay");
    write_skill(&home);
    let model = tiny();
    let mut imp = Improver::new(&model, "tiny", None, &home).unwrap();
    let mut cfg = config(&home);
    cfg.rounds = 1;
    cfg.tasks_per_round = 4;
    cfg.samples_per_task = 2;
    cfg.replay = ReplaySettings::off();
    let run = imp.start(cfg, &mut |_| true).unwrap().run;
    let share = Changes {
        replay_share: Some(2.0),
        ..Changes::default()
    };
    let err = imp.resume(&run, &share, &mut |_| true).unwrap_err();
    assert!(err.to_string().contains("replays no text"), "{err}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn training_refuses_held_out_tasks() {
    use autodidact_improve::evalset::{EvalSet, HeldOut};
    use autodidact_improve::Skill;
    let home = temp_home("leak");
    let set = EvalSet::open(
        &home.join("evalsets"),
        &Skill::Arithmetic(Default::default()),
    )
    .unwrap();
    let held = HeldOut::new(std::slice::from_ref(&set));
    let err = held.check(&set.tasks[3]).unwrap_err();
    assert!(matches!(err, ImproveError::Leak { .. }), "{err}");
    let _ = std::fs::remove_dir_all(&home);
}

/// A skill with no answers to show (no generator, no example answers, an empty pool) is
/// sampled zero-shot on a raw question-and-answer page, one sample per task in plain chat;
/// a skill whose file says `scaffold = "none"` is only ever asked in plain chat.
#[test]
fn a_skill_with_nothing_to_show_is_bootstrapped_zero_shot() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let home = temp_home("zeroshot");
    write_skill(&home);
    let file = home.join("skills").join("stop.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let model = tiny();
    for (scaffold, want) in [("none", "none"), ("examples", "zero-shot")] {
        let skill = text.replace("scaffold = \"none\"", &format!("scaffold = \"{scaffold}\""));
        std::fs::write(&file, skill).unwrap();
        let mut imp = Improver::new(&model, "tiny", None, &home).unwrap();
        let mut cfg = config(&home);
        cfg.rounds = 1;
        cfg.tasks_per_round = 4;
        cfg.samples_per_task = 3;
        cfg.replay = ReplaySettings::off();
        let run = imp.start(cfg, &mut |_| true).unwrap().run;
        let reg = Registry::open(&home.join("improve/registry.sqlite")).unwrap();
        let samples = reg.samples(&run, 0).unwrap();
        assert_eq!(samples.len(), 12);
        for s in &samples {
            let expect = if s.k == 0 { "none" } else { want };
            assert_eq!(
                s.scaffold, expect,
                "scaffold = {scaffold:?}, sample k = {}",
                s.k
            );
        }
    }
    let _ = std::fs::remove_dir_all(&home);
}
