//! Locating the real model and the shared reference data.
use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn reference_dir() -> PathBuf {
    std::env::var_os("AUTODIDACT_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/reference"))
}

/// The default model's GGUF: `AUTODIDACT_TEST_MODEL`, else the store's copy. In CI a missing model is
/// a failure (CI pulls it first); on a developer machine the real-model tests say they skipped.
pub fn real_model() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("AUTODIDACT_TEST_MODEL").map(PathBuf::from),
        std::env::var_os("AUTODIDACT_HOME")
            .map(|h| PathBuf::from(h).join("models/gemma3-270m.gguf")),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".autodidact/models/gemma3-270m.gguf")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must pull the default model before the tests (autodidact pull gemma3-270m)"
        );
        eprintln!("SKIPPED: real model not found; run `autodidact pull gemma3-270m`");
    }
    found
}

pub fn read_jsonl(name: &str) -> Vec<serde_json::Value> {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("reference line is JSON"))
        .collect()
}
