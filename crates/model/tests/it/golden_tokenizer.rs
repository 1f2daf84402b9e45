//! The Gemma tokenizer against llama.cpp's tokenizations of the default model.
use crate::common::{read_jsonl, real_model};
use autodidact_model::gguf::GgufFile;
use autodidact_model::Tokenizer;

#[test]
fn every_reference_tokenization_is_identical() {
    let Some(path) = real_model() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let cases = read_jsonl("gemma3-270m/tokenizer.jsonl");
    assert!(cases.len() >= 100);
    let mut failures = Vec::new();
    for c in &cases {
        let text = c["text"].as_str().unwrap();
        let add_bos = c["add_bos"].as_bool().unwrap();
        let special = c["parse_special"].as_bool().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text, add_bos, special);
        if got != want {
            failures.push(format!(
                "{text:?} bos={add_bos} special={special}: got {got:?} want {want:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn decode_inverts_encode_on_reference_texts() {
    let Some(path) = real_model() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    for c in read_jsonl("gemma3-270m/tokenizer.jsonl") {
        let text = c["text"].as_str().unwrap();
        let special = c["parse_special"].as_bool().unwrap();
        let ids = tok.encode(text, false, special);
        assert_eq!(tok.decode(&ids, special), text, "round trip of {text:?}");
    }
}

#[test]
fn reference_continuations_decode_to_their_text() {
    let Some(path) = real_model() else { return };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    for c in read_jsonl("gemma3-270m/greedy.jsonl") {
        let ids: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.decode(&ids, false), c["text"].as_str().unwrap());
        let prompt_ids: Vec<u32> = c["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            tok.encode(c["prompt"].as_str().unwrap(), true, true),
            prompt_ids
        );
    }
}
