//! The Gemma tokenizer against llama.cpp's tokenizations of the default model.
use crate::common::read_jsonl;
use autodidact_model::gguf::GgufFile;
use autodidact_model::testing::real_model_path;
use autodidact_model::Tokenizer;

#[test]
fn every_reference_tokenization_is_identical() {
    let Some(path) = real_model_path() else {
        return;
    };
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
    let Some(path) = real_model_path() else {
        return;
    };
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
    let Some(path) = real_model_path() else {
        return;
    };
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

/// Random Unicode strings (ASCII, Latin, Cyrillic, CJK, emoji, combining marks, whitespace runs,
/// control characters, specials-looking text) encode and decode back to themselves, and the streaming
/// decoder never emits half a character. (U+2581 is left out: SentencePiece, llama.cpp included, decodes
/// it as a space.)
#[test]
fn random_unicode_round_trips() {
    let Some(path) = real_model_path() else {
        return;
    };
    let gguf = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let ranges: [(u32, u32); 9] = [
        (0x20, 0x7e),
        (0x09, 0x0d),
        (0xa0, 0x24f),
        (0x400, 0x4ff),
        (0x300, 0x36f),
        (0x4e00, 0x9fff),
        (0xac00, 0xd7a3),
        (0x1f300, 0x1faff),
        (0x0, 0x1f),
    ];
    let mut s = 0x9e3779b97f4a7c15u64;
    let mut next = |n: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n
    };
    for case in 0..300 {
        let len = 1 + next(40) as usize;
        let mut text = String::new();
        for _ in 0..len {
            if next(20) == 0 {
                text.push_str(
                    ["<start_of_turn>", "  ", "\n\n", "<eos>", "\u{200b}"][next(5) as usize],
                );
                continue;
            }
            let (lo, hi) = ranges[next(ranges.len() as u64) as usize];
            if let Some(c) = char::from_u32(lo + next((hi - lo + 1) as u64) as u32) {
                text.push(c);
            }
        }
        let ids = tok.encode(&text, false, false);
        assert_eq!(tok.decode(&ids, false), text, "case {case}: {ids:?}");
        let mut stream = autodidact_model::StreamDecoder::new();
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&stream.push(&tok.token_bytes(id, false)));
        }
        streamed.push_str(&stream.finish());
        assert_eq!(streamed, text, "case {case} streamed");
    }
}
