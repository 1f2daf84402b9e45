//! `autodidact memory …` through the real binary, in a temporary AUTODIDACT_HOME.
use serde_json::Value;
use std::process::Output;

struct Home(tempfile::TempDir);

impl Home {
    fn new() -> Self {
        Home(tempfile::tempdir().unwrap())
    }

    fn run(&self, user: &str, args: &[&str]) -> Output {
        self.run_with(user, args, &[])
    }

    fn run_with(&self, user: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = crate::bin();
        c.env("AUTODIDACT_HOME", self.0.path())
            .env_remove("AUTODIDACT_USER")
            .env_remove("AUTODIDACT_MEMORY_KEY")
            .env_remove("AUTODIDACT_MEMORY_KEY_FILE");
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(["memory", "--user", user])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, user: &str, args: &[&str]) -> String {
        let out = self.run(user, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, user: &str, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(user, args)).unwrap()
    }
}

#[test]
fn add_list_search_edit_history_forget() {
    let h = Home::new();
    h.ok("ann", &["add", "The user keeps bees.", "--kind", "fact"]);
    let again: Value = serde_json::from_str(&h.ok("ann", &["add", "the user keeps bees"])).unwrap();
    assert_eq!(again["op"], "reaffirmed");
    h.ok(
        "ann",
        &[
            "add",
            "The user prefers tea to coffee.",
            "--kind",
            "preference",
        ],
    );
    let list = h.json("ann", &["list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["text"], "The user keeps bees.");
    assert!(list[0]["valid_until"].is_null());
    let hits = h.json("ann", &["search", "bees", "--json"]);
    assert_eq!(hits[0]["id"], list[0]["id"]);
    assert!(hits[0]["score"].as_f64().unwrap() > 0.0);
    let id = list[0]["id"].to_string();
    h.ok("ann", &["edit", &id, "The user keeps three hives of bees."]);
    let hist = h.json("ann", &["history", &id, "--json"]);
    let ops: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["add", "reaffirm", "edit"]);
    h.ok("ann", &["forget", &id]);
    assert!(h
        .json("ann", &["search", "bees", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    assert!(h
        .json("ann", &["history", "--json"])
        .to_string()
        .find("hives")
        .is_none());
}

#[test]
fn users_do_not_see_each_other() {
    let h = Home::new();
    h.ok("alice", &["add", "Alice's locker code is 4711."]);
    assert!(h
        .json("bob", &["search", "locker code 4711", "--all", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    assert!(h
        .json("bob", &["list", "--all", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    assert!(!h.ok("bob", &["export"]).contains("4711"));
    let out = h.run("../alice", &["list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid user id"));
}

#[test]
fn ingest_export_import_wipe() {
    let h = Home::new();
    let file = h.0.path().join("past.json");
    std::fs::write(
        &file,
        r#"{"sessions": [
          {"date": "2024-01-01", "turns": [{"id": "1", "speaker": "user", "text": "I live in Oslo. I'm allergic to cats."}]},
          {"date": "2024-06-01", "turns": [{"id": "2", "speaker": "user", "text": "I moved to Bergen."}]}
        ]}"#,
    )
    .unwrap();
    let stats: Value =
        serde_json::from_str(&h.ok("kari", &["ingest", file.to_str().unwrap()])).unwrap();
    assert_eq!(stats["superseded"], 1);
    let hits = h.json("kari", &["search", "where does she live", "--json"]);
    assert_eq!(hits[0]["text"], "The user lives in Bergen.");
    assert_eq!(hits[0]["sources"][0]["turn"], 2);
    let hist = h.json("kari", &["search", "live", "--all", "--json"]);
    assert_eq!(hist.as_array().unwrap().len(), 2);

    let export = h.0.path().join("export.json");
    h.ok("kari", &["export", "--out", export.to_str().unwrap()]);
    h.ok("kari2", &["import", export.to_str().unwrap()]);
    assert_eq!(
        h.json("kari2", &["list", "--all", "--json"]),
        h.json("kari", &["list", "--all", "--json"])
    );
    let refused = h.run("kari2", &["import", export.to_str().unwrap()]);
    assert!(!refused.status.success());

    assert!(
        !h.run("kari", &["wipe"]).status.success(),
        "wipe needs --yes"
    );
    h.ok("kari", &["wipe", "--yes"]);
    assert!(h
        .json("kari", &["list", "--all", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    let bad = h.run("kari", &["ingest", export.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not valid JSON"));
}

#[test]
fn encrypt_lock_rekey_and_decrypt_a_store() {
    let h = Home::new();
    h.ok("eve", &["add", "The user's locker code is 4711-quince."]);
    let key = [("AUTODIDACT_MEMORY_KEY", "open sesame")];
    let out = h.run_with("eve", &["encrypt"], &key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = h.0.path().join("memory/eve.sqlite3");
    let bytes = std::fs::read(&db).unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"quince"));
    assert!(!bytes.starts_with(b"SQLite format 3"));
    // Locked without the passphrase or with a wrong one: an error that says what to set, and
    // nothing printed.
    for env in [&[][..], &[("AUTODIDACT_MEMORY_KEY", "open sesam")][..]] {
        let out = h.run_with("eve", &["list"], env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty());
        assert!(
            err.contains("AUTODIDACT_MEMORY_KEY") && !err.contains("ERROR CORE"),
            "{err}"
        );
    }
    // Both ways of giving it at once: refused rather than one silently winning.
    let both = [
        ("AUTODIDACT_MEMORY_KEY", "open sesame"),
        ("AUTODIDACT_MEMORY_KEY_FILE", "/nonexistent"),
    ];
    let out = h.run_with("eve", &["list"], &both);
    assert!(String::from_utf8_lossy(&out.stderr).contains("set one"));
    let listed = h.run_with("eve", &["list"], &key);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("4711-quince"));
    // A new passphrase from a file; the old one no longer opens it.
    let f = h.0.path().join("new-key");
    std::fs::write(&f, "second secret\n").unwrap();
    let out = h.run_with(
        "eve",
        &["rekey", "--new-key-file", f.to_str().unwrap()],
        &key,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!h.run_with("eve", &["list"], &key).status.success());
    let by_file = [("AUTODIDACT_MEMORY_KEY_FILE", f.to_str().unwrap())];
    let out = h.run_with("eve", &["decrypt"], &by_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h.ok("eve", &["list"]).contains("4711-quince"));
}
