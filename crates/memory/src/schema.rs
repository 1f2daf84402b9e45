//! The database layout. Bumping `VERSION` means adding a migration step in `migrate`.
use crate::error::{MemoryError, Result};
use rusqlite::Connection;
use std::path::Path;

pub const VERSION: i64 = 1;

const V1: &str = r#"
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    started_at INTEGER NOT NULL
);
CREATE TABLE turns (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    ext_id TEXT,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX turns_conversation ON turns(conversation_id);
CREATE TABLE memories (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL,
    norm TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('fact', 'preference', 'event', 'instruction')),
    subject TEXT,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    valid_from INTEGER NOT NULL,
    valid_until INTEGER,
    confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    superseded_by INTEGER REFERENCES memories(id) ON DELETE SET NULL
);
CREATE INDEX memories_current_norm ON memories(norm) WHERE valid_until IS NULL;
CREATE INDEX memories_current_subject ON memories(subject) WHERE valid_until IS NULL;
CREATE INDEX memories_superseded_by ON memories(superseded_by);
CREATE TABLE memory_sources (
    memory_id INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    turn_id INTEGER REFERENCES turns(id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX memory_sources_unique
    ON memory_sources(memory_id, conversation_id, coalesce(turn_id, -1));
CREATE INDEX memory_sources_conversation ON memory_sources(conversation_id);
CREATE TABLE history (
    id INTEGER PRIMARY KEY,
    memory_id INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    op TEXT NOT NULL,
    text TEXT NOT NULL,
    old_text TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX history_memory ON history(memory_id);
CREATE TABLE embeddings (
    memory_id INTEGER PRIMARY KEY REFERENCES memories(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vec BLOB NOT NULL
);
-- What was forgotten and when, never what it said: deletion is visible, not silent.
CREATE TABLE forget_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    what TEXT NOT NULL,
    target_id INTEGER,
    memories_removed INTEGER NOT NULL
);
-- External content: the index holds terms, not a second copy of the text. The triggers keep it in
-- step inside the writing transaction.
CREATE VIRTUAL TABLE memories_fts USING fts5(
    text, content = 'memories', content_rowid = 'id', tokenize = 'porter unicode61'
);
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE OF text ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
END;
"#;

/// Creates or upgrades the schema in one transaction.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(MemoryError::SchemaVersion {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    }
    if found == VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    if found < 1 {
        tx.execute_batch(V1)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}
