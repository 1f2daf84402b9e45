use crate::open;
use autodidact_memory::{Embedding, Kind, NewMemory, Query, Source};

/// Every file of the database (main, WAL, shared memory, rollback journal) as bytes.
fn all_bytes(db: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for ext in ["sqlite3", "sqlite3-wal", "sqlite3-shm", "sqlite3-journal"] {
        if let Ok(b) = std::fs::read(db.with_extension(ext)) {
            out.extend(b);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

const SECRET: &str = "Zanzibarquux";

fn secret_vector() -> Vec<f32> {
    (0..16).map(|i| 0.123_456_7 + i as f32 * 0.031_25).collect()
}

fn vector_bytes() -> Vec<u8> {
    let n = secret_vector().iter().map(|x| x * x).sum::<f32>().sqrt();
    secret_vector()[..4]
        .iter()
        .flat_map(|x| (x / n).to_le_bytes())
        .collect()
}

#[test]
fn forgetting_a_conversation_removes_every_byte_derived_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    let keep = m
        .remember(NewMemory::new("The user likes sailing.", Kind::Preference))
        .unwrap()
        .id();
    let conv = m.add_conversation("trip", None).unwrap();
    let turn = m
        .add_turn(
            conv,
            Some("t1"),
            "user",
            &format!("I visited {SECRET} last spring."),
            None,
        )
        .unwrap();
    let src = Source {
        conversation: conv,
        turn: Some(turn),
    };
    let id = m
        .remember(NewMemory {
            source: Some(src),
            embedding: Some(Embedding {
                model: "test".into(),
                vector: secret_vector(),
            }),
            ..NewMemory::new(format!("The user visited {SECRET}."), Kind::Event)
        })
        .unwrap()
        .id();
    m.edit(id, &format!("The user visited {SECRET} in spring."), None)
        .unwrap();
    m.set_embedding(id, "test", &secret_vector()).unwrap();
    // The fact said again elsewhere is still derived from this conversation.
    let other = m.add_conversation("later", None).unwrap();
    m.remember(NewMemory {
        source: Some(Source {
            conversation: other,
            turn: None,
        }),
        ..NewMemory::new(format!("The user visited {SECRET}  in spring"), Kind::Event)
    })
    .unwrap();
    assert!(contains(&all_bytes(m.path()), SECRET.as_bytes()));
    assert!(contains(&all_bytes(m.path()), &vector_bytes()));

    assert_eq!(m.forget_conversation(conv).unwrap(), 1);

    assert!(m.search(&Query::new(SECRET)).unwrap().is_empty());
    assert!(m
        .history(None)
        .unwrap()
        .iter()
        .all(|h| !h.text.contains(SECRET)));
    assert_eq!(m.list(true).unwrap().len(), 1);
    assert_eq!(m.list(true).unwrap()[0].id, keep);
    assert_eq!(m.integrity_check().unwrap(), "ok");
    let bytes = all_bytes(m.path());
    assert!(
        !contains(&bytes, SECRET.as_bytes()),
        "the text is still on disk"
    );
    assert!(
        !contains(&bytes, SECRET.to_lowercase().as_bytes()),
        "index terms still on disk"
    );
    assert!(
        !contains(&bytes, &vector_bytes()),
        "the vector is still on disk"
    );
    assert_eq!(m.forget_log().unwrap()[0].what, "conversation");
    drop(m);
    // Also after a reopen (nothing was lurking in a WAL that a checkpoint brings back).
    let m = open(&dir, "u1");
    assert!(!contains(&all_bytes(m.path()), SECRET.as_bytes()));
}

#[test]
fn forgetting_one_memory_and_wiping() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    let id = m
        .remember(NewMemory::new(
            format!("The user's code word is {SECRET}."),
            Kind::Fact,
        ))
        .unwrap()
        .id();
    m.remember(NewMemory::new("The user plays chess.", Kind::Fact))
        .unwrap();
    m.forget(id).unwrap();
    assert!(!contains(&all_bytes(m.path()), SECRET.as_bytes()));
    assert!(!contains(
        &all_bytes(m.path()),
        SECRET.to_lowercase().as_bytes()
    ));
    assert_eq!(m.list(true).unwrap().len(), 1);
    assert!(m.forget(id).is_err());
    m.wipe().unwrap();
    assert!(!contains(&all_bytes(m.path()), b"chess"));
    assert_eq!(m.count(true).unwrap(), 0);
    assert_eq!(
        m.forget_log().unwrap().len(),
        1,
        "a wipe leaves one record that it happened"
    );
}

#[test]
fn forgetting_a_memory_clears_the_turn_it_was_learned_from() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    let conv = m.add_conversation("chat", None).unwrap();
    let said = m
        .add_turn(
            conv,
            None,
            "user",
            &format!("My code word is {SECRET} and I play chess."),
            None,
        )
        .unwrap();
    m.add_turn(conv, None, "assistant", &format!("Noted: {SECRET}."), None)
        .unwrap();
    let later = m
        .add_turn(conv, None, "user", "What is the weather like?", None)
        .unwrap();
    let src = Some(Source {
        conversation: conv,
        turn: Some(said),
    });
    let secret = m
        .remember(NewMemory {
            source: src,
            ..NewMemory::new(format!("The user's code word is {SECRET}."), Kind::Fact)
        })
        .unwrap()
        .id();
    let chess = m
        .remember(NewMemory {
            source: src,
            ..NewMemory::new("The user plays chess.", Kind::Fact)
        })
        .unwrap()
        .id();
    assert!(contains(&all_bytes(m.path()), SECRET.as_bytes()));
    assert_eq!(m.forget(secret).unwrap(), 2, "the turn and the reply to it");
    assert!(
        !contains(&all_bytes(m.path()), SECRET.as_bytes()),
        "the turn that said it is still on disk"
    );
    let turns = m.turns(conv).unwrap();
    assert_eq!(turns.len(), 3, "the turns keep their places");
    assert_eq!(turns[0].text, autodidact_memory::FORGOTTEN_TURN);
    assert_eq!(turns[1].text, autodidact_memory::FORGOTTEN_TURN);
    // The next user turn is not a reply to it and stays.
    assert_eq!(
        (turns[2].id, turns[2].text.as_str()),
        (later, "What is the weather like?")
    );
    // The other memory learned from the same turn stays, in its own words.
    assert_eq!(m.get(chess).unwrap().text, "The user plays chess.");
    // A memory with no source turn clears none.
    let bare = m
        .remember(NewMemory::new("The user likes tea.", Kind::Preference))
        .unwrap()
        .id();
    assert_eq!(m.forget(bare).unwrap(), 0);
}
