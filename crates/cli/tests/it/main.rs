//! The real `autodidact` binary: command shapes other tools rely on, errors, and the real model.
mod run;
mod store;
mod train;

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_autodidact"))
}

fn home() -> Option<PathBuf> {
    let h = std::env::var_os("AUTODIDACT_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".autodidact")))?;
    if h.join("models/gemma3-270m.gguf").exists() {
        Some(h)
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must pull the default model first"
        );
        eprintln!("SKIPPED: default model not pulled");
        None
    }
}

fn reference() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference")
}

#[test]
fn tokenize_prints_llama_cpp_ids_as_json() {
    let Some(h) = home() else { return };
    let out = bin()
        .env("AUTODIDACT_HOME", &h)
        .args(["tokenize", "-m", "gemma3-270m", "Hello world"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "[2,9259,1902]"
    );
    let out = bin()
        .env("AUTODIDACT_HOME", &h)
        .args(["tokenize", "--no-bos", "Hello world"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "[9259,1902]");
}

#[test]
fn generate_prints_only_the_greedy_continuation() {
    let Some(h) = home() else { return };
    let line = std::fs::read_to_string(reference().join("gemma3-270m/greedy.jsonl")).unwrap();
    let c: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let out = bin()
        .env("AUTODIDACT_HOME", &h)
        .args([
            "generate",
            "-m",
            "gemma3-270m",
            "-p",
            c["prompt"].as_str().unwrap(),
            "-n",
            "8",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // The first eight reference tokens, decoded: " the capital of the country of France."
    assert_eq!(
        text.trim_end_matches('\n'),
        " the capital of the country of France."
    );
}

#[test]
fn run_answers_one_prompt_and_exits() {
    let Some(h) = home() else { return };
    let out = bin()
        .env("AUTODIDACT_HOME", &h)
        .args([
            "run",
            "--seed",
            "1",
            "-n",
            "16",
            "What is the capital of France?",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8(out.stdout).unwrap().trim().is_empty());
}

#[test]
fn perplexity_ends_with_the_ppl_line() {
    let Some(h) = home() else { return };
    let out = bin()
        .env("AUTODIDACT_HOME", &h)
        .args(["perplexity", "-m", "gemma3-270m", "--ctx", "128", "-f"])
        .arg(reference().join("texts/apache-2.0.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    let v: f64 = last.strip_prefix("PPL = ").unwrap().parse().unwrap();
    assert!(v > 1.0 && v < 100.0, "{last}");
}

#[test]
fn bench_json_has_one_object_per_test() {
    let Some(h) = home() else { return };
    let out = bin()
        .env("AUTODIDACT_HOME", &h)
        .args([
            "bench", "--pp", "32", "--tg", "4", "--batch", "2", "--reps", "1", "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tests: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for name in ["pp32", "tg4", "batched B=2"] {
        let t = tests
            .iter()
            .find(|t| t["test"] == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert!(t["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("ad-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"not a model at all").unwrap();
    let out = bin()
        .env("AUTODIDACT_HOME", &dir)
        .args(["tokenize", "-m"])
        .arg(&junk)
        .arg("hi")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not a GGUF file"), "{err}");
    let out = bin()
        .env("AUTODIDACT_HOME", &dir)
        .args(["generate", "-m", "/nope/missing.gguf", "-p", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("does not exist"));
    let out = bin()
        .env("AUTODIDACT_HOME", &dir)
        .args(["run", "-m", "no-such-model", "hi"])
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("unknown model"));
    std::fs::remove_dir_all(&dir).unwrap();
}
