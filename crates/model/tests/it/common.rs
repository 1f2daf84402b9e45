//! Reading the vendored llama.cpp reference (the finders live in `autodidact_model::testing`).
pub use autodidact_model::testing::reference_dir;

pub fn read_jsonl(name: &str) -> Vec<serde_json::Value> {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("reference line is JSON"))
        .collect()
}
