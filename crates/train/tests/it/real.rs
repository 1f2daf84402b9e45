//! The real default model (skipped without it, except under CI): which rows `template_tokens`
//! picks, and why they need training.
use autodidact_model::testing::real_model_path;
use autodidact_model::{Message, Model};
use autodidact_train::data::{encode_sft, template_tokens, DataOptions, OnBadLine, SftExample};
use autodidact_train::score_nll;

#[test]
fn gemma_template_tokens_are_its_turn_markers_which_the_base_never_predicts() {
    let Some(path) = real_model_path() else {
        return;
    };
    let m = Model::load(&path).unwrap();
    let id = |t: &str| m.tokenizer.token_id(t).unwrap();
    // Not the newline runs, which Gemma's vocabulary marks user-defined but are ordinary text.
    assert_eq!(
        template_tokens(&m),
        vec![id("<start_of_turn>"), id("<end_of_turn>")]
    );
    let ex = [SftExample::Chat(vec![
        Message::new("user", "What is 3 plus 0?"),
        Message::new("assistant", "3"),
    ])];
    let opts = DataOptions {
        seq_len: 64,
        on_bad: OnBadLine::Fail,
    };
    let s = encode_sft(&ex, &m, &opts).unwrap().0.remove(0);
    let cost = |label: u32| {
        let mut one = s.clone();
        one.labels = s.labels.iter().map(|l| l.filter(|&l| l == label)).collect();
        score_nll(&m, None, &[one], 1).unwrap().nll
    };
    let (answer, eot) = (
        cost(m.tokenizer.encode("3", false, false)[0]),
        cost(id("<end_of_turn>")),
    );
    // 2026-12-07: 3.2 and 29.2 nats.
    assert!(answer < 6.0, "the answer costs {answer} nats");
    assert!(eot > 20.0, "<end_of_turn> costs {eot} nats");
}
