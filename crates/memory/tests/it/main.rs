//! Integration tests of the memory store through its public API.
mod crash;
mod crypt;
mod export;
mod forget;
mod ingest;
mod search;
mod store;

use autodidact_memory::UserMemory;

pub fn open(dir: &tempfile::TempDir, user: &str) -> UserMemory {
    UserMemory::open(dir.path(), user).unwrap()
}
