//! The training loop on tiny models: SFT and DPO lower their losses, a run stopped and resumed
//! ends on exactly the weights of an uninterrupted one, and data files fail with line numbers.
use autodidact_kernels::GgmlType;
use autodidact_model::gguf::GgufFile;
use autodidact_model::testing::{tiny_model_with, TinySpec};
use autodidact_model::{Arch, Model, Target};
use autodidact_train::data::{load_preferences, load_sft, DataOptions, OnBadLine, Preference};
use autodidact_train::optim::{AdamW, Decay};
use autodidact_train::{Data, Flow, Method, Progress, Run, Sequence, TrainConfig, TrainError};
use std::path::{Path, PathBuf};

fn model(arch: Arch) -> Model {
    let spec = TinySpec {
        window: 4,
        ..TinySpec::small(arch, GgmlType::Q8_0, 21)
    };
    Model::from_gguf(GgufFile::from_bytes("tiny", &tiny_model_with(&spec)).unwrap()).unwrap()
}

fn config(method: Method) -> TrainConfig {
    TrainConfig {
        method,
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: Target::ALL.to_vec(),
        tokens: Vec::new(),
        lr: 1e-2,
        epochs: 3,
        batch: 4,
        grad_accum: 1,
        seq_len: 64,
        warmup: 2,
        decay: Decay::Cosine,
        adamw: AdamW::default(),
        max_grad_norm: 1.0,
        seed: 7,
        save_every: 2,
        eval_every: 0,
        max_steps: None,
    }
}

/// "a b → c": the completion is a fixed function of the prompt.
fn sft_data() -> Vec<Sequence> {
    (0..16u32)
        .map(|i| {
            let tokens = vec![2, 10 + i, 40 + (i * 7) % 16, 100 + (i * 5) % 16, 1];
            let labels = (0..tokens.len())
                .map(|p| (p >= 2 && p + 1 < tokens.len()).then(|| tokens[p + 1]))
                .collect();
            Sequence::new(tokens, labels)
        })
        .collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("autodidact-train-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn train(
    m: &Model,
    cfg: TrainConfig,
    data: &Data,
    ck: &Path,
    resume: bool,
    stop_at: Option<usize>,
) -> (Vec<Progress>, autodidact_model::LoraAdapter) {
    let run = Run {
        model: m,
        config: cfg,
        checkpoint: Some(ck),
        resume,
        init: None,
        exact_output_grad: false,
    };
    let out = run
        .train(data, &mut |p| {
            if Some(p.step) == stop_at {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })
        .unwrap();
    (out.history, out.adapter)
}

#[test]
fn sft_lowers_the_loss_on_both_architectures() {
    for arch in [Arch::Llama, Arch::Gemma3] {
        let m = model(arch);
        let data = Data::Sft {
            train: sft_data(),
            val: sft_data()[..4].to_vec(),
        };
        let mut cfg = config(Method::Sft);
        cfg.epochs = 12;
        cfg.lr = 3e-2;
        let (h, _) = train(
            &m,
            cfg,
            &data,
            &tmp("sft").join(format!("{arch:?}.ckpt")),
            false,
            None,
        );
        // The tiny models' small output norm caps how peaked their predictions can get, so the
        // bar is a drop of well over a nat, not a loss near zero.
        let first = h[0].loss;
        let tail: f32 = h[h.len() - 4..].iter().map(|p| p.loss).sum::<f32>() / 4.0;
        assert!(tail < first - 1.5, "{arch:?}: loss {first} → {tail}");
        let val = h.last().unwrap().val_loss.unwrap();
        assert!(val < first - 1.5, "{arch:?}: validation loss {val}");
    }
}

#[test]
fn a_stopped_and_resumed_run_ends_on_the_same_weights() {
    let m = model(Arch::Gemma3);
    let data = Data::Sft {
        train: sft_data(),
        val: Vec::new(),
    };
    let mut cfg = config(Method::Sft);
    cfg.dropout = 0.1;
    cfg.grad_accum = 2;
    cfg.batch = 3;
    let dir = tmp("resume");
    let (whole, a) = train(&m, cfg.clone(), &data, &dir.join("a.ckpt"), false, None);
    let (part, _) = train(&m, cfg.clone(), &data, &dir.join("b.ckpt"), false, Some(3));
    assert_eq!(part.len(), 3);
    let (rest, b) = train(&m, cfg.clone(), &data, &dir.join("b.ckpt"), true, None);
    assert_eq!(rest.first().unwrap().step, 4);
    assert_eq!(rest.last().unwrap().step, whole.last().unwrap().step);
    assert!(
        a == b,
        "resumed weights differ from the uninterrupted run's"
    );
    for (x, y) in whole[3..].iter().zip(&rest) {
        assert_eq!(x.loss, y.loss);
    }

    // A checkpoint of other settings is refused.
    let mut other = cfg;
    other.lr = 2e-2;
    let run = Run {
        model: &m,
        config: other,
        checkpoint: Some(&dir.join("b.ckpt")),
        resume: true,
        init: None,
        exact_output_grad: false,
    };
    let err = run
        .train(&data, &mut |_| Flow::Continue)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("other settings"), "{err}");
}

#[test]
fn dpo_prefers_the_chosen_answers() {
    let m = model(Arch::Llama);
    let prefs: Vec<Preference> = (0..8u32)
        .map(|i| Preference {
            prompt: vec![2, 20 + i, 30 + i],
            chosen: vec![50 + i, 60, 1],
            rejected: vec![80 + i, 90, 1],
        })
        .collect();
    let data = Data::Dpo {
        train: prefs.clone(),
        val: prefs[..4].to_vec(),
    };
    let mut cfg = config(Method::Dpo { beta: 0.5 });
    cfg.epochs = 6;
    let (h, _) = train(&m, cfg, &data, &tmp("dpo").join("d.ckpt"), false, None);
    // Before any update the policy is the reference: loss ln 2.
    assert!(
        (h[0].loss - std::f32::consts::LN_2).abs() < 1e-3,
        "{}",
        h[0].loss
    );
    let last = h.last().unwrap();
    assert!(last.loss < 0.3, "{}", last.loss);
    assert_eq!(last.reward_accuracy, Some(1.0));
    assert!(last.val_loss.unwrap() < 0.4);
}

#[test]
fn dpo_after_sft_measures_against_the_sft_adapter() {
    let m = model(Arch::Llama);
    let (_, sft) = train(
        &m,
        config(Method::Sft),
        &Data::Sft {
            train: sft_data(),
            val: Vec::new(),
        },
        &tmp("dpo-init").join("s.ckpt"),
        false,
        None,
    );
    let prefs: Vec<Preference> = (0..8u32)
        .map(|i| Preference {
            prompt: vec![2, 10 + i],
            chosen: vec![40 + (i * 7) % 16, 1],
            rejected: vec![80 + i, 1],
        })
        .collect();
    let run = Run {
        model: &m,
        config: config(Method::Dpo { beta: 0.5 }),
        checkpoint: None,
        resume: false,
        init: Some(&sft),
        exact_output_grad: false,
    };
    let out = run
        .train(
            &Data::Dpo {
                train: prefs,
                val: Vec::new(),
            },
            &mut |_| Flow::Continue,
        )
        .unwrap();
    // The SFT adapter already prefers the chosen answers; measured against itself, the first
    // step is the even odds of a policy equal to its reference, not a head start.
    let first = out.history[0].loss;
    assert!((first - std::f32::consts::LN_2).abs() < 1e-3, "{first}");
}

#[test]
fn data_files_report_bad_lines_and_mask_prompts() {
    let m = model(Arch::Gemma3);
    let dir = tmp("data");
    let f = dir.join("d.jsonl");
    std::fs::write(
        &f,
        "{\"prompt\": \"ab\", \"completion\": \"cd\"}\n\n\
         {\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n\
         not json\n\
         {\"prompt\": 3, \"completion\": \"x\"}\n\
         {\"text\": \"plain\"}\n",
    )
    .unwrap();
    let opts = DataOptions {
        seq_len: 512,
        on_bad: OnBadLine::Fail,
    };
    match load_sft(&f, &m, &opts) {
        Err(TrainError::Data { line, what, .. }) => {
            assert_eq!(line, 4);
            assert!(what.contains("not JSON"), "{what}");
            assert!(!what.contains("--"), "a library names no CLI flag: {what}");
        }
        other => panic!("{:?}", other.map(|r| r.1)),
    }
    let (seqs, rep) = load_sft(
        &f,
        &m,
        &DataOptions {
            on_bad: OnBadLine::Skip,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(seqs.len(), 3);
    assert_eq!(
        rep.skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![4, 5]
    );
    // Prompt/completion: BOS + "ab" untrained; "cd" and EOS trained.
    let s = &seqs[0];
    let trained: Vec<u32> = s.labels.iter().flatten().copied().collect();
    let eos = m.tokenizer.eos.unwrap();
    assert_eq!(trained.last(), Some(&eos));
    assert_eq!(m.tokenizer.decode(&trained, false), "cd");
    // Chat: only the assistant's reply and its end-of-turn are trained.
    let text = m.tokenizer.decode(
        &seqs[1].labels.iter().flatten().copied().collect::<Vec<_>>(),
        true,
    );
    assert_eq!(text, "yo<end_of_turn>");
    // A completion cut away entirely by --seq-len is a bad line too.
    let err = load_sft(
        &f,
        &m,
        &DataOptions {
            seq_len: 3,
            on_bad: OnBadLine::Fail,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("sequence length of 3"), "{err}");

    std::fs::write(&f, "\n\n").unwrap();
    assert!(matches!(
        load_sft(&f, &m, &opts),
        Err(TrainError::NoData { .. })
    ));
    std::fs::write(&f, "{\"prompt\": \"a\", \"chosen\": \"b\"}\n{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n").unwrap();
    let err = load_preferences(&f, &m, &opts).unwrap_err().to_string();
    assert!(err.contains(":1:") && err.contains("rejected"), "{err}");
}

#[test]
fn a_sequence_of_weight_two_counts_as_two_copies() {
    let m = model(Arch::Gemma3);
    let mut cfg = config(Method::Sft);
    cfg.epochs = 1;
    cfg.warmup = 0;
    cfg.batch = 8;
    let base = sft_data()[..3].to_vec();
    let mut weighted = base.clone();
    weighted[0].weight = 2.0;
    let mut copied = base.clone();
    copied.push(base[0].clone());
    let dir = tmp("weight");
    let run = |seqs: Vec<Sequence>, name: &str| {
        let data = Data::Sft {
            train: seqs,
            val: Vec::new(),
        };
        train(&m, cfg.clone(), &data, &dir.join(name), false, None)
    };
    let (hw, aw) = run(weighted, "w.ckpt");
    let (hc, ac) = run(copied, "c.ckpt");
    assert_eq!(hw.len(), 1);
    assert!(
        (hw[0].loss - hc[0].loss).abs() < 1e-5,
        "{} vs {}",
        hw[0].loss,
        hc[0].loss
    );
    let flat = |a: &autodidact_model::LoraAdapter| -> Vec<f32> {
        a.layers
            .iter()
            .flat_map(|l| l.pairs.iter().flatten())
            .flat_map(|p| p.a.iter().chain(&p.b).copied().collect::<Vec<_>>())
            .collect()
    };
    let (fw, fc) = (flat(&aw), flat(&ac));
    let worst = fw
        .iter()
        .zip(&fc)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "weights differ by {worst}");
}
