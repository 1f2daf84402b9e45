//! `autodidact train` and `autodidact adapters` through the real binary on tiny random models:
//! train, list, show, export to both formats, import, merge, use with --adapter, remove; a run
//! killed with SIGKILL resumes to the weights of an uninterrupted one; bad data fails clearly.
use super::bin;
use autodidact_kernels::GgmlType;
use autodidact_model::testing::{tiny_model_with, TinySpec};
use autodidact_model::{Arch, LoraAdapter, Model};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

struct Env {
    home: PathBuf,
    model: PathBuf,
}

fn setup(tag: &str, arch: Arch) -> Env {
    let home = std::env::temp_dir().join(format!("ad-train-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let spec = TinySpec::small(arch, GgmlType::Q8_0, 3);
    let model = home.join("tiny.gguf");
    std::fs::write(&model, tiny_model_with(&spec)).unwrap();
    Env { home, model }
}

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        bin()
            .env("AUTODIDACT_HOME", &self.home)
            .env("CI", "true")
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    fn m(&self) -> &str {
        self.model.to_str().unwrap()
    }

    fn data(&self, name: &str, n: usize) -> String {
        let p = self.home.join(name);
        let lines: String = (0..n)
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

    fn adapter(&self, path: &Path) -> LoraAdapter {
        let m = Model::load(&self.model).unwrap();
        LoraAdapter::load_gguf(path, &m.config).unwrap()
    }
}

#[test]
fn train_list_show_export_import_merge_use_and_remove() {
    let e = setup("cycle", Arch::Llama);
    let data = e.data("d.jsonl", 12);
    let m = e.m();
    let args = [
        "train",
        "--data",
        &data,
        "-m",
        m,
        "--out",
        "t1",
        "--rank",
        "4",
        "--epochs",
        "2",
        "--batch",
        "3",
        "--lr",
        "1e-2",
        "--seq-len",
        "32",
        "--val-split",
        "0.25",
    ];
    e.ok(&args);
    // The name is taken now.
    assert!(e.fails(&args).contains("--resume"));
    assert!(e.ok(&["adapters", "list"]).contains("t1"));
    let show: serde_json::Value = serde_json::from_str(
        e.ok(&["adapters", "show", "t1"])
            .split("\npath:")
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(show["rank"], 4);
    assert_eq!(show["method"], "sft");
    assert!(show["val_loss"].as_f64().is_some());

    let gguf = e.home.join("t1.gguf");
    e.ok(&[
        "adapters",
        "export",
        "t1",
        "--format",
        "gguf",
        "--out",
        gguf.to_str().unwrap(),
    ]);
    let peft = e.home.join("t1-peft");
    e.ok(&[
        "adapters",
        "export",
        "t1",
        "--format",
        "peft",
        "--out",
        peft.to_str().unwrap(),
    ]);
    assert!(peft.join("adapter_model.safetensors").exists());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["peft_type"], "LORA");
    // PEFT → store → GGUF gives back the same tensors (Llama's Q/K rows un- and re-permuted).
    e.ok(&[
        "adapters",
        "import",
        peft.to_str().unwrap(),
        "--name",
        "t2",
        "-m",
        m,
    ]);
    let t2 = e.home.join("adapters/t2/adapter.gguf");
    assert_eq!(e.adapter(&gguf), e.adapter(&t2));

    // Generation with the adapter by name, by file and by PEFT directory agree.
    let gen = |adapter: &str| {
        e.ok(&[
            "generate",
            "-m",
            m,
            "-p",
            "q1 ",
            "-n",
            "6",
            "--adapter",
            adapter,
        ])
    };
    let by_name = gen("t1");
    assert_eq!(by_name, gen(gguf.to_str().unwrap()));
    assert_eq!(by_name, gen(peft.to_str().unwrap()));
    // Merged into the base, the model alone answers the same.
    let merged = e.home.join("merged.gguf");
    e.ok(&[
        "adapters",
        "merge",
        "t1",
        "-m",
        m,
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(
        by_name,
        e.ok(&[
            "generate",
            "-m",
            merged.to_str().unwrap(),
            "-p",
            "q1 ",
            "-n",
            "6"
        ])
    );

    // Dequantized to f32, the base with the adapter on and the f32 merge answer alike too.
    let f32_base = e.home.join("f32.gguf");
    let f32_merged = e.home.join("merged-f32.gguf");
    let (fb, fm) = (f32_base.to_str().unwrap(), f32_merged.to_str().unwrap());
    e.ok(&["convert", "-m", m, "--outtype", "f32", "--out", fb]);
    e.ok(&[
        "adapters",
        "merge",
        "t1",
        "-m",
        m,
        "--outtype",
        "f32",
        "--out",
        fm,
    ]);
    for f in [fb, fm] {
        let mm = Model::load(f).unwrap();
        assert_eq!(mm.weights.layers[0].attn_q.ty, GgmlType::F32, "{f}");
    }
    assert_eq!(
        e.ok(&["generate", "-m", fm, "-p", "q1 ", "-n", "6"]),
        e.ok(&[
            "generate",
            "-m",
            fb,
            "-p",
            "q1 ",
            "-n",
            "6",
            "--adapter",
            "t1"
        ])
    );

    e.ok(&["adapters", "rm", "t1"]);
    assert!(!e.ok(&["adapters", "list"]).contains("t1\t"));
    assert!(e
        .fails(&["generate", "-m", m, "-p", "x", "--adapter", "t1"])
        .contains("no adapter named"));
    let _ = std::fs::remove_dir_all(&e.home);
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() {
    let e = setup("resume", Arch::Gemma3);
    let data = e.data("d.jsonl", 40);
    let m = e.m();
    let train = |out: &str| {
        vec![
            "train".to_string(),
            "--data".into(),
            data.clone(),
            "-m".into(),
            m.into(),
            "--out".into(),
            out.into(),
            "--rank".into(),
            "4".into(),
            "--epochs".into(),
            "12".into(),
            "--batch".into(),
            "2".into(),
            "--lr".into(),
            "5e-3".into(),
            "--seq-len".into(),
            "32".into(),
            "--save-every".into(),
            "3".into(),
            "--dropout".into(),
            "0.1".into(),
        ]
    };
    let whole = train("whole");
    e.ok(&whole.iter().map(String::as_str).collect::<Vec<_>>());

    let cut = train("cut");
    let ckpt = e.home.join("adapters/cut/checkpoint.safetensors");
    let mut child = bin()
        .env("AUTODIDACT_HOME", &e.home)
        .args(&cut)
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
    std::thread::sleep(Duration::from_millis(30));
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(still_running, "training finished before it could be killed");
    assert!(!e.home.join("adapters/cut/adapter.gguf").exists());

    let mut resume = cut.clone();
    resume.push("--resume".into());
    e.ok(&resume.iter().map(String::as_str).collect::<Vec<_>>());
    let a = e.adapter(&e.home.join("adapters/whole/adapter.gguf"));
    let b = e.adapter(&e.home.join("adapters/cut/adapter.gguf"));
    assert!(a == b, "the resumed run ended on other weights");
    let _ = std::fs::remove_dir_all(&e.home);
}

#[test]
fn bad_training_input_is_a_clear_error() {
    let e = setup("bad", Arch::Gemma3);
    let m = e.m();
    let f = e.home.join("bad.jsonl");
    std::fs::write(
        &f,
        "{\"prompt\": \"a\", \"completion\": \"b\"}\n\n{\"prompt\": \"a\"\n",
    )
    .unwrap();
    let fs = f.to_str().unwrap();
    let err = e.fails(&["train", "--data", fs, "-m", m, "--out", "x"]);
    assert!(
        err.contains("bad.jsonl:3") && err.contains("--skip-bad"),
        "{err}"
    );
    // Skipping leaves one good line: training runs.
    e.ok(&[
        "train",
        "--data",
        fs,
        "-m",
        m,
        "--out",
        "x",
        "--skip-bad",
        "--rank",
        "2",
    ]);
    std::fs::write(&f, "").unwrap();
    assert!(e
        .fails(&["train", "--data", fs, "-m", m, "--out", "y"])
        .contains("no usable examples"));
    assert!(e
        .fails(&["train", "--data", fs, "-m", m, "--out", "../evil"])
        .contains("adapter name"));
    assert!(e
        .fails(&["train", "--data", fs, "-m", m, "--out", "z", "--resume"])
        .contains("nothing to resume"));
    // An adapter of the other architecture is refused with both names.
    let llama = setup("bad-llama", Arch::Llama);
    let d = llama.data("d.jsonl", 4);
    llama.ok(&[
        "train",
        "--data",
        &d,
        "-m",
        llama.m(),
        "--out",
        "l",
        "--rank",
        "2",
    ]);
    let lgguf = llama.home.join("adapters/l/adapter.gguf");
    let err = e.fails(&[
        "generate",
        "-m",
        m,
        "-p",
        "x",
        "--adapter",
        lgguf.to_str().unwrap(),
    ]);
    assert!(err.contains("llama") && err.contains("gemma3"), "{err}");
    let _ = std::fs::remove_dir_all(&e.home);
    let _ = std::fs::remove_dir_all(&llama.home);
}

#[test]
fn trainable_tokens_train_the_chat_markers_own_rows() {
    let e = setup("rows", Arch::Gemma3);
    let spec = TinySpec {
        chat_markers: true,
        ..TinySpec::small(Arch::Gemma3, GgmlType::Q8_0, 3)
    };
    std::fs::write(&e.model, tiny_model_with(&spec)).unwrap();
    let m = e.m();
    let f = e.home.join("chat.jsonl");
    let lines: String = (0..8)
        .map(|i| {
            format!(
                "{{\"messages\": [{{\"role\": \"user\", \"content\": \"q{i}\"}}, \
                 {{\"role\": \"assistant\", \"content\": \"a{}\"}}]}}\n",
                i % 3
            )
        })
        .collect();
    std::fs::write(&f, lines).unwrap();
    let data = f.to_str().unwrap();
    let train = |out: &str, tokens: &str| {
        vec![
            "train".to_string(),
            "--data".into(),
            data.into(),
            "-m".into(),
            m.into(),
            "--out".into(),
            out.into(),
            "--rank".into(),
            "2".into(),
            "--lr".into(),
            "1e-2".into(),
            "--trainable-tokens".into(),
            tokens.into(),
        ]
    };
    let args = train("rows", "template");
    e.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let model = Model::load(&e.model).unwrap();
    let id = |t: &str| model.tokenizer.token_id(t).unwrap();
    let ad = e.adapter(&e.home.join("adapters/rows/adapter.gguf"));
    let rows = ad.tokens.expect("the adapter keeps its token rows");
    assert_eq!(rows.ids, vec![id("<start_of_turn>"), id("<end_of_turn>")]);
    // Both rows moved: one is only read, the other read and predicted.
    for j in 0..2 {
        let d = rows.n_embd();
        assert!(rows.delta[j * d..(j + 1) * d].iter().any(|&v| v != 0.0));
    }
    // A token the vocabulary lacks, or an id beyond it, is refused by name.
    let args = train("bad", "<no_such_token>");
    let err = e.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("<no_such_token>"), "{err}");
    let args = train("bad", "99999999");
    let err = e.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("outside the vocabulary"), "{err}");
    // Neither llama.cpp's nor PEFT's LoRA files hold the rows: export says so instead of
    // dropping them, and merging folds them into the model.
    for format in ["gguf", "peft"] {
        let out = e.home.join(format!("out-{format}"));
        let err = e.fails(&[
            "adapters",
            "export",
            "rows",
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(err.contains("embedding rows"), "{format}: {err}");
        assert!(!out.exists(), "{format}");
    }
    let merged = e.home.join("merged.gguf");
    e.ok(&[
        "adapters",
        "merge",
        "rows",
        "-m",
        m,
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(merged.exists());
    let _ = std::fs::remove_dir_all(&e.home);
}
