//! The read path: BM25 over the FTS5 index, cosine over stored vectors and recency, fused by
//! reciprocal rank, then cut to a token budget for the prompt.
use crate::error::Result;
use crate::store::UserMemory;
use crate::text::{content_words, estimate_tokens};
use crate::vectors::normalized;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::collections::HashMap;

/// Reciprocal-rank constant from Cormack et al. (2009): damps the head so no one list dominates.
const RRF_K: f64 = 60.0;

/// How much each ranked list counts in the fusion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub bm25: f64,
    pub vector: f64,
    /// Among the candidates the other lists found, newer first.
    pub recency: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            bm25: 1.0,
            vector: 1.0,
            recency: 0.25,
        }
    }
}

/// A search. `Query::new("where do I live")` searches current memories by words alone.
pub struct Query<'a> {
    pub text: &'a str,
    /// The query's vector and its model's name: memories embedded by that model are compared.
    pub embedding: Option<(&'a str, &'a [f32])>,
    pub limit: usize,
    /// Closed (superseded or invalidated) memories too.
    pub include_invalid: bool,
    /// Stop adding results once their tokens would pass this.
    pub token_budget: Option<usize>,
    pub weights: Weights,
    /// Tokens a memory costs in the prompt; `estimate_tokens` unless the caller has a tokenizer.
    pub count_tokens: &'a dyn Fn(&str) -> usize,
}

impl<'a> Query<'a> {
    pub fn new(text: &'a str) -> Self {
        Query {
            text,
            embedding: None,
            limit: 5,
            include_invalid: false,
            token_budget: None,
            weights: Weights::default(),
            count_tokens: &estimate_tokens,
        }
    }
}

/// One result, with where it ranked in each list (1-based) and its fused score.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub memory: crate::Memory,
    pub score: f64,
    pub bm25_rank: Option<usize>,
    pub vector_rank: Option<usize>,
    pub cosine: Option<f32>,
    pub tokens: usize,
}

/// A candidate's fused score, its rank in the BM25 and vector lists, and its cosine.
#[derive(Debug, Default, Clone, Copy)]
struct Fused {
    score: f64,
    bm25_rank: Option<usize>,
    vector_rank: Option<usize>,
    cosine: Option<f32>,
}

/// FTS5 query text: each content word quoted (so no word is read as an operator), OR-ed.
fn match_expr(text: &str) -> Option<String> {
    let words = content_words(text);
    if words.is_empty() {
        return None;
    }
    Some(
        words
            .iter()
            .map(|w| format!("\"{}\"", w.replace('"', "")))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

/// Ids and BM25 scores (lower is better, as FTS5 reports them) of the best `k` matches.
pub(crate) fn bm25(
    conn: &Connection,
    text: &str,
    k: usize,
    include_invalid: bool,
) -> Result<Vec<(i64, f64)>> {
    let Some(expr) = match_expr(text) else {
        return Ok(Vec::new());
    };
    // The best matches first, from the index alone; only those are checked for validity. Joining
    // before the limit looked up every matching row (thousands for a common word at 100,000
    // memories). Closed memories are few, so a margin usually suffices; when it does not, ask
    // for more.
    let mut st = conn.prepare_cached(
        "SELECT f.id, f.s FROM (SELECT rowid AS id, bm25(memories_fts) AS s FROM memories_fts \
         WHERE memories_fts MATCH ?1 ORDER BY s LIMIT ?3) f \
         JOIN memories m ON m.id = f.id WHERE ?2 OR m.valid_until IS NULL ORDER BY f.s",
    )?;
    let mut inner = if include_invalid { k } else { k * 2 + 16 };
    loop {
        let rows: Vec<(i64, f64)> = st
            .query_map(params![expr, include_invalid, inner as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        // Enough current ones, or no more matches to look at.
        if rows.len() >= k || inner >= 1 << 20 || !more_matches(conn, &expr, inner)? {
            return Ok(rows.into_iter().take(k).collect());
        }
        inner *= 8;
    }
}

/// Whether the index holds more than `n` matches for `expr`.
fn more_matches(conn: &Connection, expr: &str, n: usize) -> Result<bool> {
    let mut st = conn.prepare_cached(
        "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?1 LIMIT ?2)",
    )?;
    let c: i64 = st.query_row(params![expr, n as i64 + 1], |r| r.get(0))?;
    Ok(c as usize > n)
}

impl UserMemory {
    /// Hybrid search; only this user's memories exist to be found.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let depth = (q.limit * 10).max(50);
        let lexical = bm25(&self.conn, q.text, depth, q.include_invalid)?;
        let semantic = match q.embedding {
            Some((model, v)) if q.weights.vector > 0.0 => {
                let v = normalized(v)?;
                self.vector_top_k(Some(model), &v, depth, q.include_invalid)?
            }
            _ => Vec::new(),
        };
        let mut fused: HashMap<i64, Fused> = HashMap::new();
        for (rank, (id, _)) in lexical.iter().enumerate() {
            let e = fused.entry(*id).or_default();
            e.score += q.weights.bm25 / (RRF_K + rank as f64 + 1.0);
            e.bm25_rank = Some(rank + 1);
        }
        for (rank, (id, cos)) in semantic.iter().enumerate() {
            let e = fused.entry(*id).or_default();
            e.score += q.weights.vector / (RRF_K + rank as f64 + 1.0);
            e.vector_rank = Some(rank + 1);
            e.cosine = Some(*cos);
        }
        let mut memories = self.get_many(&fused.keys().copied().collect::<Vec<_>>())?;
        fused.retain(|id, _| memories.contains_key(id));
        if q.weights.recency > 0.0 {
            let mut by_time: Vec<(i64, i64)> = memories
                .values()
                .map(|m| (m.valid_from.max(m.updated), m.id))
                .collect();
            by_time.sort_by(|a, b| b.cmp(a));
            for (rank, (_, id)) in by_time.iter().enumerate() {
                if let Some(e) = fused.get_mut(id) {
                    e.score += q.weights.recency / (RRF_K + rank as f64 + 1.0);
                }
            }
        }
        let mut ranked: Vec<(i64, Fused)> = fused.into_iter().collect();
        // Current memories above closed ones when history is asked for; then score; then newest.
        ranked.sort_by(|a, b| {
            let (ma, mb) = (&memories[&a.0], &memories[&b.0]);
            mb.is_current()
                .cmp(&ma.is_current())
                .then(b.1.score.total_cmp(&a.1.score))
                .then(b.0.cmp(&a.0))
        });
        let mut out = Vec::new();
        let mut spent = 0usize;
        for (id, f) in ranked {
            if out.len() == q.limit {
                break;
            }
            let memory = memories.remove(&id).expect("fetched above");
            let tokens = (q.count_tokens)(&memory.text);
            if let Some(budget) = q.token_budget {
                if spent + tokens > budget {
                    continue;
                }
            }
            spent += tokens;
            out.push(Hit {
                memory,
                score: f.score,
                bm25_rank: f.bm25_rank,
                vector_rank: f.vector_rank,
                cosine: f.cosine,
                tokens,
            });
        }
        Ok(out)
    }
}

/// The memories as a prompt section. The text stays plain text: callers encode it without parsing
/// special tokens, so a remembered sentence cannot forge a turn.
pub fn format_for_prompt(hits: &[Hit]) -> String {
    let mut s = String::from("What you remember about the user:\n");
    for h in hits {
        // One line each: a newline inside a memory cannot fake another entry.
        let text = h
            .memory
            .text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        s.push_str(&format!("- [{}] {text}\n", h.memory.id));
    }
    s
}
