//! `autodidact run` through the real binary with piped input, on a tiny random model: commands,
//! the history file, and a conversation that outgrows its context.
use crate::bin;
use autodidact_kernels::GgmlType;
use autodidact_model::testing::tiny_model;
use autodidact_model::Arch;
use std::io::Write;
use std::process::Stdio;

#[test]
fn chat_commands_history_and_a_conversation_longer_than_the_context() {
    let home = std::env::temp_dir().join(format!("ad-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let model = home.join("tiny.gguf");
    std::fs::write(&model, tiny_model(Arch::Gemma3, GgmlType::Q8_0, 9)).unwrap();
    let mut child = bin()
        .env("AUTODIDACT_HOME", &home)
        .args(["run", "-m"])
        .arg(&model)
        .args(["--ctx", "128", "-n", "8", "--temperature", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = "/help\nhello there\n/nonsense\nhow are you today\nand what next\n/clear\nhi\n/exit\nnever read\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("base model, no adapter"), "{stderr}");
    assert!(
        stderr.contains("/clear    forget"),
        "/help went to the model: {stderr}"
    );
    assert!(stderr.contains("unknown command /nonsense"), "{stderr}");
    assert!(stderr.contains("dropped its oldest"), "{stderr}");
    assert!(stderr.contains("(conversation cleared)"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    // Answers only: commands and notices go to stderr.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.trim().is_empty() && !stdout.contains("/clear"),
        "{stdout}"
    );
    let hist = home.join("history/run.txt");
    let saved = std::fs::read_to_string(&hist).unwrap();
    for line in ["/help", "hello there", "how are you today", "/exit"] {
        assert!(saved.contains(line), "{saved}");
    }
    assert!(!saved.contains("never read"), "{saved}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&hist).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = std::fs::remove_dir_all(&home);
}

/// Runs `run` on `model` in `home` with `input` piped in; returns stderr.
fn chat(home: &std::path::Path, model: &std::path::Path, extra: &[&str], input: &str) -> String {
    let mut child = bin()
        .env("AUTODIDACT_HOME", home)
        .env("AUTODIDACT_USER", "tester")
        .args(["run", "-m"])
        .arg(model)
        .args(["--ctx", "256", "-n", "4", "--temperature", "0"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn run_remembers_recalls_and_forgets_unless_memory_is_off() {
    let home = std::env::temp_dir().join(format!("ad-run-mem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let model = home.join("tiny.gguf");
    std::fs::write(&model, tiny_model(Arch::Gemma3, GgmlType::Q8_0, 9)).unwrap();
    // Learned from what the user says, and explicitly with /remember.
    let e = chat(
        &home,
        &model,
        &[],
        "My name is Zed.\n/remember I keep bees\n/memories\n",
    );
    assert!(
        e.contains("(remembered [1] The user's name is Zed.)"),
        "{e}"
    );
    assert!(e.contains("(remembered [2] The user keeps bees.)"), "{e}");
    assert!(e.contains("[2] The user keeps bees. (fact)"), "{e}");
    // A later session recalls it and says so; /forget deletes it.
    let e = chat(
        &home,
        &model,
        &[],
        "what about my bees\n/forget 2\n/memories\n",
    );
    assert!(e.contains("(using memories [2])"), "{e}");
    assert!(e.contains("(forgot memory 2)"), "{e}");
    assert!(!e.contains("[2] The user keeps bees. (fact)"), "{e}");
    // With --no-memory nothing is recalled or learned, and the commands say memory is off.
    let e = chat(
        &home,
        &model,
        &["--no-memory"],
        "what is my name\nI live in Oslo.\n/memories\n",
    );
    assert!(!e.contains("using memories"), "{e}");
    assert!(e.contains("memory is off"), "{e}");
    let e = chat(&home, &model, &[], "/memories\n");
    assert!(e.contains("[1] The user's name is Zed."), "{e}");
    assert!(!e.contains("Oslo"), "{e}");
    let _ = std::fs::remove_dir_all(&home);
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_reply_and_the_session_goes_on() {
    use autodidact_model::testing::{tiny_model_with, TinySpec};
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let home = std::env::temp_dir().join(format!("ad-run-int-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let model = home.join("tiny.gguf");
    // A long context, so that the reply is surely still running when the signal comes.
    let spec = TinySpec {
        ctx: 8192,
        ..TinySpec::new(Arch::Gemma3, GgmlType::Q8_0, 9)
    };
    std::fs::write(&model, tiny_model_with(&spec)).unwrap();
    let mut child = bin()
        .env("AUTODIDACT_HOME", &home)
        .args(["run", "--no-memory", "-m"])
        .arg(&model)
        .args(["--ctx", "8192", "-n", "8000", "--temperature", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"tell me a long story\n").unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = out.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let start = Instant::now();
    while out.lock().unwrap().len() < 16 {
        assert!(start.elapsed() < Duration::from_secs(60), "no reply text");
        std::thread::sleep(Duration::from_millis(10));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    while !String::from_utf8_lossy(&out.lock().unwrap()).contains("[stopped]") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the reply did not stop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The session is still there: it answers the next line (stopped the same way), then leaves
    // on /exit.
    stdin.write_all(b"and then\n").unwrap();
    let stopped = |t: &[u8]| String::from_utf8_lossy(t).matches("[stopped]").count();
    let first = out.lock().unwrap().len();
    while out.lock().unwrap().len() < first + 16 {
        assert!(start.elapsed() < Duration::from_secs(60), "no second reply");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    while stopped(&out.lock().unwrap()) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the second reply did not stop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stdin.write_all(b"/exit\n").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    let after = text.split("[stopped]").nth(1).unwrap_or("");
    assert!(
        !after.trim().is_empty(),
        "no answer after the stop: {text:?}"
    );
    let _ = std::fs::remove_dir_all(&home);
}
