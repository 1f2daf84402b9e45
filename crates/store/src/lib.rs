//! The on-disk layout of `AUTODIDACT_HOME` (default `~/.autodidact`): the model registry, the
//! adapters and their metadata, and the directories other crates keep their own data in.
//!
//! ```
//! use autodidact_store::Store;
//! let home = tempfile::tempdir().unwrap();
//! let store = Store::at(home.path()).unwrap();
//! // Another crate's database lives in a directory the store hands out (created, owner-only).
//! let memory_dir = store.data_dir("memory").unwrap();
//! assert!(memory_dir.starts_with(home.path()));
//! assert!(store.adapters().names().is_empty());
//! ```
//!
//! Layout: `models.json` and `models/` (GGUF files, and the sentence encoder's directory, see
//! [`Store::pull_encoder`]), `adapters/NAME/` (see [`adapters`]),
//! `skills/` (user-written skill files), `tmp/` (work directories of unfinished pulls), and one
//! directory per data-owning crate from [`Store::data_dir`] (`memory/`, `improve/`, `history/`).
pub mod adapters;
mod encoder;
mod error;
mod fsutil;
pub mod models;

pub use adapters::{AdapterEntry, AdapterMeta, Adapters, FileStamp};
pub use encoder::ENCODER;
pub use error::StoreError;
pub use fsutil::{check_name, sha256_file, write_atomic};
pub use models::{
    display_name, Imported, ModelEntry, PullEvent, ResolvedModel, BASE_KEY, DEFAULT_MODEL, KNOWN,
};

use std::path::{Path, PathBuf};

/// A handle on one `AUTODIDACT_HOME`.
#[derive(Debug, Clone)]
pub struct Store {
    home: PathBuf,
}

impl Store {
    /// The store at `$AUTODIDACT_HOME`, or `~/.autodidact` when that is unset.
    pub fn open() -> Result<Store, StoreError> {
        let home = match std::env::var_os("AUTODIDACT_HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h),
            None => PathBuf::from(std::env::var_os("HOME").ok_or(StoreError::NoHome)?)
                .join(".autodidact"),
        };
        Store::at(home)
    }

    /// The store rooted at `home` (created if missing).
    pub fn at(home: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let home = home.into();
        create_private_dir(&home)?;
        Ok(Store { home })
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `home/NAME`, created if missing; owner-only on Unix.
    fn dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let d = self.home.join(name);
        create_private_dir(&d)?;
        Ok(d)
    }

    /// The directory a crate keeps its own data in (`memory`, `improve`, `history`, …): created
    /// if missing, readable by the owner only.
    pub fn data_dir(&self, component: &str) -> Result<PathBuf, StoreError> {
        check_name("data directory", component)?;
        self.dir(component)
    }

    /// The adapters directory.
    pub fn adapters(&self) -> Adapters {
        Adapters::new(self.home.join("adapters"))
    }

    /// Where users put their own skill files.
    pub fn skills_dir(&self) -> PathBuf {
        self.home.join("skills")
    }
}

/// Seconds since the Unix epoch (the `created` of metadata records).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn create_private_dir(d: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(d).map_err(|e| StoreError::io(d, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(d).map_err(|e| StoreError::io(d, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| StoreError::io(d, e))?;
        }
    }
    Ok(())
}
