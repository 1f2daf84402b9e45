use thiserror::Error;

/// Errors from loading and running models. Each names the file, tensor or key at fault.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF file (magic {magic:02x?})")]
    BadMagic { path: String, magic: [u8; 4] },
    #[error("{path}: GGUF version {version} is not supported (2 and 3 are)")]
    BadVersion { path: String, version: u32 },
    #[error("{path}: truncated or malformed at byte {offset}: {what}")]
    Malformed {
        path: String,
        offset: u64,
        what: String,
    },
    #[error("{path}: tensor {name}: {what}")]
    BadTensor {
        path: String,
        name: String,
        what: String,
    },
    #[error("missing metadata key {0}")]
    MissingKey(String),
    #[error("metadata key {key} has type {found}, expected {expected}")]
    KeyType {
        key: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("unsupported architecture {0:?} (supported: gemma3, llama)")]
    UnsupportedArch(String),
    #[error("unsupported tokenizer {0:?} (supported: llama, gpt2)")]
    UnsupportedTokenizer(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("context full: {needed} positions needed, {capacity} available")]
    ContextFull { needed: usize, capacity: usize },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Kernel(#[from] autodidact_kernels::KernelError),
}
