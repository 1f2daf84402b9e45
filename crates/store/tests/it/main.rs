//! The store through its public API, on tiny random GGUF models in a temporary home.
use autodidact_kernels::GgmlType;
use autodidact_model::testing::tiny_model;
use autodidact_model::{Arch, LoraAdapter, Model, Target};
use autodidact_store::{AdapterMeta, Imported, Store, StoreError};

fn tiny_file(dir: &std::path::Path, name: &str, seed: u64) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, tiny_model(Arch::Gemma3, GgmlType::F32, seed)).unwrap();
    p
}

#[test]
fn importing_a_different_file_under_a_taken_name_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let st = Store::at(home.path()).unwrap();
    let a = tiny_file(src.path(), "tiny.gguf", 1);
    let (name, what) = st.import_model(&a, None, false, &mut |_| {}).unwrap();
    assert_eq!((name.as_str(), what), ("tiny", Imported::Added));
    // The same bytes again: nothing changes.
    let (_, what) = st.import_model(&a, None, false, &mut |_| {}).unwrap();
    assert_eq!(what, Imported::AlreadyThere);
    // Other bytes, same stem: refused, and the registered file is untouched.
    let other = tempfile::tempdir().unwrap();
    let b = tiny_file(other.path(), "tiny.gguf", 2);
    let before = st.models().unwrap()["tiny"].clone();
    match st.import_model(&b, None, false, &mut |_| {}) {
        Err(StoreError::ModelExists { name, existing }) => {
            assert_eq!(name, "tiny");
            assert_eq!(existing, before.sha256);
        }
        other => panic!("expected ModelExists, got {other:?}"),
    }
    assert_eq!(st.models().unwrap()["tiny"], before);
    // Asked for explicitly, it is replaced and the caller is told what was there.
    let (_, what) = st.import_model(&b, None, true, &mut |_| {}).unwrap();
    assert_eq!(
        what,
        Imported::Replaced {
            old_sha256: before.sha256.clone()
        }
    );
    assert_ne!(st.models().unwrap()["tiny"].sha256, before.sha256);
}

#[test]
fn a_file_that_is_not_a_model_is_not_imported() {
    let home = tempfile::tempdir().unwrap();
    let st = Store::at(home.path()).unwrap();
    let p = home.path().join("junk.gguf");
    std::fs::write(&p, b"not a model").unwrap();
    assert!(matches!(
        st.import_model(&p, None, false, &mut |_| {}),
        Err(StoreError::NotAModel { .. })
    ));
    assert!(st.models().unwrap().is_empty());
}

#[test]
fn resolving_finds_names_paths_and_says_what_is_known() {
    let home = tempfile::tempdir().unwrap();
    let st = Store::at(home.path()).unwrap();
    let p = tiny_file(home.path(), "x.gguf", 3);
    let (_, _) = st
        .import_model(&p, Some("mine"), false, &mut |_| {})
        .unwrap();
    let r = st.resolve_model("mine").unwrap();
    assert_eq!(r.name, "mine");
    assert!(r.sha256.is_some());
    let by_path = st.resolve_model(p.to_str().unwrap()).unwrap();
    assert_eq!(by_path.name, "x");
    match st.resolve_model("nope") {
        Err(StoreError::UnknownModel { known, .. }) => {
            assert!(known.contains("mine") && known.contains("gemma3-270m"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        st.resolve_model("/no/such/file.gguf"),
        Err(StoreError::MissingModelFile(_))
    ));
}

#[test]
fn a_corrupt_registry_is_an_error_naming_the_file() {
    let home = tempfile::tempdir().unwrap();
    let st = Store::at(home.path()).unwrap();
    std::fs::write(home.path().join("models.json"), b"{not json").unwrap();
    match st.models() {
        Err(e @ StoreError::Corrupt { .. }) => assert!(e.to_string().contains("models.json")),
        other => panic!("{other:?}"),
    }
}

fn tiny_adapter() -> (Model, LoraAdapter) {
    let d = tempfile::tempdir().unwrap();
    let m = Model::load(tiny_file(d.path(), "m.gguf", 4)).unwrap();
    let ad = LoraAdapter::zeros(&m.config, 2, 4.0, &[Target::Q, Target::V]);
    (m, ad)
}

fn meta(name: &str) -> AdapterMeta {
    AdapterMeta {
        name: name.into(),
        base_model: "tiny".into(),
        base_sha256: Some("aa".into()),
        arch: "gemma3".into(),
        rank: 2,
        alpha: 4.0,
        method: "sft".into(),
        ..AdapterMeta::default()
    }
}

#[test]
fn adapters_round_trip_and_report_unfinished_runs_truthfully() {
    let home = tempfile::tempdir().unwrap();
    let st = Store::at(home.path()).unwrap();
    let ads = st.adapters();
    let (m, ad) = tiny_adapter();
    assert!(matches!(ads.meta("a"), Err(StoreError::UnknownAdapter(_))));
    ads.save(&ad, &meta("a")).unwrap();
    assert_eq!(ads.names(), vec!["a"]);
    assert_eq!(ads.meta("a").unwrap(), meta("a"));
    let loaded = ads.load("a", &m.config).unwrap();
    assert_eq!(loaded.rank(), 2);
    // A retrain that was interrupted: the old adapter plus a checkpoint.
    std::fs::write(ads.checkpoint_file("a").unwrap(), b"ck").unwrap();
    let ck_b = ads.checkpoint_file("b").unwrap();
    std::fs::create_dir_all(ck_b.parent().unwrap()).unwrap();
    std::fs::write(&ck_b, b"ck").unwrap();
    let e = ads.entries();
    assert_eq!(e.len(), 2);
    assert!(e[0].meta.is_some() && e[0].unfinished_run);
    assert!(e[1].meta.is_none() && e[1].unfinished_run);
    assert_eq!(ads.names(), vec!["a"], "only finished adapters are served");
    // Finishing the run replaces the adapter and drops the checkpoint.
    ads.save(&ad, &meta("a")).unwrap();
    assert!(!ads.checkpoint_file("a").unwrap().exists());
    ads.remove("b").unwrap();
    ads.remove("a").unwrap();
    assert!(ads.entries().is_empty());
    assert!(matches!(
        ads.remove("a"),
        Err(StoreError::UnknownAdapter(_))
    ));
}

#[test]
fn bad_adapter_metadata_is_corrupt_not_unknown() {
    let home = tempfile::tempdir().unwrap();
    let st = Store::at(home.path()).unwrap();
    let ads = st.adapters();
    let (_, ad) = tiny_adapter();
    ads.save(&ad, &meta("a")).unwrap();
    std::fs::write(ads.path("a").unwrap().join("meta.json"), b"[1,").unwrap();
    assert!(matches!(ads.meta("a"), Err(StoreError::Corrupt { .. })));
}

#[test]
fn names_that_could_escape_the_store_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let st = Store::at(home.path()).unwrap();
    for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(65)] {
        assert!(matches!(
            st.adapters().path(bad),
            Err(StoreError::BadName { .. })
        ));
        assert!(st.data_dir(bad).is_err());
    }
}

#[test]
fn base_checks_refuse_a_different_base() {
    let m = meta("a");
    m.check_base("aa").unwrap();
    assert!(matches!(
        m.check_base("bb"),
        Err(StoreError::BaseMismatch { .. })
    ));
    AdapterMeta::default().check_base("anything").unwrap();
}

#[cfg(unix)]
#[test]
fn data_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let st = Store::at(home.path()).unwrap();
    let d = st.data_dir("memory").unwrap();
    let mode = std::fs::metadata(&d).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}
