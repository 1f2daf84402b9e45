//! `UserMemory`: one user's database file, opened only through a validated user id, and every
//! write to it (each one transaction).
use crate::crypt::Passphrase;
use crate::error::{MemoryError, Result};
use crate::schema;
use crate::text::{normalize, overlap};
use crate::time::now_ms;
use crate::types::{
    Applied, Conversation, Decision, ForgetRecord, HistoryEntry, Kind, Memory, NewMemory, Op,
    Source, Turn,
};
use crate::vectors::{from_blob, normalized, to_blob, VectorIndex};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// What a turn reads once a memory learned from it is forgotten.
pub const FORGOTTEN_TURN: &str = "(forgotten)";

/// Near-duplicates by wording: content-word overlap at or above this is the same memory.
const SAME_WORDS: f64 = 0.85;
/// The subject a denial is filed under, followed by the normalized affirmation it denies.
const DENIAL: &str = "not:";
/// Near-duplicates by meaning, when both sides have vectors.
const SAME_VECTOR: f32 = 0.95;

/// Checks that `id` can safely name a file: 1–128 of `[A-Za-z0-9_.@+-]` (emails and opaque ids as
/// OpenAI clients send them), not starting with `.` or `-`.
pub fn validate_user_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || b == b'_'
                || b == b'-'
                || b == b'.'
                || b == b'@'
                || b == b'+'
        })
        && id.as_bytes()[0] != b'.'
        && id.as_bytes()[0] != b'-';
    if ok {
        Ok(())
    } else {
        Err(MemoryError::InvalidUserId { id: id.to_string() })
    }
}

/// The OS user's name as a memory user id (characters outside the safe set become `_`): whose
/// memory `run`, `serve` and `memory` use when none is named.
pub fn os_user() -> String {
    let raw = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_default();
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_start_matches(['.', '-']) {
        "" => "default".into(),
        t => t.chars().take(64).collect(),
    }
}

/// Whether `user` has a database under `dir` yet (reads of a user with none find nothing, and
/// create nothing).
pub fn user_exists(dir: &Path, user: &str) -> Result<bool> {
    Ok(user_db_path(dir, user)?.exists())
}

/// The database file of `user` under `dir`.
pub fn user_db_path(dir: &Path, user: &str) -> Result<PathBuf> {
    validate_user_id(user)?;
    Ok(dir.join(format!("{user}.sqlite3")))
}

/// One user's memory. The handle holds exactly one connection, to that user's file, so nothing
/// reached through it can read another user's memories.
pub struct UserMemory {
    pub(crate) conn: Connection,
    user: String,
    path: PathBuf,
    // Loaded on the first vector query, for one embedding model; kept in step by every write.
    pub(crate) vectors: RefCell<Option<(String, VectorIndex)>>,
}

const MEMORY_COLS: &str = "id, text, kind, subject, created, updated, valid_from, valid_until, \
                           confidence, superseded_by";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MemoryError + '_ {
    move |source| MemoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl UserMemory {
    /// Opens (creating if needed) `user`'s database in `dir`. The directory is made 0700 and the
    /// file 0600 before SQLite touches it; SQLite gives its -wal and -shm files the same mode.
    pub fn open(dir: &Path, user: &str) -> Result<UserMemory> {
        Self::open_with(dir, user, None)
    }

    /// Opens `user`'s database with its passphrase (`None`: a plain database). A new database
    /// opened with a passphrase is created encrypted (see [`crate::crypt`]).
    pub fn open_with(dir: &Path, user: &str, key: Option<&Passphrase>) -> Result<UserMemory> {
        let path = user_db_path(dir, user)?;
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(dir))?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err(&path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(&path))?;
        }
        let mut conn = Connection::open(&path).map_err(|source| MemoryError::Open {
            path: path.clone(),
            source,
        })?;
        crate::crypt::unlock(&conn, &path, key)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: a killed writer leaves the last committed state. FULL: committed means on disk.
        // secure_delete: freed pages are zeroed, so a forgotten text is not left in free space.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; \
             PRAGMA foreign_keys = ON;",
        )
        .map_err(|source| MemoryError::Open {
            path: path.clone(),
            source,
        })?;
        schema::migrate(&mut conn, &path)?;
        Ok(UserMemory {
            conn,
            user: user.to_string(),
            path,
            vectors: RefCell::new(None),
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQLite's `PRAGMA integrity_check`: "ok", or what is wrong.
    pub fn integrity_check(&self) -> Result<String> {
        let rows: Vec<String> = self
            .conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows.join("\n"))
    }

    // ---- reads ----

    pub(crate) fn row_to_memory(r: &Row) -> rusqlite::Result<Memory> {
        let kind: String = r.get(2)?;
        Ok(Memory {
            id: r.get(0)?,
            text: r.get(1)?,
            kind: Kind::parse(&kind).unwrap_or(Kind::Fact),
            subject: r.get(3)?,
            created: r.get(4)?,
            updated: r.get(5)?,
            valid_from: r.get(6)?,
            valid_until: r.get(7)?,
            confidence: r.get::<_, f64>(8)? as f32,
            superseded_by: r.get(9)?,
            sources: Vec::new(),
        })
    }

    fn sources_of(conn: &Connection, id: i64) -> Result<Vec<Source>> {
        let mut st = conn.prepare_cached(
            "SELECT conversation_id, turn_id FROM memory_sources WHERE memory_id = ?1 \
             ORDER BY conversation_id, turn_id",
        )?;
        let rows = st.query_map([id], |r| {
            Ok(Source {
                conversation: r.get(0)?,
                turn: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Several memories in two queries (search fetches tens of candidates at once); ids not
    /// found are left out.
    pub(crate) fn get_many(&self, ids: &[i64]) -> Result<std::collections::HashMap<i64, Memory>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        // Integers only: formatting them into the statement cannot inject anything.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let mut st = self.conn.prepare(&format!(
            "SELECT {MEMORY_COLS} FROM memories WHERE id IN ({list})"
        ))?;
        let mut out: std::collections::HashMap<i64, Memory> = st
            .query_map([], Self::row_to_memory)?
            .map(|m| m.map(|m| (m.id, m)))
            .collect::<rusqlite::Result<_>>()?;
        let mut st = self.conn.prepare(&format!(
            "SELECT memory_id, conversation_id, turn_id FROM memory_sources \
             WHERE memory_id IN ({list}) ORDER BY memory_id, conversation_id, turn_id"
        ))?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Source {
                    conversation: r.get(1)?,
                    turn: r.get(2)?,
                },
            ))
        })?;
        for row in rows {
            let (id, src) = row?;
            if let Some(m) = out.get_mut(&id) {
                m.sources.push(src);
            }
        }
        Ok(out)
    }

    pub fn get(&self, id: i64) -> Result<Memory> {
        let m = self
            .conn
            .prepare_cached(&format!("SELECT {MEMORY_COLS} FROM memories WHERE id = ?1"))?
            .query_row([id], Self::row_to_memory)
            .optional()?
            .ok_or(MemoryError::NoSuchMemory { id })?;
        Ok(Memory {
            sources: Self::sources_of(&self.conn, id)?,
            ..m
        })
    }

    /// Memories by id; current ones only unless `include_invalid`.
    pub fn list(&self, include_invalid: bool) -> Result<Vec<Memory>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {MEMORY_COLS} FROM memories WHERE ?1 OR valid_until IS NULL ORDER BY id"
        ))?;
        let mut out: Vec<Memory> = st
            .query_map([include_invalid], Self::row_to_memory)?
            .collect::<rusqlite::Result<_>>()?;
        for m in &mut out {
            m.sources = Self::sources_of(&self.conn, m.id)?;
        }
        Ok(out)
    }

    pub fn count(&self, include_invalid: bool) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM memories WHERE ?1 OR valid_until IS NULL",
            [include_invalid],
            |r| r.get(0),
        )?)
    }

    /// Every change to memory `id`, or to all memories, oldest first.
    pub fn history(&self, id: Option<i64>) -> Result<Vec<HistoryEntry>> {
        if let Some(id) = id {
            self.get(id)?;
        }
        let mut st = self.conn.prepare(
            "SELECT id, memory_id, at, op, text, old_text, detail FROM history \
             WHERE ?1 IS NULL OR memory_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, memory_id, at, op, text, old_text, detail) = row?;
            out.push(HistoryEntry {
                id,
                memory_id,
                at,
                op: Op::parse(&op)?,
                text,
                old_text,
                detail,
            });
        }
        Ok(out)
    }

    pub fn forget_log(&self) -> Result<Vec<ForgetRecord>> {
        let mut st = self
            .conn
            .prepare("SELECT at, what, target_id, memories_removed FROM forget_log ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(ForgetRecord {
                at: r.get(0)?,
                what: r.get(1)?,
                target_id: r.get(2)?,
                memories_removed: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn conversations(&self) -> Result<Vec<Conversation>> {
        let mut st = self
            .conn
            .prepare("SELECT id, title, started_at FROM conversations ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(Conversation {
                id: r.get(0)?,
                title: r.get(1)?,
                started_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn turns(&self, conversation: i64) -> Result<Vec<Turn>> {
        let mut st = self.conn.prepare(
            "SELECT id, conversation_id, ext_id, speaker, text, at FROM turns \
             WHERE conversation_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([conversation], |r| {
            Ok(Turn {
                id: r.get(0)?,
                conversation_id: r.get(1)?,
                ext_id: r.get(2)?,
                speaker: r.get(3)?,
                text: r.get(4)?,
                at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The stored vector of memory `id`, if any.
    pub fn embedding(&self, id: i64) -> Result<Option<(String, Vec<f32>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT model, vec FROM embeddings WHERE memory_id = ?1",
                [id],
                |r| Ok((r.get::<_, String>(0)?, from_blob(&r.get::<_, Vec<u8>>(1)?))),
            )
            .optional()?)
    }

    // ---- conversations ----

    pub fn add_conversation(&mut self, title: &str, started_at: Option<i64>) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO conversations (title, started_at) VALUES (?1, ?2)",
            params![title, started_at.unwrap_or_else(now_ms)],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The newest conversation titled `title`, if any.
    pub fn find_conversation(&self, title: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM conversations WHERE title = ?1 ORDER BY id DESC LIMIT 1",
                [title],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn add_turn(
        &mut self,
        conversation: i64,
        ext_id: Option<&str>,
        speaker: &str,
        text: &str,
        at: Option<i64>,
    ) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT count(*) > 0 FROM conversations WHERE id = ?1",
            [conversation],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(MemoryError::NoSuchConversation { id: conversation });
        }
        tx.execute(
            "INSERT INTO turns (conversation_id, ext_id, speaker, text, at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                conversation,
                ext_id,
                speaker,
                text,
                at.unwrap_or_else(now_ms)
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    // ---- the write path ----

    fn check_new(m: &NewMemory) -> Result<()> {
        if m.text.trim().is_empty() || normalize(&m.text).is_empty() {
            return Err(MemoryError::EmptyText);
        }
        if !(0.0..=1.0).contains(&m.confidence) {
            return Err(MemoryError::BadConfidence {
                value: m.confidence,
            });
        }
        Ok(())
    }

    /// How `m` relates to what is remembered (nothing is written).
    pub fn decide(&self, m: &NewMemory) -> Result<Decision> {
        Self::check_new(m)?;
        let norm = normalize(&m.text);
        if let Some(existing) = self
            .conn
            .query_row(
                "SELECT id FROM memories WHERE norm = ?1 AND valid_until IS NULL ORDER BY id LIMIT 1",
                [&norm],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
        {
            return Ok(Decision::Noop { existing });
        }
        if let Some(subject) = &m.subject {
            let old: Option<(i64, String)> = self
                .conn
                .query_row(
                    "SELECT id, norm FROM memories WHERE subject = ?1 AND valid_until IS NULL \
                     ORDER BY valid_from DESC, id DESC LIMIT 1",
                    [subject],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((id, old_norm)) = old {
                // "lives in Paris" → "lives in Paris, in the 11th" refines; anything else replaces.
                return Ok(if norm.starts_with(&old_norm) {
                    Decision::Update { id }
                } else {
                    Decision::Invalidate { old: id }
                });
            }
            return Ok(Decision::Add);
        }
        for hit in crate::search::bm25(&self.conn, &m.text, 5, false)? {
            let other: String =
                self.conn
                    .query_row("SELECT text FROM memories WHERE id = ?1", [hit.0], |r| {
                        r.get(0)
                    })?;
            if overlap(&other, &m.text) >= SAME_WORDS {
                return Ok(Decision::Noop { existing: hit.0 });
            }
        }
        if let Some(e) = &m.embedding {
            let q = normalized(&e.vector)?;
            let words = crate::text::content_words(&m.text);
            for (id, s) in self.vector_top_k(Some(&e.model), &q, 5, false)? {
                // Near in meaning is a repeat only when the new text says nothing the old one
                // does not: "on May 4" next to "on May 3" is a change, kept, never dropped.
                if s < SAME_VECTOR {
                    break;
                }
                let have = crate::text::content_words(&self.get(id)?.text);
                if words.iter().all(|w| have.contains(w)) {
                    return Ok(Decision::Noop { existing: id });
                }
            }
        }
        Ok(Decision::Add)
    }

    /// Remembers a denial `m` of the affirmative memory `affirmed` ("The user no longer lives
    /// in Paris." of "The user lives in Paris."): when `affirmed` is current, word for word,
    /// the denial closes it (kept in history) and takes its place; otherwise it is kept on its
    /// own. Either way it is filed under the affirmation, so that saying the affirmation again
    /// closes the denial ([`UserMemory::remember`]).
    pub fn remember_denial(&mut self, mut m: NewMemory, affirmed: &str) -> Result<Applied> {
        let key = normalize(affirmed);
        m.subject = Some(format!("{DENIAL}{key}"));
        let current: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM memories WHERE norm = ?1 AND valid_until IS NULL \
                 ORDER BY id DESC LIMIT 1",
                [&key],
                |r| r.get(0),
            )
            .optional()?;
        match current {
            Some(old) if !key.is_empty() => self.apply(m, Decision::Invalidate { old }),
            _ => {
                let d = self.decide(&m)?;
                self.apply(m, d)
            }
        }
    }

    /// Decides and applies: the one call for "remember this". A current denial of exactly this
    /// memory ("The user is not allergic to peanuts." for "The user is allergic to peanuts.")
    /// is closed by it.
    pub fn remember(&mut self, m: NewMemory) -> Result<Applied> {
        let denial: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM memories WHERE subject = ?1 AND valid_until IS NULL \
                 ORDER BY id DESC LIMIT 1",
                [format!("{DENIAL}{}", normalize(&m.text))],
                |r| r.get(0),
            )
            .optional()?;
        let d = match (denial, self.decide(&m)?) {
            // The slot's own change (a new home) is the decision; the denial closes beside it.
            (Some(_), d @ (Decision::Invalidate { .. } | Decision::Update { .. })) => d,
            (Some(old), _) => Decision::Invalidate { old },
            (None, d) => d,
        };
        self.apply_closing(m, d, denial)
    }

    /// Applies a decision (from `decide`, or a caller's own) in one transaction.
    pub fn apply(&mut self, m: NewMemory, d: Decision) -> Result<Applied> {
        self.apply_closing(m, d, None)
    }

    /// [`UserMemory::apply`], also closing memory `also` (a denial the new memory contradicts)
    /// in the same transaction.
    fn apply_closing(&mut self, m: NewMemory, d: Decision, also: Option<i64>) -> Result<Applied> {
        Self::check_new(&m)?;
        let emb = m
            .embedding
            .as_ref()
            .map(|e| normalized(&e.vector).map(|v| (e.model.as_str(), v)))
            .transpose()?;
        let at = m.at.unwrap_or_else(now_ms);
        let now = now_ms();
        let tx = self.conn.transaction()?;
        let applied = match d {
            Decision::Add => {
                let id = insert_memory(&tx, &m, at, now)?;
                history(&tx, id, now, Op::Add, &m.text, None, "")?;
                Applied::Added { id }
            }
            Decision::Noop { existing } => {
                let (text, conf) = memory_text_conf(&tx, existing)?;
                // Hearing a fact again makes it surer: halfway to certain each time.
                let c = conf.max(m.confidence as f64);
                let c = c + (1.0 - c) * 0.5 * m.confidence as f64;
                tx.execute(
                    "UPDATE memories SET confidence = ?2, updated = ?3 WHERE id = ?1",
                    params![existing, c.min(1.0), now],
                )?;
                history(&tx, existing, now, Op::Reaffirm, &text, None, "")?;
                Applied::Reaffirmed { id: existing }
            }
            Decision::Update { id } => {
                let (old, _) = memory_text_conf(&tx, id)?;
                tx.execute(
                    "UPDATE memories SET text = ?2, norm = ?3, kind = ?4, updated = ?5, \
                     confidence = max(confidence, ?6) WHERE id = ?1",
                    params![
                        id,
                        m.text,
                        normalize(&m.text),
                        m.kind.as_str(),
                        now,
                        m.confidence as f64
                    ],
                )?;
                // The old vector describes the old text.
                tx.execute("DELETE FROM embeddings WHERE memory_id = ?1", [id])?;
                history(&tx, id, now, Op::Update, &m.text, Some(&old), "")?;
                Applied::Updated { id }
            }
            Decision::Invalidate { old } => {
                let new = insert_memory(&tx, &m, at, now)?;
                close_memory(&tx, old, at, new, now)?;
                history(
                    &tx,
                    new,
                    now,
                    Op::Add,
                    &m.text,
                    None,
                    &format!("supersedes #{old}"),
                )?;
                Applied::Superseded { old, new }
            }
        };
        if let Some(src) = m.source {
            add_source(&tx, applied.id(), src)?;
        }
        let touched = applied.id();
        let also = also.filter(|a| {
            *a != touched && !matches!(applied, Applied::Superseded { old, .. } if old == *a)
        });
        if let Some(old) = also {
            close_memory(&tx, old, at, touched, now)?;
        }
        let write_vec = match applied {
            Applied::Reaffirmed { .. } => None,
            _ => emb.as_ref(),
        };
        if let Some((model, v)) = write_vec {
            tx.execute(
                "INSERT OR REPLACE INTO embeddings (memory_id, model, dim, vec) VALUES (?1, ?2, ?3, ?4)",
                params![touched, model, v.len() as i64, to_blob(v)],
            )?;
        }
        tx.commit()?;
        let mut cache = self.vectors.borrow_mut();
        if let Some((cached_model, ix)) = cache.as_mut() {
            if let Applied::Superseded { old, .. } = applied {
                ix.set_current(old, false);
            }
            if let Some(old) = also {
                ix.set_current(old, false);
            }
            if let Applied::Updated { id } = applied {
                ix.remove(id);
            }
            match write_vec {
                Some((model, v)) if cached_model == model && v.len() == ix.dim => {
                    ix.upsert(touched, v, true)
                }
                Some(_) => *cache = None,
                None => {}
            }
        }
        Ok(applied)
    }

    /// Adds every item as a new memory (no dedupe) in one transaction: bulk loads and benchmarks.
    pub fn add_many(&mut self, items: Vec<NewMemory>) -> Result<Vec<i64>> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(items.len());
        for m in &items {
            Self::check_new(m)?;
            let id = insert_memory(&tx, m, m.at.unwrap_or(now), now)?;
            history(&tx, id, now, Op::Add, &m.text, None, "")?;
            if let Some(src) = m.source {
                add_source(&tx, id, src)?;
            }
            if let Some(e) = &m.embedding {
                let v = normalized(&e.vector)?;
                tx.execute(
                    "INSERT INTO embeddings (memory_id, model, dim, vec) VALUES (?1, ?2, ?3, ?4)",
                    params![id, e.model, v.len() as i64, to_blob(&v)],
                )?;
            }
            ids.push(id);
        }
        tx.commit()?;
        self.vectors.borrow_mut().take();
        Ok(ids)
    }

    /// Stores (or replaces) memory `id`'s vector from `model`.
    pub fn set_embedding(&mut self, id: i64, model: &str, v: &[f32]) -> Result<()> {
        let v = normalized(v)?;
        let current = self.get(id)?.is_current();
        self.conn.execute(
            "INSERT OR REPLACE INTO embeddings (memory_id, model, dim, vec) VALUES (?1, ?2, ?3, ?4)",
            params![id, model, v.len() as i64, to_blob(&v)],
        )?;
        let mut cache = self.vectors.borrow_mut();
        if let Some((cached_model, ix)) = cache.as_mut() {
            if cached_model == model && ix.dim == v.len() {
                ix.upsert(id, &v, current);
            } else {
                *cache = None;
            }
        }
        Ok(())
    }

    /// A user's correction: new text (and kind) in place, the old text kept in history.
    pub fn edit(&mut self, id: i64, text: &str, kind: Option<Kind>) -> Result<()> {
        if normalize(text).is_empty() {
            return Err(MemoryError::EmptyText);
        }
        let now = now_ms();
        let tx = self.conn.transaction()?;
        let (old, _) = memory_text_conf(&tx, id)?;
        tx.execute(
            "UPDATE memories SET text = ?2, norm = ?3, kind = coalesce(?4, kind), updated = ?5, \
             confidence = 1.0 WHERE id = ?1",
            params![id, text, normalize(text), kind.map(|k| k.as_str()), now],
        )?;
        tx.execute("DELETE FROM embeddings WHERE memory_id = ?1", [id])?;
        history(
            &tx,
            id,
            now,
            Op::Edit,
            text,
            Some(&old),
            "edited by the user",
        )?;
        tx.commit()?;
        if let Some((_, ix)) = self.vectors.borrow_mut().as_mut() {
            ix.remove(id);
        }
        Ok(())
    }

    /// Closes memory `id`'s validity at `at` (default now) without a replacement: "that is no
    /// longer true". The memory stays in history.
    pub fn invalidate(&mut self, id: i64, at: Option<i64>, reason: &str) -> Result<()> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        let (text, _) = memory_text_conf(&tx, id)?;
        tx.execute(
            "UPDATE memories SET valid_until = max(valid_from, ?2), updated = ?3 \
             WHERE id = ?1 AND valid_until IS NULL",
            params![id, at.unwrap_or(now), now],
        )?;
        history(&tx, id, now, Op::Invalidate, &text, None, reason)?;
        tx.commit()?;
        if let Some((_, ix)) = self.vectors.borrow_mut().as_mut() {
            ix.set_current(id, false);
        }
        Ok(())
    }

    /// Hard-deletes memory `id` with its history, sources, vector and index terms, and clears
    /// the text of the turns it was learned from (they said the same thing in the user's own
    /// words) and of the assistant's reply to each, then compacts the file so the text is gone
    /// from disk. Returns how many turns were cleared. A cleared turn keeps its place in its conversation, reading [`FORGOTTEN_TURN`];
    /// other memories learned from it stay, in their own words.
    pub fn forget(&mut self, id: i64) -> Result<usize> {
        let tx = self.conn.transaction()?;
        memory_text_conf(&tx, id)?;
        // The source turns, and the assistant's reply right after each (a reply often says the
        // fact back: "Noted, your code word is …").
        let turns = tx.execute(
            "WITH src AS (SELECT turn_id AS id FROM memory_sources \
                          WHERE memory_id = ?1 AND turn_id IS NOT NULL), \
                  reply AS (SELECT (SELECT n.id FROM turns n \
                                    WHERE n.conversation_id = t.conversation_id AND n.id > t.id \
                                    ORDER BY n.id LIMIT 1) AS id \
                            FROM turns t WHERE t.id IN (SELECT id FROM src)) \
             UPDATE turns SET text = ?2 WHERE id IN (SELECT id FROM src) \
               OR (speaker = 'assistant' AND id IN (SELECT id FROM reply))",
            params![id, FORGOTTEN_TURN],
        )?;
        tx.execute("DELETE FROM memories WHERE id = ?1", [id])?;
        forget_record(&tx, "memory", Some(id), 1)?;
        tx.commit()?;
        self.vectors.borrow_mut().take();
        self.scrub()?;
        Ok(turns)
    }

    /// Deletes conversation `id`, its turns, and every memory derived from it — also those
    /// reaffirmed elsewhere, since their wording may come from this conversation — then compacts.
    /// Returns how many memories went.
    pub fn forget_conversation(&mut self, id: i64) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT count(*) > 0 FROM conversations WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(MemoryError::NoSuchConversation { id });
        }
        let n = tx.execute(
            "DELETE FROM memories WHERE id IN \
             (SELECT memory_id FROM memory_sources WHERE conversation_id = ?1)",
            [id],
        )?;
        tx.execute("DELETE FROM conversations WHERE id = ?1", [id])?;
        forget_record(&tx, "conversation", Some(id), n as i64)?;
        tx.commit()?;
        self.vectors.borrow_mut().take();
        self.scrub()?;
        Ok(n)
    }

    /// Deletes everything this user's store holds, then compacts.
    pub fn wipe(&mut self) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM memories", [])?;
        tx.execute_batch(
            "DELETE FROM conversations; DELETE FROM forget_log; \
             INSERT INTO memories_fts(memories_fts) VALUES ('delete-all');",
        )?;
        forget_record(&tx, "wipe", None, n as i64)?;
        tx.commit()?;
        self.vectors.borrow_mut().take();
        self.scrub()?;
        Ok(n)
    }

    /// Makes deleted text unrecoverable from the files: merges the FTS index (its old segments
    /// still hold deleted terms), rewrites the database (VACUUM) and empties the WAL.
    fn scrub(&mut self) -> Result<()> {
        self.conn.execute_batch(
            "INSERT INTO memories_fts(memories_fts) VALUES ('optimize'); VACUUM; \
             PRAGMA wal_checkpoint(TRUNCATE);",
        )?;
        Ok(())
    }

    /// The vectors of `model` (or whichever model the stored vectors of `query`'s size come from).
    pub(crate) fn vector_top_k(
        &self,
        model: Option<&str>,
        query: &[f32],
        k: usize,
        include_invalid: bool,
    ) -> Result<Vec<(i64, f32)>> {
        let mut cache = self.vectors.borrow_mut();
        let fresh = match (&*cache, model) {
            (Some((m, ix)), Some(want)) => m == want && ix.dim == query.len(),
            (Some((_, ix)), None) => ix.dim == query.len(),
            (None, _) => false,
        };
        if !fresh {
            let model: Option<String> = match model {
                Some(m) => Some(m.to_string()),
                None => self
                    .conn
                    .query_row(
                        "SELECT model FROM embeddings WHERE dim = ?1 GROUP BY model \
                         ORDER BY count(*) DESC LIMIT 1",
                        [query.len() as i64],
                        |r| r.get(0),
                    )
                    .optional()?,
            };
            let Some(model) = model else {
                return Ok(Vec::new());
            };
            let mut ix = VectorIndex::new(query.len());
            let mut st = self.conn.prepare(
                "SELECT e.memory_id, e.vec, m.valid_until IS NULL FROM embeddings e \
                 JOIN memories m ON m.id = e.memory_id WHERE e.model = ?1 AND e.dim = ?2",
            )?;
            let mut rows = st.query(params![model, query.len() as i64])?;
            while let Some(r) = rows.next()? {
                let blob: Vec<u8> = r.get(1)?;
                ix.upsert(r.get(0)?, &from_blob(&blob), r.get(2)?);
            }
            *cache = Some((model, ix));
        }
        let (_, ix) = cache.as_ref().expect("filled above");
        Ok(ix.top_k(query, k, include_invalid))
    }
}

/// Closes memory `old`: it stops holding when `by` starts (never before it began itself), and
/// its history says so. False when it was already closed.
fn close_memory(tx: &Transaction, old: i64, at: i64, by: i64, now: i64) -> Result<bool> {
    let changed = tx.execute(
        "UPDATE memories SET valid_until = max(valid_from, ?2), superseded_by = ?3, \
         updated = ?4 WHERE id = ?1 AND valid_until IS NULL",
        params![old, at, by, now],
    )?;
    if changed > 0 {
        let (old_text, _) = memory_text_conf(tx, old)?;
        history(
            tx,
            old,
            now,
            Op::Invalidate,
            &old_text,
            None,
            &format!("superseded by #{by}"),
        )?;
    }
    Ok(changed > 0)
}

fn memory_text_conf(tx: &Transaction, id: i64) -> Result<(String, f64)> {
    tx.query_row(
        "SELECT text, confidence FROM memories WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?
    .ok_or(MemoryError::NoSuchMemory { id })
}

fn insert_memory(tx: &Transaction, m: &NewMemory, at: i64, now: i64) -> Result<i64> {
    tx.execute(
        "INSERT INTO memories (text, norm, kind, subject, created, updated, valid_from, confidence) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
        params![
            m.text.trim(),
            normalize(&m.text),
            m.kind.as_str(),
            m.subject,
            now,
            at,
            m.confidence as f64
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn add_source(tx: &Transaction, memory: i64, src: Source) -> Result<()> {
    if let Some(turn) = src.turn {
        let ok: bool = tx.query_row(
            "SELECT count(*) > 0 FROM turns WHERE id = ?1 AND conversation_id = ?2",
            [turn, src.conversation],
            |r| r.get(0),
        )?;
        if !ok {
            return Err(MemoryError::NoSuchTurn {
                id: turn,
                conversation: src.conversation,
            });
        }
    }
    let ok: bool = tx.query_row(
        "SELECT count(*) > 0 FROM conversations WHERE id = ?1",
        [src.conversation],
        |r| r.get(0),
    )?;
    if !ok {
        return Err(MemoryError::NoSuchConversation {
            id: src.conversation,
        });
    }
    tx.execute(
        "INSERT OR IGNORE INTO memory_sources (memory_id, conversation_id, turn_id) \
         VALUES (?1, ?2, ?3)",
        params![memory, src.conversation, src.turn],
    )?;
    Ok(())
}

fn history(
    tx: &Transaction,
    memory: i64,
    at: i64,
    op: Op,
    text: &str,
    old_text: Option<&str>,
    detail: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO history (memory_id, at, op, text, old_text, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![memory, at, op.as_str(), text, old_text, detail],
    )?;
    Ok(())
}

fn forget_record(tx: &Transaction, what: &str, target: Option<i64>, n: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO forget_log (at, what, target_id, memories_removed) VALUES (?1, ?2, ?3, ?4)",
        params![now_ms(), what, target, n],
    )?;
    Ok(())
}
