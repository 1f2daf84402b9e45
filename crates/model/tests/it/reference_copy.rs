//! The repository's `reference/` is a copy of the project's shared llama.cpp reference
//! (`../shared/reference/` beside the checkout, where it exists): the golden tests read the copy,
//! so it must not drift from the yardstick. A fresh clone has no shared directory; there the
//! comparison is skipped and the test says so.
use autodidact_model::testing::vendored_reference_dir;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under `root`, by its path relative to `root`, with its bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn vendored_reference_holds_what_the_tests_read() {
    let dir = vendored_reference_dir();
    for f in [
        "README.md",
        "gemma3-270m/greedy.jsonl",
        "gemma3-270m/tokenizer.jsonl",
        "texts/gpl-3.txt",
        "texts/apache-2.0.txt",
    ] {
        let p = dir.join(f);
        assert!(
            p.is_file(),
            "{} is missing from the repository",
            p.display()
        );
    }
}

#[test]
fn vendored_reference_is_identical_to_the_shared_copy() {
    let vendored = vendored_reference_dir();
    let shared = vendored.join("../../shared/reference");
    if !shared.is_dir() {
        eprintln!(
            "SKIPPED the comparison: no shared reference at {} (a fresh clone has only the \
             vendored copy, which the golden tests read)",
            shared.display()
        );
        return;
    }
    let (ours, theirs) = (files(&vendored), files(&shared));
    let only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    let differ: Vec<_> = ours
        .iter()
        .filter(|(k, v)| theirs.get(*k).is_some_and(|t| t != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty() && differ.is_empty(),
        "reference/ has drifted from {}: only in the repository {only_ours:?}, only in the shared \
         copy {only_theirs:?}, different bytes {differ:?}; copy the shared files over",
        shared.display()
    );
}
