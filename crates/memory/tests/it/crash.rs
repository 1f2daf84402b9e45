//! `kill -9` in the middle of writing: the test binary re-runs itself as a writer child.
use autodidact_memory::{Kind, NewMemory, UserMemory};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const DIR_VAR: &str = "AUTODIDACT_MEMORY_CRASH_DIR";

fn counter(i: u64) -> NewMemory {
    NewMemory {
        subject: Some("counter".into()),
        ..NewMemory::new(format!("The counter is {i}."), Kind::Fact)
    }
}

/// The child: writes until killed, printing each index once both of its writes are committed.
#[test]
#[ignore = "run by crash_during_writes_loses_nothing_committed as its child process"]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let mut m = UserMemory::open(std::path::Path::new(&dir), "crash").unwrap();
    for i in 0.. {
        m.remember(NewMemory::new(
            format!("Fact {i} is about kiwis."),
            Kind::Fact,
        ))
        .unwrap();
        // Superseding touches two memories and writes two history rows: all or nothing.
        m.remember(counter(i)).unwrap();
        println!("{i}");
    }
}

#[test]
fn crash_during_writes_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::crash_writer_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last: Option<u64> = None;
    while let Some(Ok(l)) = lines.next() {
        if let Ok(i) = l.trim().parse::<u64>() {
            last = Some(i);
            if i >= 150 {
                break;
            }
        }
    }
    // SIGKILL: no destructors, no chance to finish the transaction in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    let last = last.expect("the writer committed nothing");

    let m = UserMemory::open(dir.path(), "crash").unwrap();
    assert_eq!(m.integrity_check().unwrap(), "ok");
    let all = m.list(true).unwrap();
    for i in 0..=last {
        let t = format!("Fact {i} is about kiwis.");
        assert!(all.iter().any(|x| x.text == t), "committed memory {i} lost");
    }
    let current: Vec<_> = all
        .iter()
        .filter(|x| x.subject.as_deref() == Some("counter") && x.is_current())
        .collect();
    assert_eq!(current.len(), 1, "exactly one current counter value");
    let value: u64 = current[0]
        .text
        .trim_start_matches("The counter is ")
        .trim_end_matches('.')
        .parse()
        .unwrap();
    assert!(value >= last);
    let history = m.history(None).unwrap();
    for x in &all {
        // A closed memory points at its replacement, and both changes are in history.
        if x.subject.as_deref() == Some("counter") && !x.is_current() {
            let next = x.superseded_by.expect("closed without a successor");
            assert!(all.iter().any(|y| y.id == next));
            assert!(history
                .iter()
                .any(|h| h.memory_id == x.id && h.op == autodidact_memory::Op::Invalidate));
        }
        assert!(history
            .iter()
            .any(|h| h.memory_id == x.id && h.op == autodidact_memory::Op::Add));
    }
}
