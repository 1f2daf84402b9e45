use std::path::PathBuf;

/// Everything the memory store can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "invalid user id {id:?}: use 1 to 128 characters from a-z, A-Z, 0-9, '_', '-', '.', '@' \
         and '+', starting with a letter, digit or '_'"
    )]
    InvalidUserId { id: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening memory database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("memory database {path} is encrypted: it opens only with its passphrase")]
    Encrypted { path: PathBuf },
    #[error(
        "memory database {path} is not encrypted: encrypt it before opening it with a passphrase"
    )]
    NotEncrypted { path: PathBuf },
    #[error("the passphrase does not open memory database {path} (or the file is damaged)")]
    WrongPassphrase { path: PathBuf },
    #[error("a passphrase cannot be empty")]
    EmptyPassphrase,
    #[error("a passphrase cannot have the form x'…' (SQLCipher would take it as a raw key)")]
    RawKeyPassphrase,
    #[error("memory database {path} is open elsewhere (a running serve or run): stop it first")]
    InUse { path: PathBuf },
    #[error("no memory database at {path}")]
    NoStore { path: PathBuf },
    #[error("memory database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("memory database {path} has schema version {found}; this build understands up to {supported}")]
    SchemaVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("no memory with id {id}")]
    NoSuchMemory { id: i64 },
    #[error("no conversation with id {id}")]
    NoSuchConversation { id: i64 },
    #[error("no turn with id {id} in conversation {conversation}")]
    NoSuchTurn { id: i64, conversation: i64 },
    #[error("unknown memory kind {kind:?}: expected fact, preference, event or instruction")]
    BadKind { kind: String },
    #[error("a memory needs some text")]
    EmptyText,
    #[error("confidence {value} is outside 0..=1")]
    BadConfidence { value: f32 },
    #[error("embedding has {got} dimensions, the store holds {expected}-dimensional vectors")]
    DimMismatch { expected: usize, got: usize },
    #[error("embedding contains a non-finite value or is all zeros")]
    BadEmbedding,
    #[error("{what} is not valid JSON for it: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{what}: {message}")]
    BadInput { what: &'static str, message: String },
    #[error("cannot import into a store that already holds {memories} memories and {conversations} conversations; wipe it first")]
    NotEmpty { memories: u64, conversations: u64 },
    #[error("model-based extraction failed: {message}")]
    Extract { message: String },
    #[error("embedding failed: {message}")]
    Embed { message: String },
}

pub type Result<T, E = MemoryError> = std::result::Result<T, E>;
