//! Bringing conversations in: each user turn is stored, its candidate memories extracted and
//! applied (add / reaffirm / update / invalidate), each linked to the turn it came from.
use crate::error::{MemoryError, Result};
use crate::extract::{extract_all, Candidate, Extractor};
use crate::store::UserMemory;
use crate::types::{Applied, Embedding, Source};
use crate::Embedder;
use serde::{Deserialize, Serialize};

/// A past-conversations file: `{"sessions": [{"date": "2024-05-01", "turns": [{"id": "t1",
/// "speaker": "user", "text": "..."}]}]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestFile {
    pub sessions: Vec<Session>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]Z`.
    pub date: String,
    pub turns: Vec<IngestTurn>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestTurn {
    pub id: String,
    pub speaker: String,
    pub text: String,
}

impl IngestFile {
    pub fn from_json(text: &str) -> Result<IngestFile> {
        serde_json::from_str(text).map_err(|source| MemoryError::Json {
            what: "a conversations file",
            source,
        })
    }
}

/// Whose turns are about the user: their own. Assistant turns are stored, not mined.
pub fn is_user_speaker(speaker: &str, user_names: &[&str]) -> bool {
    let s = speaker.trim().to_lowercase();
    s == "user" || s == "me" || s == "human" || user_names.iter().any(|n| n.to_lowercase() == s)
}

/// What extraction and the write path do with a message.
pub struct Pipeline<'a> {
    pub extractors: Vec<&'a dyn Extractor>,
    pub embedder: Option<&'a dyn Embedder>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct IngestStats {
    pub sessions: usize,
    pub turns: usize,
    pub candidates: usize,
    pub added: usize,
    pub reaffirmed: usize,
    pub updated: usize,
    pub superseded: usize,
}

impl IngestStats {
    fn count(&mut self, a: &Applied) {
        match a {
            Applied::Added { .. } => self.added += 1,
            Applied::Reaffirmed { .. } => self.reaffirmed += 1,
            Applied::Updated { .. } => self.updated += 1,
            Applied::Superseded { .. } => self.superseded += 1,
        }
    }
}

impl Pipeline<'_> {
    /// Extracts from `message` (said at `at`, in `source`) and applies each candidate.
    pub fn process(
        &self,
        mem: &mut UserMemory,
        message: &str,
        source: Option<Source>,
        at: Option<i64>,
    ) -> Result<Vec<(Candidate, Applied)>> {
        let cands = extract_all(&self.extractors, message)?;
        let vectors = match self.embedder {
            Some(e) if !cands.is_empty() => {
                let texts: Vec<&str> = cands.iter().map(|c| c.text.as_str()).collect();
                Some((e.name().to_string(), e.embed(&texts)?))
            }
            _ => None,
        };
        let mut out = Vec::with_capacity(cands.len());
        for (i, c) in cands.into_iter().enumerate() {
            let mut m = c.clone().into_new(source, at);
            if let Some((model, vs)) = &vectors {
                m.embedding = vs.get(i).map(|v| Embedding {
                    model: model.clone(),
                    vector: v.clone(),
                });
            }
            let applied = match &c.denies {
                Some(v) => mem.remember_denial(m, v)?,
                None => mem.remember(m)?,
            };
            out.push((c, applied));
        }
        Ok(out)
    }

    /// Stores every session and turn of `file` and mines the user's turns, oldest session first
    /// so later statements update earlier ones.
    pub fn ingest(
        &self,
        mem: &mut UserMemory,
        file: &IngestFile,
        user_names: &[&str],
    ) -> Result<IngestStats> {
        let mut sessions: Vec<(i64, &Session)> = file
            .sessions
            .iter()
            .map(|s| Ok((crate::time::parse_date(&s.date)?, s)))
            .collect::<Result<_>>()?;
        sessions.sort_by_key(|(t, _)| *t);
        let mut stats = IngestStats::default();
        for (at, s) in sessions {
            let title = s.title.clone().or_else(|| s.id.clone()).unwrap_or_default();
            let conv = mem.add_conversation(&title, Some(at))?;
            stats.sessions += 1;
            for (i, t) in s.turns.iter().enumerate() {
                // Turns of a session a millisecond apart keep their order.
                let t_at = at + i as i64;
                let turn = mem.add_turn(conv, Some(&t.id), &t.speaker, &t.text, Some(t_at))?;
                stats.turns += 1;
                if is_user_speaker(&t.speaker, user_names) {
                    let src = Source {
                        conversation: conv,
                        turn: Some(turn),
                    };
                    for (_, a) in self.process(mem, &t.text, Some(src), Some(t_at))? {
                        stats.candidates += 1;
                        stats.count(&a);
                    }
                }
            }
        }
        Ok(stats)
    }
}
