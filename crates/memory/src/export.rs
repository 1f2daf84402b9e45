//! Complete JSON export, and import that restores it exactly (same ids, times, history, vectors).
use crate::error::{MemoryError, Result};
use crate::store::UserMemory;
use crate::types::{Conversation, Embedding, ForgetRecord, HistoryEntry, Memory, Turn};
use crate::vectors::{normalized, to_blob};
use rusqlite::params;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "autodidact-memory";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEmbedding {
    pub memory_id: i64,
    #[serde(flatten)]
    pub embedding: Embedding,
}

/// Everything a user's store holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub format: String,
    pub version: u32,
    pub user: String,
    pub conversations: Vec<Conversation>,
    pub turns: Vec<Turn>,
    /// Closed memories included; each carries its sources.
    pub memories: Vec<Memory>,
    pub history: Vec<HistoryEntry>,
    pub embeddings: Vec<StoredEmbedding>,
    pub forget_log: Vec<ForgetRecord>,
}

impl Export {
    pub fn from_json(text: &str) -> Result<Export> {
        let e: Export = serde_json::from_str(text).map_err(|source| MemoryError::Json {
            what: "a memory export",
            source,
        })?;
        if e.format != FORMAT || e.version > FORMAT_VERSION {
            return Err(MemoryError::BadInput {
                what: "memory export",
                message: format!(
                    "format {:?} version {} (this build reads {FORMAT:?} up to version {FORMAT_VERSION})",
                    e.format, e.version
                ),
            });
        }
        Ok(e)
    }
}

fn bad_export(message: String) -> MemoryError {
    MemoryError::BadInput {
        what: "memory export",
        message,
    }
}

impl Export {
    /// The references an export must keep: unique ids, texts, supersede links to other memories
    /// of the file (no cycles), embeddings and sources of memories and conversations it holds.
    pub fn check(&self) -> Result<()> {
        use std::collections::{HashMap, HashSet};
        let mut ids = HashSet::new();
        for m in &self.memories {
            if !ids.insert(m.id) {
                return Err(bad_export(format!("memory id {} appears twice", m.id)));
            }
            if crate::text::normalize(&m.text).is_empty() {
                return Err(bad_export(format!("memory {} has no text", m.id)));
            }
        }
        let convs: HashSet<i64> = self.conversations.iter().map(|c| c.id).collect();
        if convs.len() != self.conversations.len() {
            return Err(bad_export("a conversation id appears twice".into()));
        }
        let next: HashMap<i64, i64> = self
            .memories
            .iter()
            .filter_map(|m| m.superseded_by.map(|s| (m.id, s)))
            .collect();
        for (&id, &to) in &next {
            if !ids.contains(&to) {
                return Err(bad_export(format!(
                    "memory {id} is superseded by {to}, which the file does not hold"
                )));
            }
            // Following the links from here must end.
            let (mut at, mut steps) = (to, 0);
            while let Some(&n) = next.get(&at) {
                at = n;
                steps += 1;
                if at == id || steps > next.len() {
                    return Err(bad_export(format!("memory {id} supersedes itself")));
                }
            }
        }
        for m in &self.memories {
            if let Some(s) = m.sources.iter().find(|s| !convs.contains(&s.conversation)) {
                return Err(bad_export(format!(
                    "memory {} comes from conversation {}, which the file does not hold",
                    m.id, s.conversation
                )));
            }
        }
        for t in &self.turns {
            if !convs.contains(&t.conversation_id) {
                return Err(bad_export(format!(
                    "turn {} belongs to conversation {}, which the file does not hold",
                    t.id, t.conversation_id
                )));
            }
        }
        let mut embedded = HashSet::new();
        for v in &self.embeddings {
            if !ids.contains(&v.memory_id) || !embedded.insert(v.memory_id) {
                return Err(bad_export(format!(
                    "an embedding names memory {}, which is missing or has another",
                    v.memory_id
                )));
            }
        }
        Ok(())
    }
}

impl UserMemory {
    pub fn export(&self) -> Result<Export> {
        let conversations = self.conversations()?;
        let mut turns = Vec::new();
        for c in &conversations {
            turns.extend(self.turns(c.id)?);
        }
        let mut embeddings = Vec::new();
        let memories = self.list(true)?;
        for m in &memories {
            if let Some((model, vector)) = self.embedding(m.id)? {
                embeddings.push(StoredEmbedding {
                    memory_id: m.id,
                    embedding: Embedding { model, vector },
                });
            }
        }
        Ok(Export {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            user: self.user().to_string(),
            conversations,
            turns,
            memories,
            history: self.history(None)?,
            embeddings,
            forget_log: self.forget_log()?,
        })
    }

    /// Restores `e` into this (empty) store in one transaction: all of it or none of it. The
    /// export's user name is not checked, so a user can move their memories to a new name.
    pub fn import(&mut self, e: &Export) -> Result<()> {
        let (memories, conversations) = (self.count(true)?, self.conversations()?.len() as u64);
        if memories > 0 || conversations > 0 {
            return Err(MemoryError::NotEmpty {
                memories,
                conversations,
            });
        }
        e.check()?;
        // What the checks above did not foresee still refuses the file as a whole, named as its
        // fault rather than the store's (the transaction leaves nothing behind).
        self.import_checked(e).map_err(|err| match err {
            MemoryError::Sql(rusqlite::Error::SqliteFailure(f, m))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                bad_export(m.unwrap_or_else(|| "it breaks a constraint of the store".into()))
            }
            other => other,
        })
    }

    fn import_checked(&mut self, e: &Export) -> Result<()> {
        let tx = self.conn.transaction()?;
        for c in &e.conversations {
            tx.execute(
                "INSERT INTO conversations (id, title, started_at) VALUES (?1, ?2, ?3)",
                params![c.id, c.title, c.started_at],
            )?;
        }
        for t in &e.turns {
            tx.execute(
                "INSERT INTO turns (id, conversation_id, ext_id, speaker, text, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.id, t.conversation_id, t.ext_id, t.speaker, t.text, t.at],
            )?;
        }
        // Superseding links point forward; set them once every memory exists.
        for m in &e.memories {
            if !(0.0..=1.0).contains(&m.confidence) {
                return Err(MemoryError::BadConfidence {
                    value: m.confidence,
                });
            }
            tx.execute(
                "INSERT INTO memories (id, text, norm, kind, subject, created, updated, valid_from, \
                 valid_until, confidence) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    m.id,
                    m.text,
                    crate::text::normalize(&m.text),
                    m.kind.as_str(),
                    m.subject,
                    m.created,
                    m.updated,
                    m.valid_from,
                    m.valid_until,
                    m.confidence as f64
                ],
            )?;
            for s in &m.sources {
                tx.execute(
                    "INSERT INTO memory_sources (memory_id, conversation_id, turn_id) \
                     VALUES (?1, ?2, ?3)",
                    params![m.id, s.conversation, s.turn],
                )?;
            }
        }
        for m in &e.memories {
            if let Some(s) = m.superseded_by {
                tx.execute(
                    "UPDATE memories SET superseded_by = ?2 WHERE id = ?1",
                    params![m.id, s],
                )?;
            }
        }
        for h in &e.history {
            tx.execute(
                "INSERT INTO history (id, memory_id, at, op, text, old_text, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    h.id,
                    h.memory_id,
                    h.at,
                    h.op.as_str(),
                    h.text,
                    h.old_text,
                    h.detail
                ],
            )?;
        }
        for s in &e.embeddings {
            // Stored vectors are unit length already; normalising again would change their bits.
            normalized(&s.embedding.vector)?;
            tx.execute(
                "INSERT INTO embeddings (memory_id, model, dim, vec) VALUES (?1, ?2, ?3, ?4)",
                params![
                    s.memory_id,
                    s.embedding.model,
                    s.embedding.vector.len() as i64,
                    to_blob(&s.embedding.vector)
                ],
            )?;
        }
        for f in &e.forget_log {
            tx.execute(
                "INSERT INTO forget_log (at, what, target_id, memories_removed) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![f.at, f.what, f.target_id, f.memories_removed],
            )?;
        }
        let fk: i64 = tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })?;
        if fk > 0 {
            return Err(MemoryError::BadInput {
                what: "memory export",
                message: format!("{fk} rows refer to conversations, turns or memories it lacks"),
            });
        }
        tx.commit()?;
        self.vectors.borrow_mut().take();
        Ok(())
    }
}
