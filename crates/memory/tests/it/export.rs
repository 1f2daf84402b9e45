use crate::open;
use autodidact_memory::{Embedding, Export, Kind, MemoryError, NewMemory, Source};

fn populated(dir: &tempfile::TempDir) -> autodidact_memory::UserMemory {
    let mut m = open(dir, "src");
    let c = m
        .add_conversation("first", Some(1_700_000_000_000))
        .unwrap();
    let t = m
        .add_turn(
            c,
            Some("a1"),
            "user",
            "I live in Oslo. I love skiing.",
            None,
        )
        .unwrap();
    let src = Some(Source {
        conversation: c,
        turn: Some(t),
    });
    m.remember(NewMemory {
        subject: Some("home".into()),
        source: src,
        embedding: Some(Embedding {
            model: "e".into(),
            vector: vec![0.1, 0.2, 0.3],
        }),
        ..NewMemory::new("The user lives in Oslo.", Kind::Fact)
    })
    .unwrap();
    m.remember(NewMemory {
        subject: Some("home".into()),
        ..NewMemory::new("The user lives in Bergen.", Kind::Fact)
    })
    .unwrap();
    let id = m
        .remember(NewMemory::new("The user loves skiing.", Kind::Preference))
        .unwrap()
        .id();
    m.edit(id, "The user loves cross-country skiing.", None)
        .unwrap();
    let gone = m
        .remember(NewMemory::new("Temporary thing.", Kind::Event))
        .unwrap()
        .id();
    m.forget(gone).unwrap();
    m
}

#[test]
fn export_import_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let m = populated(&dir);
    let e = m.export().unwrap();
    let json = serde_json::to_string_pretty(&e).unwrap();
    let mut n = open(&dir, "dst");
    n.import(&Export::from_json(&json).unwrap()).unwrap();
    let mut back = n.export().unwrap();
    assert_eq!(back.user, "dst");
    back.user = e.user.clone();
    assert_eq!(back, e);
    assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);
    // Search works on the imported copy (the FTS index was filled by the triggers).
    let hits = n.search(&autodidact_memory::Query::new("skiing")).unwrap();
    assert_eq!(hits.len(), 1);
}

#[test]
fn import_refuses_a_non_empty_store_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = populated(&dir);
    let e = m.export().unwrap();
    assert!(matches!(m.import(&e), Err(MemoryError::NotEmpty { .. })));
    assert!(Export::from_json("{\"format\": 1}").is_err());
    let mut broken = e.clone();
    broken.conversations.clear();
    let mut n = open(&dir, "dst");
    assert!(n.import(&broken).is_err());
    assert_eq!(
        n.count(true).unwrap(),
        0,
        "a failed import leaves nothing behind"
    );
}
