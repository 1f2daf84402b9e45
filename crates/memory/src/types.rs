use crate::error::{MemoryError, Result};
use serde::{Deserialize, Serialize};

/// What a memory is about; retrieval does not depend on it, prompts and UIs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Fact,
    Preference,
    Event,
    Instruction,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Fact, Kind::Preference, Kind::Event, Kind::Instruction];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Fact => "fact",
            Kind::Preference => "preference",
            Kind::Event => "event",
            Kind::Instruction => "instruction",
        }
    }

    pub fn parse(s: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| MemoryError::BadKind {
                kind: s.to_string(),
            })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a memory came from: a conversation and, when known, the turn in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    pub conversation: i64,
    pub turn: Option<i64>,
}

/// One remembered item. Times are milliseconds since the Unix epoch; `valid_until: None` means it
/// still holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub id: i64,
    pub text: String,
    pub kind: Kind,
    /// The slot a memory fills ("home", "taste:coffee"): a new value for a slot closes the old one.
    pub subject: Option<String>,
    pub created: i64,
    pub updated: i64,
    pub valid_from: i64,
    pub valid_until: Option<i64>,
    pub confidence: f32,
    /// The memory that replaced this one, when a contradiction closed it.
    pub superseded_by: Option<i64>,
    pub sources: Vec<Source>,
}

impl Memory {
    pub fn is_current(&self) -> bool {
        self.valid_until.is_none()
    }
}

/// A memory to be written: the extractor's candidate or an explicit "remember that".
#[derive(Debug, Clone, PartialEq)]
pub struct NewMemory {
    pub text: String,
    pub kind: Kind,
    pub subject: Option<String>,
    pub confidence: f32,
    pub source: Option<Source>,
    /// When it became true (a session's date on ingest); `None` is now.
    pub at: Option<i64>,
    /// Unit-normalised on write; `None` stores no vector (BM25 and recency still find it).
    pub embedding: Option<Embedding>,
}

/// A vector and the model that made it (vectors of different models are never compared).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    pub model: String,
    pub vector: Vec<f32>,
}

impl NewMemory {
    pub fn new(text: impl Into<String>, kind: Kind) -> Self {
        NewMemory {
            text: text.into(),
            kind,
            subject: None,
            confidence: 1.0,
            source: None,
            at: None,
            embedding: None,
        }
    }
}

/// The four outcomes of comparing a candidate with what is already remembered (Mem0's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Decision {
    /// Nothing similar: a new memory.
    Add,
    /// Already known: the existing memory gains a source and is reaffirmed, nothing else changes.
    Noop { existing: i64 },
    /// A refinement of an existing memory (same slot, the new text contains the old): edited in
    /// place, the old text kept in history.
    Update { id: i64 },
    /// A contradiction (same slot, a different value): the old one's validity closes, a new memory
    /// is added and the old one points to it.
    Invalidate { old: i64 },
}

/// What a write did, with the ids it touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Applied {
    Added { id: i64 },
    Reaffirmed { id: i64 },
    Updated { id: i64 },
    Superseded { old: i64, new: i64 },
}

impl Applied {
    /// The memory that now holds the candidate's content.
    pub fn id(&self) -> i64 {
        match *self {
            Applied::Added { id } | Applied::Reaffirmed { id } | Applied::Updated { id } => id,
            Applied::Superseded { new, .. } => new,
        }
    }
}

/// What kind of change a history row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Reaffirm,
    Update,
    Edit,
    Invalidate,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Reaffirm => "reaffirm",
            Op::Update => "update",
            Op::Edit => "edit",
            Op::Invalidate => "invalidate",
        }
    }

    pub fn parse(s: &str) -> Result<Op> {
        [Op::Add, Op::Reaffirm, Op::Update, Op::Edit, Op::Invalidate]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| MemoryError::BadInput {
                what: "history op",
                message: format!("unknown op {s:?}"),
            })
    }
}

/// One change to one memory. History is only removed when its memory is forgotten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub memory_id: i64,
    pub at: i64,
    pub op: Op,
    /// The memory's text after the change.
    pub text: String,
    /// Its text before, for updates and edits.
    pub old_text: Option<String>,
    pub detail: String,
}

/// A record that something was forgotten, without what it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgetRecord {
    pub at: i64,
    /// "memory", "conversation" or "wipe".
    pub what: String,
    pub target_id: Option<i64>,
    pub memories_removed: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: i64,
    pub title: String,
    pub started_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub id: i64,
    pub conversation_id: i64,
    /// The id the turn had where it came from (an ingested file's turn id).
    pub ext_id: Option<String>,
    pub speaker: String,
    pub text: String,
    pub at: i64,
}
