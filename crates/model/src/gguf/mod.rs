//! GGUF files: metadata values, a zero-copy memory-mapped reader and an atomic writer.
mod read;
mod value;
mod write;

pub use read::{GgufFile, TensorInfo};
pub use value::{Array, Value};
pub use write::{write_atomic, GgufWriter, TensorData};

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const KEY_ALIGNMENT: &str = "general.alignment";
pub const KEY_ARCHITECTURE: &str = "general.architecture";
pub const KEY_NAME: &str = "general.name";
