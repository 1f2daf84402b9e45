//! Personal memory: one SQLite database per user that remembers, updates, invalidates and
//! truly forgets what the user said, and finds it again by words, meaning and recency.
//!
//! ```
//! use autodidact_memory::{Kind, NewMemory, Query, UserMemory};
//! let dir = tempfile::tempdir().unwrap();
//! let mut mem = UserMemory::open(dir.path(), "alice").unwrap();
//! let first = mem.remember(NewMemory::new("The user lives in Paris.", Kind::Fact)).unwrap();
//! // The same fact twice is one memory.
//! let again = mem.remember(NewMemory::new("the user lives in paris", Kind::Fact)).unwrap();
//! assert_eq!(first.id(), again.id());
//! let hits = mem.search(&Query::new("where does the user live?")).unwrap();
//! assert_eq!(hits[0].memory.text, "The user lives in Paris.");
//! mem.forget(first.id()).unwrap();
//! assert!(mem.search(&Query::new("Paris")).unwrap().is_empty());
//! ```
pub mod bench;
pub mod chat;
pub mod crypt;
pub mod embed;
mod error;
pub mod export;
pub mod extract;
pub mod ingest;
mod schema;
pub mod search;
mod store;
pub mod text;
pub mod time;
mod types;
mod vectors;

pub use crypt::{file_state, rekey, FileState, Passphrase};
pub use error::{MemoryError, Result};
pub use export::Export;
pub use extract::{Candidate, Extractor, ModelExtractor, RuleExtractor};
pub use search::{format_for_prompt, Hit, Query, Weights};
pub use store::{os_user, user_db_path, user_exists, validate_user_id, UserMemory, FORGOTTEN_TURN};
pub use types::{
    Applied, Conversation, Decision, Embedding, ForgetRecord, HistoryEntry, Kind, Memory,
    NewMemory, Op, Source, Turn,
};
pub use vectors::VectorIndex;

/// Turns texts into vectors for the read and write paths (a sentence encoder, or a chat model's
/// pooled hidden states). A trait so tests and callers without a model can leave it out.
pub trait Embedder {
    /// The name stored with each vector; vectors of different names are never compared.
    fn name(&self) -> &str;
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}
