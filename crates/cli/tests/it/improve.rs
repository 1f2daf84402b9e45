//! `autodidact skills|improve|runs|eval|rollback` through the real binary on a tiny random
//! model: a run killed with SIGKILL mid-round resumes without losing a committed rollout, and
//! a bad skill file is an error that names its field.
use super::bin;
use autodidact_kernels::GgmlType;
use autodidact_model::testing::{tiny_model_with, TinySpec};
use autodidact_model::Arch;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn setup(tag: &str) -> (PathBuf, PathBuf) {
    let home = std::env::temp_dir().join(format!("ad-improve-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("skills")).unwrap();
    let model = home.join("tiny.gguf");
    // Chat prompts of byte-level tokens run past the default 256 positions.
    let spec = TinySpec {
        ctx: 1024,
        ..TinySpec::small(Arch::Gemma3, GgmlType::F32, 11)
    };
    std::fs::write(&model, tiny_model_with(&spec)).unwrap();
    let mut s = String::from(
        "name = \"stop\"\nprompt = \"Say a word about {w}.\"\nmax_tokens = 40\nscaffold = \"none\"\n\
         [verifier]\nkind = \"regex\"\npattern = \".\"\n",
    );
    for i in 0..64 {
        s.push_str(&format!("[[examples]]\nw = \"thing{i}\"\n"));
    }
    std::fs::write(home.join("skills/stop.toml"), s).unwrap();
    (home, model)
}

fn run(home: &PathBuf, args: &[&str]) -> Output {
    bin()
        .env("AUTODIDACT_HOME", home)
        .args(args)
        .output()
        .unwrap()
}

/// Rollouts committed so far, read through the registry.
fn samples(home: &std::path::Path) -> i64 {
    if !home.join("improve/registry.sqlite").exists() {
        return 0;
    }
    let reg = autodidact_improve::Registry::open(&home.join("improve/registry.sqlite")).unwrap();
    let runs = reg.runs().unwrap();
    runs.iter()
        .map(|r| reg.samples(&r.id, 0).unwrap().len() as i64)
        .sum()
}

#[test]
fn improve_killed_mid_round_resumes_and_commands_report() {
    let (home, model) = setup("kill");
    let m = model.to_str().unwrap();
    let out = run(&home, &["skills", "list"]);
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("arithmetic") && list.contains("stop"),
        "{list}"
    );
    let args = [
        "improve",
        "-m",
        m,
        "--skill",
        "stop",
        "--rounds",
        "1",
        "--tasks",
        "400",
        "-k",
        "4",
        "--eval-n",
        "0",
        "--epochs",
        "1",
        "--rank",
        "4",
        "--lr",
        "0.01",
        "--no-guard",
    ];
    let mut child = bin()
        .env("AUTODIDACT_HOME", &home)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while samples(&home) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no rollout chunk committed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = samples(&home);
    assert!(before > 0 && before < 400 * 4, "{before}");
    let reg = autodidact_improve::Registry::open(&home.join("improve/registry.sqlite")).unwrap();
    let run_id = reg.runs().unwrap()[0].id.clone();
    drop(reg);
    let out = run(&home, &["improve", "-m", m, "--resume", &run_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(samples(&home), 400 * 4);
    // What its rounds are compared on cannot change on resume; the refusal names the flag.
    let out = run(
        &home,
        &["improve", "-m", m, "--resume", &run_id, "--eval-n", "3"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--eval-n cannot change"),
        "{err}"
    );
    let out = run(&home, &["runs", "show", &run_id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("round 1"), "{text}");
    let out = run(
        &home,
        &[
            "eval", "-m", m, "--skill", "stop", "--n", "0", "--json", "--base",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["accuracy"]["stop"].is_number(), "{v}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_bad_skill_file_names_its_field() {
    let (home, _) = setup("bad");
    std::fs::write(
        home.join("skills/bad.toml"),
        "name = \"bad\"\nprompt = \"x\"\n[verifier]\nkind = \"telepathy\"\n[[examples]]\nx = \"1\"\n",
    )
    .unwrap();
    let out = run(&home, &["skills", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("verifier.kind") && err.contains("bad.toml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&home);
}
