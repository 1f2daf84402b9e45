use std::path::PathBuf;
use thiserror::Error;

/// Errors from the store. Each names the file or the name at fault; none names a CLI flag.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("neither AUTODIDACT_HOME nor HOME is set, so there is no place for the store")]
    NoHome,
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid {what}: {detail}; fix or delete it")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("{kind} name {name:?} is not allowed: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'")]
    BadName { kind: &'static str, name: String },
    #[error("unknown model {name:?}: give a path to a .gguf file or one of: {known}")]
    UnknownModel { name: String, known: String },
    #[error("model file {0} does not exist")]
    MissingModelFile(PathBuf),
    #[error("{path} is not a usable GGUF model: {source}")]
    NotAModel {
        path: PathBuf,
        #[source]
        source: autodidact_model::ModelError,
    },
    #[error("a different model is already registered as {name:?} (sha256 {existing}); choose another name or replace it explicitly")]
    ModelExists { name: String, existing: String },
    #[error("fetching {name}: {detail}")]
    Fetch { name: String, detail: String },
    #[error("checksum mismatch for {name}: got {got}, expected {expected}")]
    Checksum {
        name: String,
        got: String,
        expected: String,
    },
    #[error("no adapter named {0:?}")]
    UnknownAdapter(String),
    #[error("an adapter named {0:?} already exists")]
    AdapterExists(String),
    #[error("adapter {adapter:?} was trained on a different base model (sha256 {expected}), not this one ({found})")]
    BaseMismatch {
        adapter: String,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Model(#[from] autodidact_model::ModelError),
}

impl StoreError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
