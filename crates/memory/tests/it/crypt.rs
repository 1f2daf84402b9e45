//! Encryption at rest: what an encrypted store's files reveal without the passphrase, and
//! how wrong, missing and changed passphrases are told apart.
use autodidact_memory::{
    file_state, rekey, user_db_path, FileState, Kind, MemoryError, NewMemory, Passphrase, Query,
    UserMemory,
};
use std::path::Path;

const SECRET: &str = "zanzibar marmalade";

/// Every byte of the user's files (database, and its WAL and shared memory if present).
fn all_bytes(dir: &Path, user: &str) -> Vec<u8> {
    let db = user_db_path(dir, user).unwrap();
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", db.display());
        if let Ok(b) = std::fs::read(p) {
            out.extend(b);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_encrypted_store_reveals_nothing_without_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let key = Passphrase::new("correct horse battery staple").unwrap();
    {
        let mut m = UserMemory::open_with(dir.path(), "alice", Some(&key)).unwrap();
        m.remember(NewMemory::new(
            format!("The user's secret recipe is {SECRET}."),
            Kind::Fact,
        ))
        .unwrap();
        // Still open: what is on disk now, WAL included, must be ciphertext too.
        let bytes = all_bytes(dir.path(), "alice");
        assert!(!contains(&bytes, SECRET.as_bytes()));
        assert!(!contains(&bytes, b"zanzibar"));
    }
    let bytes = all_bytes(dir.path(), "alice");
    assert!(bytes.len() > 4096, "the store holds pages");
    for needle in [
        &b"zanzibar"[..],
        b"SQLite format 3",
        b"CREATE TABLE",
        b"memories",
    ] {
        assert!(
            !contains(&bytes, needle),
            "{:?} in the files",
            String::from_utf8_lossy(needle)
        );
    }
    let db = user_db_path(dir.path(), "alice").unwrap();
    assert_eq!(file_state(&db).unwrap(), FileState::Encrypted);

    // Without a passphrase, with a wrong one: a clear error, and nothing read.
    assert!(matches!(
        UserMemory::open(dir.path(), "alice"),
        Err(MemoryError::Encrypted { .. })
    ));
    let wrong = Passphrase::new("correct horse battery stapler").unwrap();
    assert!(matches!(
        UserMemory::open_with(dir.path(), "alice", Some(&wrong)),
        Err(MemoryError::WrongPassphrase { .. })
    ));
    // With it: everything is there, and search works (FTS5 inside the encrypted file).
    let m = UserMemory::open_with(dir.path(), "alice", Some(&key)).unwrap();
    let hits = m.search(&Query::new("secret recipe")).unwrap();
    assert!(hits[0].memory.text.contains(SECRET));
    assert_eq!(m.integrity_check().unwrap(), "ok");
    assert!(Passphrase::new("").is_err());
    assert!(matches!(
        Passphrase::new("x'2DD29CA851E7B56E4697B0E1F08507293D761A05CE4D1B628663F411A8086D99'"),
        Err(MemoryError::RawKeyPassphrase)
    ));
    assert_eq!(format!("{key:?}"), "Passphrase(…)");
}

#[test]
fn a_plain_store_is_encrypted_rekeyed_and_decrypted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let mut m = UserMemory::open(dir.path(), "bob").unwrap();
        let a = m
            .remember(NewMemory::new(
                format!("The user likes {SECRET}."),
                Kind::Preference,
            ))
            .unwrap();
        m.edit(a.id(), &format!("The user loves {SECRET}."), None)
            .unwrap();
        a.id()
    };
    let before = all_bytes(dir.path(), "bob");
    assert!(contains(&before, b"zanzibar"), "a plain store is plain");
    let db = user_db_path(dir.path(), "bob").unwrap();
    let k1 = Passphrase::new("first").unwrap();
    let k2 = Passphrase::new("second").unwrap();
    // A passphrase on a plain store is refused rather than taken as wrong.
    assert!(matches!(
        UserMemory::open_with(dir.path(), "bob", Some(&k1)),
        Err(MemoryError::NotEncrypted { .. })
    ));
    rekey(dir.path(), "bob", None, Some(&k1)).unwrap();
    assert_eq!(file_state(&db).unwrap(), FileState::Encrypted);
    assert!(!contains(&all_bytes(dir.path(), "bob"), b"zanzibar"));
    // Nothing is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(names, vec!["bob.sqlite3".to_string()]);
    rekey(dir.path(), "bob", Some(&k1), Some(&k2)).unwrap();
    assert!(matches!(
        UserMemory::open_with(dir.path(), "bob", Some(&k1)),
        Err(MemoryError::WrongPassphrase { .. })
    ));
    {
        let m = UserMemory::open_with(dir.path(), "bob", Some(&k2)).unwrap();
        assert_eq!(m.get(id).unwrap().text, format!("The user loves {SECRET}."));
        // The history came along.
        assert_eq!(m.history(Some(id)).unwrap().len(), 2);
    }
    rekey(dir.path(), "bob", Some(&k2), None).unwrap();
    assert_eq!(file_state(&db).unwrap(), FileState::Plain);
    let m = UserMemory::open(dir.path(), "bob").unwrap();
    assert_eq!(m.get(id).unwrap().text, format!("The user loves {SECRET}."));
    assert!(matches!(
        rekey(dir.path(), "nobody", None, Some(&k1)),
        Err(MemoryError::NoStore { .. })
    ));
}

#[test]
fn a_store_open_elsewhere_is_not_rekeyed() {
    let dir = tempfile::tempdir().unwrap();
    let mut other = UserMemory::open(dir.path(), "carol").unwrap();
    other
        .remember(NewMemory::new(
            format!("The user hums {SECRET}."),
            Kind::Fact,
        ))
        .unwrap();
    let k = Passphrase::new("k").unwrap();
    assert!(matches!(
        rekey(dir.path(), "carol", None, Some(&k)),
        Err(MemoryError::InUse { .. })
    ));
    // The other connection goes on writing to the same, still plain, file; nothing is left
    // beside it.
    other
        .remember(NewMemory::new("The user naps at noon.", Kind::Fact))
        .unwrap();
    drop(other);
    let m = UserMemory::open(dir.path(), "carol").unwrap();
    assert_eq!(m.list(false).unwrap().len(), 2);
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("rekey")));
    drop(m);
    rekey(dir.path(), "carol", None, Some(&k)).unwrap();
    let m = UserMemory::open_with(dir.path(), "carol", Some(&k)).unwrap();
    assert_eq!(m.list(false).unwrap().len(), 2);
}
