//! Any byte string: the GGUF reader, tokenizer and model binding must return an error or a value,
//! never panic or read out of bounds.
#![no_main]
use autodidact_model::gguf::GgufFile;
use autodidact_model::{Model, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = GgufFile::from_bytes("fuzz", data) else {
        return;
    };
    if let Ok(t) = Tokenizer::from_gguf(&g) {
        let ids = t.encode("hello wörld <start_of_turn>", true, true);
        let _ = t.decode(&ids, true);
    }
    let _ = Model::from_gguf(g);
});
