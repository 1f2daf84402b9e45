use crate::open;
use autodidact_memory::{Applied, Decision, Kind, MemoryError, NewMemory, Op, UserMemory};

fn slot(text: &str, subject: &str) -> NewMemory {
    NewMemory {
        subject: Some(subject.into()),
        ..NewMemory::new(text, Kind::Fact)
    }
}

#[test]
fn same_fact_twice_is_one_memory_and_reaffirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    let a = m
        .remember(NewMemory::new(
            "The user likes green tea.",
            Kind::Preference,
        ))
        .unwrap();
    let b = m
        .remember(NewMemory::new("the user LIKES green tea", Kind::Preference))
        .unwrap();
    assert_eq!(b, Applied::Reaffirmed { id: a.id() });
    assert_eq!(m.count(true).unwrap(), 1);
    let h = m.history(Some(a.id())).unwrap();
    assert_eq!(
        h.iter().map(|e| e.op).collect::<Vec<_>>(),
        [Op::Add, Op::Reaffirm]
    );
}

#[test]
fn contradiction_closes_the_old_one_and_keeps_it_in_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    let paris = m
        .remember(slot("The user lives in Paris.", "home"))
        .unwrap()
        .id();
    let lyon = m.remember(slot("The user lives in Lyon.", "home")).unwrap();
    assert_eq!(
        lyon,
        Applied::Superseded {
            old: paris,
            new: lyon.id()
        }
    );
    let current = m.list(false).unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].text, "The user lives in Lyon.");
    let old = m.get(paris).unwrap();
    assert!(old.valid_until.is_some());
    assert_eq!(old.superseded_by, Some(lyon.id()));
    assert_eq!(m.list(true).unwrap().len(), 2);
    let ops: Vec<Op> = m
        .history(Some(paris))
        .unwrap()
        .iter()
        .map(|e| e.op)
        .collect();
    assert_eq!(ops, [Op::Add, Op::Invalidate]);
    // Moving back is a new validity interval, not a resurrection of the old row.
    let back = m
        .remember(slot("The user lives in Paris.", "home"))
        .unwrap();
    assert!(matches!(back, Applied::Superseded { old, .. } if old == lyon.id()));
}

#[test]
fn refinement_updates_in_place_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    let id = m
        .remember(slot("The user works at Acme", "employer"))
        .unwrap()
        .id();
    let d = m
        .decide(&slot("The user works at Acme Robotics", "employer"))
        .unwrap();
    assert_eq!(d, Decision::Update { id });
    m.apply(slot("The user works at Acme Robotics", "employer"), d)
        .unwrap();
    assert_eq!(m.get(id).unwrap().text, "The user works at Acme Robotics");
    let h = m.history(Some(id)).unwrap();
    assert_eq!(h[1].op, Op::Update);
    assert_eq!(h[1].old_text.as_deref(), Some("The user works at Acme"));
}

#[test]
fn edit_and_invalidate_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    let id = m
        .remember(NewMemory::new("The user has a dog.", Kind::Fact))
        .unwrap()
        .id();
    m.edit(id, "The user has two dogs.", Some(Kind::Fact))
        .unwrap();
    m.invalidate(id, None, "the user said so").unwrap();
    assert!(m.list(false).unwrap().is_empty());
    let h = m.history(Some(id)).unwrap();
    assert_eq!(
        h.iter().map(|e| e.op).collect::<Vec<_>>(),
        [Op::Add, Op::Edit, Op::Invalidate]
    );
    assert_eq!(h[1].old_text.as_deref(), Some("The user has a dog."));
    assert!(matches!(
        m.edit(99, "x", None),
        Err(MemoryError::NoSuchMemory { id: 99 })
    ));
    assert!(matches!(
        m.edit(id, "  ", None),
        Err(MemoryError::EmptyText)
    ));
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "",
        "../x",
        "a/b",
        ".hidden",
        "-rf",
        "é",
        "a b",
        &"x".repeat(129),
    ] {
        assert!(
            matches!(
                UserMemory::open(dir.path(), bad),
                Err(MemoryError::InvalidUserId { .. })
            ),
            "{bad:?}"
        );
    }
    let mut m = open(&dir, "u1");
    assert!(matches!(
        m.remember(NewMemory::new("...", Kind::Fact)),
        Err(MemoryError::EmptyText)
    ));
    let mut n = NewMemory::new("x y", Kind::Fact);
    n.confidence = 2.0;
    assert!(matches!(
        m.remember(n),
        Err(MemoryError::BadConfidence { .. })
    ));
    assert!(Kind::parse("opinion").is_err());
}

#[cfg(unix)]
#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("memory");
    let mut m = UserMemory::open(&sub, "u1").unwrap();
    m.remember(NewMemory::new("The user is private.", Kind::Fact))
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sub), 0o700);
    assert_eq!(mode(m.path()), 0o600);
    let wal = m.path().with_extension("sqlite3-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600);
}

#[test]
fn users_are_separate_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(&dir, "alice");
    let b = open(&dir, "bob");
    a.remember(NewMemory::new("Alice's secret is tulips.", Kind::Fact))
        .unwrap();
    assert_ne!(a.path(), b.path());
    assert!(b.list(true).unwrap().is_empty());
    assert!(b
        .search(&autodidact_memory::Query::new("secret tulips"))
        .unwrap()
        .is_empty());
    assert!(b.export().unwrap().memories.is_empty());
    assert!(matches!(b.get(1), Err(MemoryError::NoSuchMemory { .. })));
}
