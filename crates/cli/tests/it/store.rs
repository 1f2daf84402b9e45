//! The store through the real binary: `pull PATH` never replaces a model silently, adapters
//! refuse a base they were not trained on, and an interrupted `--force` retrain is described
//! truthfully by `adapters list` / `show` and resumes.
use super::bin;
use autodidact_kernels::GgmlType;
use autodidact_model::testing::{tiny_model_with, TinySpec};
use autodidact_model::Arch;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

fn home(tag: &str) -> PathBuf {
    let h = std::env::temp_dir().join(format!("ad-store-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&h);
    std::fs::create_dir_all(&h).unwrap();
    h
}

fn tiny(dir: &Path, file: &str, seed: u64) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(file);
    std::fs::write(
        &p,
        tiny_model_with(&TinySpec::small(Arch::Gemma3, GgmlType::Q8_0, seed)),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

fn run(home: &Path, args: &[&str]) -> Output {
    bin()
        .env("AUTODIDACT_HOME", home)
        .env("CI", "true")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn pull_of_another_file_with_the_same_stem_is_refused() {
    let h = home("pull");
    let a = tiny(&h.join("a"), "tiny.gguf", 1);
    let b = tiny(&h.join("b"), "tiny.gguf", 2);
    let o = run(&h, &["pull", &a]);
    assert!(o.status.success(), "{}", text(&o));
    let before = std::fs::read(h.join("models/tiny.gguf")).unwrap();
    let o = run(&h, &["pull", &b]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("already registered") && t.contains("--name"),
        "{t}"
    );
    assert_eq!(std::fs::read(h.join("models/tiny.gguf")).unwrap(), before);
    // Under a new name both are kept; with --replace the caller is told what went.
    assert!(run(&h, &["pull", &b, "--name", "tiny2"]).status.success());
    let o = run(&h, &["pull", &b, "--replace"]);
    assert!(
        o.status.success() && text(&o).contains("replaced tiny"),
        "{}",
        text(&o)
    );
    let list = text(&run(&h, &["list"]));
    assert!(
        list.contains("tiny\t") && list.contains("tiny2\t"),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(&h);
}

fn data(h: &Path) -> String {
    let p = h.join("d.jsonl");
    let lines: String = (0..40)
        .map(|i| {
            format!(
                "{{\"prompt\": \"q{i} \", \"completion\": \"a{}\"}}\n",
                i % 3
            )
        })
        .collect();
    std::fs::write(&p, lines).unwrap();
    p.to_str().unwrap().to_string()
}

fn train_args<'a>(data: &'a str, model: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "--data",
        data,
        "-m",
        model,
        "--out",
        "x",
        "--rank",
        "2",
        "--batch",
        "2",
        "--seq-len",
        "32",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn an_adapter_is_refused_with_a_base_it_was_not_trained_on() {
    let h = home("base");
    let a = tiny(&h.join("a"), "m.gguf", 3);
    let b = tiny(&h.join("b"), "m.gguf", 4);
    let d = data(&h);
    let o = run(&h, &train_args(&d, &a, &["--max-steps", "2"]));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(
        &h,
        &[
            "generate",
            "-m",
            &b,
            "-p",
            "hi",
            "-n",
            "2",
            "--adapter",
            "x",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("different base model"), "{}", text(&o));
    let o = run(
        &h,
        &[
            "generate",
            "-m",
            &a,
            "-p",
            "hi",
            "-n",
            "2",
            "--adapter",
            "x",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&h);
}

#[test]
fn an_interrupted_forced_retrain_is_listed_truthfully_and_resumes() {
    let h = home("force");
    let m = tiny(&h, "m.gguf", 5);
    let d = data(&h);
    let o = run(&h, &train_args(&d, &m, &["--max-steps", "2"]));
    assert!(o.status.success(), "{}", text(&o));
    let old = std::fs::read(h.join("adapters/x/adapter.gguf")).unwrap();
    // Retrain with --force and kill it once its first checkpoint is written.
    let args = train_args(&d, &m, &["--force", "--epochs", "40", "--save-every", "2"]);
    let ckpt = h.join("adapters/x/checkpoint.safetensors");
    let mut child = bin()
        .env("AUTODIDACT_HOME", &h)
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !ckpt.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20));
    child.kill().unwrap();
    child.wait().unwrap();
    // The old adapter is still what is served, and both list and show say a run is unfinished.
    assert_eq!(
        std::fs::read(h.join("adapters/x/adapter.gguf")).unwrap(),
        old
    );
    let list = text(&run(&h, &["adapters", "list"]));
    assert!(list.contains("unfinished training run"), "{list}");
    let show = text(&run(&h, &["adapters", "show", "x"]));
    assert!(show.contains("unfinished run"), "{show}");
    // The same command plus --resume finishes it and replaces the old adapter.
    let mut resume = args.clone();
    resume.push("--resume");
    let o = run(&h, &resume);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(
        std::fs::read(h.join("adapters/x/adapter.gguf")).unwrap(),
        old
    );
    assert!(!ckpt.exists());
    let list = text(&run(&h, &["adapters", "list"]));
    assert!(!list.contains("unfinished"), "{list}");
    let _ = std::fs::remove_dir_all(&h);
}
