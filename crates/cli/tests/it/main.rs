//! The real `autodidact` binary: command shapes other tools rely on, errors, and the real model.
mod improve;
mod memory;
mod run;
mod store;
mod train;

use autodidact_model::testing::{real_model_path, reference_dir};
use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_autodidact"))
}

/// The real model and an empty temporary store to run it from (so a test never writes into the
/// user's own store), or `None` when the model is absent (`real_model_path` says so).
struct Real {
    home: PathBuf,
    model: String,
}

impl Real {
    fn find(tag: &str) -> Option<Real> {
        let model = real_model_path()?;
        let home = std::env::temp_dir().join(format!("ad-cli-real-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let model = model.to_str().expect("model path is UTF-8").to_string();
        Some(Real { home, model })
    }

    fn cmd(&self) -> Command {
        let mut c = bin();
        c.env("AUTODIDACT_HOME", &self.home);
        c
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

#[test]
fn tokenize_prints_llama_cpp_ids_as_json() {
    let Some(r) = Real::find("tokenize") else {
        return;
    };
    let out = r
        .cmd()
        .args(["tokenize", "-m", r.model.as_str(), "Hello world"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "[2,9259,1902]"
    );
    let out = r
        .cmd()
        .args([
            "tokenize",
            "-m",
            r.model.as_str(),
            "--no-bos",
            "Hello world",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "[9259,1902]");
}

#[test]
fn generate_prints_only_the_greedy_continuation() {
    let Some(r) = Real::find("generate") else {
        return;
    };
    let line = std::fs::read_to_string(reference_dir().join("gemma3-270m/greedy.jsonl")).unwrap();
    let c: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let out = r
        .cmd()
        .args([
            "generate",
            "-m",
            r.model.as_str(),
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
    let Some(r) = Real::find("run") else { return };
    let out = r
        .cmd()
        .args([
            "run",
            "-m",
            r.model.as_str(),
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
    let Some(r) = Real::find("perplexity") else {
        return;
    };
    let out = r
        .cmd()
        .args(["perplexity", "-m", r.model.as_str(), "--ctx", "128", "-f"])
        .arg(reference_dir().join("texts/apache-2.0.txt"))
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
    let Some(r) = Real::find("bench") else { return };
    let out = r
        .cmd()
        .args([
            "bench",
            "-m",
            r.model.as_str(),
            "--pp",
            "32",
            "--tg",
            "4",
            "--batch",
            "2",
            "--reps",
            "1",
            "--json",
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
