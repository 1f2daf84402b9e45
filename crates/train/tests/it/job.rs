//! Training as one library call: in-memory examples, validation split, a starting adapter, the
//! held-out scorer, and data files with bad bytes or huge lines.
use autodidact_kernels::GgmlType;
use autodidact_model::gguf::GgufFile;
use autodidact_model::testing::{tiny_model_with, TinySpec};
use autodidact_model::{Arch, LoraAdapter, Message, Model};
use autodidact_train::data::{load_sft, max_line_bytes, DataOptions, OnBadLine, SftExample};
use autodidact_train::{
    score_nll, train, Data, Examples, Flow, OutputGrad, Pack, Replay, Sequence, TrainConfig,
    TrainError, TrainJob, Trainer, Validation,
};

fn model() -> Model {
    let spec = TinySpec {
        window: 4,
        ..TinySpec::small(Arch::Gemma3, GgmlType::Q8_0, 21)
    };
    Model::from_gguf(GgufFile::from_bytes("tiny", &tiny_model_with(&spec)).unwrap()).unwrap()
}

/// Chat examples whose answer is a fixed function of the question.
fn examples(n: usize) -> Vec<SftExample> {
    (0..n)
        .map(|i| {
            SftExample::Chat(vec![
                Message::new("user", &format!("q{}", i % 7)),
                Message::new("assistant", &format!("a{}", (i * 3) % 7)),
            ])
        })
        .collect()
}

fn quick(job: &mut TrainJob) {
    job.config.rank = 4;
    job.config.alpha = 8.0;
    job.config.lr = 1e-2;
    job.config.epochs = 4;
    job.config.seq_len = 64;
    job.config.seed = 3;
}

#[test]
fn the_default_config_is_the_documented_recipe() {
    let c = TrainConfig::default();
    assert_eq!((c.rank, c.alpha, c.epochs, c.batch), (16, 32.0, 1, 4));
    c.check().unwrap();
}

#[test]
fn one_call_trains_on_examples_in_memory_and_scores_held_out_data() {
    let m = model();
    let mut job = TrainJob::new(&m, Examples::Sft(examples(24)));
    quick(&mut job);
    job.validation = Validation::Split(0.25);
    let (data, _) = job.data().unwrap();
    let Data::Sft { train: tr, val } = &data else {
        panic!("SFT data expected")
    };
    assert_eq!((tr.len(), val.len()), (18, 6));
    let before = score_nll(&m, None, val, 4).unwrap();
    let trained = train(&job, &mut |_| Flow::Continue).unwrap();
    assert_eq!((trained.train_examples, trained.val_examples), (18, 6));
    assert!(!trained.interrupted());
    let after = score_nll(&m, Some(&trained.outcome.adapter), val, 4).unwrap();
    assert!(after.nll < before.nll, "{after:?} vs {before:?}");
    assert_eq!(after.tokens, before.tokens);
    assert!((after.perplexity - after.nll.exp()).abs() < 1e-9);
    let v = trained.val_loss.unwrap() as f64;
    assert!((v - after.nll).abs() < 1e-3, "{v} vs {}", after.nll);

    // Starting from the trained adapter continues from its weights, not from scratch.
    let mut more = TrainJob::new(&m, Examples::Sft(examples(24)));
    quick(&mut more);
    more.config.epochs = 1;
    more.config.lr = 1e-9;
    more.init = Some(&trained.outcome.adapter);
    let cont = train(&more, &mut |_| Flow::Continue).unwrap();
    let again = score_nll(&m, Some(&cont.outcome.adapter), val, 4).unwrap();
    assert!(
        (again.nll - after.nll).abs() < 1e-3,
        "{again:?} vs {after:?}"
    );
}

#[test]
fn replayed_text_joins_training_only_with_its_share_of_the_loss() {
    let m = model();
    let mut job = TrainJob::new(&m, Examples::Sft(examples(8)));
    quick(&mut job);
    job.validation = Validation::Split(0.25);
    job.replay = Some(Replay {
        texts: vec!["the cat sat on the mat".into(), "a b c d e f g".into()],
        share: 0.5,
        top_k: 0,
    });
    let (data, reports) = job.data().unwrap();
    assert!(reports.iter().any(|(k, _)| *k == "replay"));
    let Data::Sft { train: tr, val } = &data else {
        panic!("SFT data expected")
    };
    assert_eq!((tr.len(), val.len()), (8, 2));
    assert!(val.iter().all(|s| s.weight == 1.0));
    let (main, replay): (Vec<_>, Vec<_>) = tr.iter().partition(|s| s.weight == 1.0);
    assert_eq!(replay.len(), 2);
    let eos = m
        .tokenizer
        .eos
        .expect("the tiny model has an end-of-text token");
    assert!(replay.iter().all(|s| !s.labels.contains(&Some(eos))));
    let weight = |v: &[&autodidact_train::Sequence]| -> f32 {
        v.iter().map(|s| s.weight * s.n_labels() as f32).sum()
    };
    let ratio = weight(&replay) / weight(&main);
    assert!(
        (ratio - 0.5).abs() < 1e-4,
        "replay carries {ratio} of the examples' weight"
    );
    train(&job, &mut |_| Flow::Continue).unwrap();

    job.replay.as_mut().unwrap().share = f32::NAN;
    assert!(matches!(job.data(), Err(TrainError::Config(_))));
}

#[test]
fn distilled_replay_trains_toward_the_base_distribution() {
    let m = model();
    let mut job = TrainJob::new(&m, Examples::Sft(examples(8)));
    quick(&mut job);
    job.replay = Some(Replay {
        texts: vec!["the cat sat on the mat".into(), "a b c d e f g h".into()],
        share: 1.0,
        top_k: 5,
    });
    let (data, _) = job.data().unwrap();
    let Data::Sft { train: tr, .. } = &data else {
        panic!("SFT data expected")
    };
    let replayed: Vec<&Sequence> = tr.iter().filter(|s| s.soft.is_some()).collect();
    assert_eq!(replayed.len(), 2);
    for s in &replayed {
        let soft = s.soft.as_ref().unwrap();
        assert_eq!(soft.len(), s.n_labels());
        for t in soft {
            assert_eq!(t.ids.len(), 5);
            assert!(t.probs.windows(2).all(|w| w[0] >= w[1]), "{t:?}");
            let mass: f32 = t.probs.iter().sum();
            assert!(mass > 0.0 && mass <= 1.0 + 1e-5, "{mass}");
        }
    }
    // The base itself is at zero divergence from its own distribution on every replayed token.
    let base = Trainer {
        model: &m,
        adapter: None,
        output_t: None,
    };
    let tape = base
        .forward(Pack::new(&replayed), OutputGrad::None, None)
        .unwrap();
    assert!(tape.logp.iter().all(|v| v.abs() < 1e-4), "{:?}", tape.logp);
    // A run with distilled replay trains, and moves the adapter off the base.
    let t = train(&job, &mut |_| Flow::Continue).unwrap();
    let moved = base_divergence(&m, &t.outcome.adapter, &replayed);
    assert!(moved > 0.0 && moved.is_finite(), "{moved}");
}

/// Mean KL from the base over the replayed tokens of `seqs` under `adapter`.
fn base_divergence(m: &Model, adapter: &LoraAdapter, seqs: &[&Sequence]) -> f64 {
    let tr = Trainer {
        model: m,
        adapter: Some(adapter),
        output_t: None,
    };
    let tape = tr.forward(Pack::new(seqs), OutputGrad::None, None).unwrap();
    -tape.logp.iter().map(|&v| v as f64).sum::<f64>() / tape.logp.len() as f64
}

#[test]
fn a_stop_without_a_checkpoint_path_still_returns_the_weights() {
    let m = model();
    let mut job = TrainJob::new(&m, Examples::Sft(examples(16)));
    quick(&mut job);
    let t = train(&job, &mut |p| {
        if p.step == 2 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    })
    .unwrap();
    assert!(t.interrupted());
    assert_eq!(t.outcome.steps, 2);
    assert!(t.outcome.history.iter().all(|p| !p.checkpointed));
}

#[test]
fn bad_examples_in_memory_are_numbered() {
    let m = model();
    let mut ex = examples(3);
    ex.insert(1, SftExample::Chat(vec![Message::new("user", "no reply")]));
    let job = TrainJob::new(&m, Examples::Sft(ex.clone()));
    match job.data() {
        Err(TrainError::Data { line: 2, what, .. }) => {
            assert!(what.contains("assistant"), "{what}")
        }
        other => panic!("{:?}", other.err()),
    }
    let mut skip = TrainJob::new(&m, Examples::Sft(ex));
    skip.on_bad = OnBadLine::Skip;
    let (data, reports) = skip.data().unwrap();
    assert_eq!(data.sizes(), (3, 0));
    assert_eq!(reports[0].1.skipped[0].0, 2);
    // The DPO method with supervised examples says what it needs.
    let mut dpo = TrainJob::new(&m, Examples::Sft(examples(2)));
    dpo.config.method = autodidact_train::Method::Dpo { beta: 0.1 };
    assert!(matches!(dpo.data(), Err(TrainError::Config(_))));
}

#[test]
fn invalid_utf8_and_huge_lines_are_bad_lines_with_numbers() {
    let m = model();
    let dir = tempdir();
    let f = dir.join("d.jsonl");
    let good = b"{\"text\": \"plain\"}\n";
    let mut bytes = Vec::new();
    bytes.extend_from_slice(good);
    bytes.extend_from_slice(b"{\"text\": \"bad \xff byte\"}\n");
    bytes.extend_from_slice(good);
    let opts = DataOptions {
        seq_len: 16,
        on_bad: OnBadLine::Fail,
    };
    let huge = max_line_bytes(opts.seq_len) + 10;
    bytes.extend_from_slice(b"{\"text\": \"");
    bytes.extend(std::iter::repeat_n(b'x', huge));
    bytes.extend_from_slice(b"\"}\n");
    bytes.extend_from_slice(good);
    std::fs::write(&f, &bytes).unwrap();
    match load_sft(&f, &m, &opts) {
        Err(TrainError::Data { line: 2, what, .. }) => assert!(what.contains("UTF-8"), "{what}"),
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
    let lines: Vec<usize> = rep.skipped.iter().map(|s| s.0).collect();
    assert_eq!(lines, vec![2, 4]);
    assert!(
        rep.skipped[1].1.contains("longer than"),
        "{:?}",
        rep.skipped
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("autodidact-train-job-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
