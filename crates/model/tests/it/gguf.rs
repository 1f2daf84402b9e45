//! GGUF round trips and malformed files: every corruption is an error, never a panic.
use crate::tiny::tiny_model;
use autodidact_kernels::GgmlType;
use autodidact_model::gguf::{GgufFile, Value};
use autodidact_model::{Arch, Model, ModelError};

#[test]
fn written_files_read_back_identically() {
    let bytes = tiny_model(Arch::Llama, GgmlType::Q4K, 1);
    let g = GgufFile::from_bytes("t", &bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(
        g.get("general.architecture"),
        Some(&Value::String("llama".into()))
    );
    assert_eq!(
        g.tensor_info("blk.0.attn_q.weight").unwrap().ty,
        GgmlType::Q4K
    );
    let dir = std::env::temp_dir().join(format!("ad-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let m = Model::load(&path).unwrap();
    assert_eq!(m.config.n_layer, 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_and_corrupted_files_are_clear_errors() {
    let bytes = tiny_model(Arch::Gemma3, GgmlType::Q8_0, 2);
    // Every truncation point in the header, and a sample through the data.
    let header_end = GgufFile::from_bytes("t", &bytes).unwrap().data_offset as usize;
    let cuts = (0..header_end).chain((header_end..bytes.len()).step_by(997));
    for cut in cuts {
        let r = GgufFile::from_bytes("t", &bytes[..cut]).and_then(Model::from_gguf);
        assert!(
            r.is_err(),
            "truncated at {cut} of {} still loaded",
            bytes.len()
        );
    }
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(matches!(
        GgufFile::from_bytes("t", &bad),
        Err(ModelError::BadMagic { .. })
    ));
    let mut bad = bytes.clone();
    bad[4] = 9;
    assert!(matches!(
        GgufFile::from_bytes("t", &bad),
        Err(ModelError::BadVersion { .. })
    ));
    // Random byte flips: any outcome but a panic.
    let mut s = 99u64;
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..4 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            let i = (s >> 33) as usize % header_end;
            b[i] = (s >> 13) as u8;
        }
        let _ = GgufFile::from_bytes("t", &b).and_then(Model::from_gguf);
    }
}

#[test]
fn missing_file_names_the_path() {
    let e = GgufFile::open("/nonexistent/model.gguf").err().unwrap();
    assert!(e.to_string().contains("/nonexistent/model.gguf"));
}
