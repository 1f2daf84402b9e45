//! Loss spikes of a run's SFT data, with and without the chat markers' own embedding rows.
//!
//! Rebuilds a round's training set as `improve` does (every verified answer of the run up to the
//! round, re-verified under today's rules, deduplicated, at most 4 per problem, plus the run's
//! replayed text distilled from the base), trains the default settings for a few steps from the
//! base, and prints each step's loss and gradient norm, then how many steps exceeded a loss of 5.
//!
//! `cargo run --release -p autodidact-improve --example loss_spikes -- RUN ROUND STEPS rows|norows`
//! (ROUND is the registry's 0-based index; the default model from the store.)
use autodidact_improve::skill::{load_all, select};
use autodidact_improve::trainer::TrainSettings;
use autodidact_improve::Registry;
use autodidact_model::testing::real_model_path;
use autodidact_model::{Message, Model};
use autodidact_train::data::{OnBadLine, SftExample};
use autodidact_train::{Examples, Flow, Progress, Replay, TrainConfig, TrainJob};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [run, round, steps, rows] = args.as_slice() else {
        eprintln!("usage: loss_spikes RUN ROUND STEPS rows|norows");
        std::process::exit(2);
    };
    let (round, steps): (i64, usize) = (round.parse().unwrap(), steps.parse().unwrap());
    let home = std::env::var_os("AUTODIDACT_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".autodidact"));
    let Some(path) = real_model_path() else {
        std::process::exit(1);
    };
    let m = Model::load(&path).unwrap();
    let reg = Registry::open(&home.join("improve/registry.sqlite")).unwrap();
    let skills = select(
        &load_all(&home.join("skills")).unwrap(),
        &["arithmetic".to_string()],
    )
    .unwrap();
    let (mut seen, mut per_key) = (BTreeSet::new(), BTreeMap::<(String, String), usize>::new());
    let mut sft = Vec::new();
    for (t, text) in reg.verified(run, round).unwrap() {
        let answer = text.trim().to_string();
        let Some(skill) = skills.iter().find(|s| s.name() == t.skill) else {
            continue;
        };
        if answer.is_empty()
            || !skill.verify(&t, &answer, false).pass
            || !seen.insert((t.prompt.clone(), answer.clone()))
        {
            continue;
        }
        let c = per_key.entry((t.skill.clone(), t.key.clone())).or_default();
        if *c >= 4 {
            continue;
        }
        *c += 1;
        sft.push(SftExample::Chat(vec![
            Message::new("user", &t.prompt),
            Message::new("assistant", &answer),
        ]));
    }
    eprintln!("{} examples", sft.len());
    let mut job = TrainJob::new(&m, Examples::Sft(sft));
    let config = TrainSettings::default().config(&m);
    job.config = TrainConfig {
        tokens: if rows == "rows" {
            config.tokens.clone()
        } else {
            Vec::new()
        },
        max_steps: Some(steps),
        ..config
    };
    job.on_bad = OnBadLine::Skip;
    job.replay = Some(Replay {
        texts: reg.replay(run).unwrap(),
        share: 4.0,
        top_k: 32,
    });
    let mut over = 0;
    autodidact_train::train(&job, &mut |p: &Progress| {
        println!(
            "step {} loss {:.3} grad-norm {:.3}",
            p.step, p.loss, p.grad_norm
        );
        over += (p.loss > 5.0) as usize;
        Flow::Continue
    })
    .unwrap();
    println!("{over} of {steps} steps with loss above 5");
}
