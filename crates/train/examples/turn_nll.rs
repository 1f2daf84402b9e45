//! Per-token negative log-likelihood of one assistant turn under the base model (no adapter):
//! what each trained token of a chat SFT example costs before training.
//!
//! `cargo run --release -p autodidact-train --example turn_nll -- "What is 3 plus 0?" "3"`
//! (the default model from the store, or `AUTODIDACT_TEST_MODEL`).
use autodidact_model::testing::real_model_path;
use autodidact_model::{Message, Model};
use autodidact_train::data::{encode_sft, DataOptions, OnBadLine, SftExample};
use autodidact_train::score_nll;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user, answer] = args.as_slice() else {
        eprintln!("usage: turn_nll USER_MESSAGE ASSISTANT_REPLY");
        std::process::exit(2);
    };
    let Some(path) = real_model_path() else {
        std::process::exit(1);
    };
    let m = Model::load(&path).expect("loading the model");
    let ex = [SftExample::Chat(vec![
        Message::new("user", user),
        Message::new("assistant", answer),
    ])];
    let opts = DataOptions {
        seq_len: 512,
        on_bad: OnBadLine::Fail,
    };
    let (seqs, _) = encode_sft(&ex, &m, &opts).expect("encoding the turn");
    let s = &seqs[0];
    // One labelled position at a time: its own cost, not the turn's mean.
    for (i, label) in s.labels.iter().enumerate() {
        let Some(label) = *label else { continue };
        let mut one = s.clone();
        one.labels = vec![None; s.labels.len()];
        one.labels[i] = Some(label);
        let nll = score_nll(&m, None, &[one], 1).expect("scoring").nll;
        println!(
            "{:>16} {nll:6.2} nats",
            format!("{:?}", m.tokenizer.decode(&[label], true))
        );
    }
}
