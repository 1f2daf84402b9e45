//! A run's report from a registry written the way a round writes it: the numbers carried into
//! the data, the Markdown and the four PNG plots.
use autodidact_improve::registry::{AdapterRow, PROMOTED};
use autodidact_improve::report::{write_report, RunReport};
use autodidact_improve::{LevelScore, Paths, Registry, SkillScore};
use serde_json::json;

fn score(correct: usize) -> SkillScore {
    SkillScore {
        skill: "arithmetic".into(),
        evalset: "abc:v1:n20".into(),
        levels: vec![LevelScore {
            sub: "add-1".into(),
            n: 20,
            correct,
            format_ok: 18,
            degenerate: 1,
            passes: Vec::new(),
        }],
    }
}

#[test]
fn a_round_reports_its_gain_guard_time_and_plots() {
    let home = std::env::temp_dir().join(format!("ad-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let paths = Paths::new(&home);
    let mut reg = Registry::open(&paths.registry()).unwrap();
    let run = "run-1";
    reg.create_run(run, "tiny", &["arithmetic".into()], &json!({"eval_n": 20}))
        .unwrap();
    reg.start_round(run, 0, &json!([]), &[]).unwrap();
    reg.add_adapter(&AdapterRow {
        version: 1,
        name: "self-v1".into(),
        run: run.into(),
        round: 0,
        parent: None,
        base_model: "tiny".into(),
        data_hash: "h".into(),
        examples: 42,
        seed: 1,
        config: json!({}),
        status: PROMOTED.into(),
        reason: "better".into(),
        created: 0,
    })
    .unwrap();
    reg.put_score("base:tiny", &score(2)).unwrap();
    reg.put_score("adapter:1", &score(15)).unwrap();
    let stats = json!({
        "tasks": 10, "samples": 40, "verified": 12, "verified_share": 0.3,
        "degenerate_share": 0.25, "train_examples": 42, "train_losses": [2.0, 1.5, 0.75],
        "levels": [
            {"sub": "sub-1", "level": 1, "plain_n": 4, "plain_pass": 0, "scaffold_n": 12, "scaffold_pass": 3},
            {"sub": "add-1", "level": 0, "plain_n": 4, "plain_pass": 1, "scaffold_n": 20, "scaffold_pass": 8}
        ],
        "promoted": true, "reasons": ["arithmetic: 10.0 % -> 75.0 %"],
        "ppl_base": 10.0, "ppl_candidate": 10.15
    });
    let timings = json!({"rollout_generate_s": 30.0, "train_s": 20.0, "train_tokens_per_s": 99.0});
    reg.update_round(run, 0, "done", Some(1), &timings, &stats)
        .unwrap();
    drop(reg);

    let reg = Registry::open(&paths.registry()).unwrap();
    assert!(RunReport::load(&reg, "no-such-run").unwrap().is_none());
    let r = RunReport::load(&reg, run).unwrap().unwrap();
    let rd = &r.rounds[0];
    assert_eq!((rd.round, rd.verified, rd.train_examples), (1, 12, 42));
    assert_eq!(rd.train_losses, vec![2.0, 1.5, 0.75]);
    assert_eq!(rd.levels[0].sub, "add-1", "levels in order of difficulty");
    assert!((rd.levels[0].pass_rate() - 9.0 / 24.0).abs() < 1e-12);
    let s = &rd.skills[0];
    assert_eq!(s.before.as_ref().unwrap().accuracy, 0.1);
    let after = s.after.as_ref().unwrap();
    assert_eq!(after.accuracy, 0.75);
    assert_eq!(after.format, 0.9);
    assert!(after.low < 0.75 && after.high > 0.75);
    assert!(
        !rd.timings.contains_key("train_tokens_per_s"),
        "a rate is not a phase's time"
    );
    assert_eq!(rd.candidate.as_ref().unwrap().examples, 42);

    let files = write_report(&home, run).unwrap();
    let md = std::fs::read_to_string(&files[0]).unwrap();
    for want in [
        "| 1 | done | 40 | 12 (30.0 %) | 25.0 %",
        "| arithmetic | 10.0 % | 75.0 % |",
        "+1.5 %",
        "train 20 s",
    ] {
        assert!(md.contains(want), "{want:?} missing from\n{md}");
    }
    if autodidact_improve::plot::find_font().is_ok() {
        assert_eq!(files.len(), 5, "{files:?}");
        for f in &files[1..] {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                bytes.starts_with(b"\x89PNG"),
                "{} is not a PNG",
                f.display()
            );
            let name = f.file_name().unwrap().to_string_lossy();
            assert!(
                md.contains(&format!("![{name}]({name})")),
                "{name} not linked"
            );
        }
    } else {
        assert!(md.contains("No plots"), "{md}");
    }
    let _ = std::fs::remove_dir_all(&home);
}
