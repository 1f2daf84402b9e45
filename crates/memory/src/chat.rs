//! Memory in a conversation, shared by `run` and `serve`: what to recall for the user's message
//! (a prompt section under a token budget), and what to learn from a finished turn (both turns
//! stored, the user's mined for memories and applied).
//!
//! ```
//! use autodidact_memory::chat::{ChatMemory, FinishedTurn};
//! let dir = tempfile::tempdir().unwrap();
//! let memory = ChatMemory::new(dir.path().to_path_buf(), None);
//! let mut alice = memory.open("alice").unwrap();
//! let turn = FinishedTurn { conversation: None, user: "My name is Alice.", reply: "Hello!" };
//! memory.learn(&mut alice, &turn).unwrap();
//! let hits = memory.recall(&alice, "what is my name?", &autodidact_memory::text::estimate_tokens);
//! assert_eq!(hits.unwrap()[0].memory.text, "The user's name is Alice.");
//! ```
use crate::crypt::Passphrase;
use crate::error::Result;
use crate::extract::RuleExtractor;
use crate::ingest::Pipeline;
use crate::search::{Hit, Query};
use crate::store::UserMemory;
use crate::types::{Applied, Embedding, Kind, NewMemory, Source};
use crate::Embedder;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How much memory goes into one prompt. Callers cap the budget by their context too: memory
/// must never crowd out the conversation (`run` and `serve` give it at most an eighth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecallConfig {
    /// Most memories in one prompt.
    pub limit: usize,
    /// Most prompt tokens they may take together (the issue's goal is ≤ 2,000 a query; a small
    /// model's context is better spent on the conversation).
    pub token_budget: usize,
    /// A memory that shares no word with the message needs at least this cosine: vector search
    /// always returns its nearest rows, related or not. With all-MiniLM-L6-v2, a question and the
    /// memory that answers it in other words ("Can I eat a snickers bar?" / "The user is allergic
    /// to peanuts.") measured 0.27–0.32, unrelated pairs −0.08–0.14.
    pub min_cosine: f32,
}

impl Default for RecallConfig {
    fn default() -> Self {
        RecallConfig {
            limit: 5,
            token_budget: 300,
            min_cosine: 0.25,
        }
    }
}

/// Every user's memory under one directory, with the embedder both paths use.
pub struct ChatMemory {
    dir: PathBuf,
    embedder: Option<Arc<dyn Embedder + Send + Sync>>,
    key: Option<Passphrase>,
    pub recall: RecallConfig,
}

/// A turn that was answered: what the user said and what the assistant replied.
pub struct FinishedTurn<'a> {
    /// The client's conversation key; turns without one go to a conversation per UTC day.
    pub conversation: Option<&'a str>,
    pub user: &'a str,
    pub reply: &'a str,
}

/// What `learn` did with a turn.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Learned {
    pub conversation: i64,
    pub user_turn: i64,
    pub applied: Vec<Applied>,
    /// Time spent storing, extracting, embedding and applying.
    pub millis: f64,
}

/// The conversation title a client's key (or the day) maps to. The two never meet: a key
/// spelled like a date ("2026-12-07") is its own conversation, not that day's.
fn conversation_title(key: Option<&str>) -> String {
    match key {
        Some(k) => format!("chat {}", k.chars().take(128).collect::<String>()),
        None => format!(
            "day {}",
            &crate::time::format_ms(crate::time::now_ms())[..10]
        ),
    }
}

impl ChatMemory {
    pub fn new(dir: PathBuf, embedder: Option<Arc<dyn Embedder + Send + Sync>>) -> Self {
        ChatMemory {
            dir,
            embedder,
            key: None,
            recall: RecallConfig::default(),
        }
    }

    /// Opens every user's database with `key` (see [`crate::crypt`]); new ones are created
    /// encrypted.
    pub fn with_passphrase(mut self, key: Option<Passphrase>) -> Self {
        self.key = key;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether stores are opened with a passphrase (kept encrypted at rest).
    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }

    pub fn embedder(&self) -> Option<&(dyn Embedder + Send + Sync)> {
        self.embedder.as_deref()
    }

    /// `user`'s memory (the id is validated: it names the one file this handle can read).
    pub fn open(&self, user: &str) -> Result<UserMemory> {
        UserMemory::open_with(&self.dir, user, self.key.as_ref())
    }

    /// The query's vector, when there is an embedder.
    pub fn embed_query(&self, text: &str) -> Result<Option<(String, Vec<f32>)>> {
        let Some(e) = &self.embedder else {
            return Ok(None);
        };
        Ok(e.embed(&[text])?.pop().map(|v| (e.name().to_string(), v)))
    }

    /// Remembers `m` (an explicit "remember this"), with its vector when there is an embedder and
    /// it has none.
    pub fn remember(&self, mem: &mut UserMemory, mut m: NewMemory) -> Result<Applied> {
        if m.embedding.is_none() {
            m.embedding = self
                .embed_query(&m.text)?
                .map(|(model, vector)| Embedding { model, vector });
        }
        mem.remember(m)
    }

    /// Corrects memory `id`'s text (and kind), and its vector with it.
    pub fn edit(
        &self,
        mem: &mut UserMemory,
        id: i64,
        text: &str,
        kind: Option<Kind>,
    ) -> Result<()> {
        mem.edit(id, text, kind)?;
        if let Some((model, v)) = self.embed_query(text)? {
            mem.set_embedding(id, &model, &v)?;
        }
        Ok(())
    }

    /// The current memories worth putting in the prompt for `message`, best first, within the
    /// token budget (`count_tokens` is the chat model's tokenizer where there is one).
    pub fn recall(
        &self,
        mem: &UserMemory,
        message: &str,
        count_tokens: &dyn Fn(&str) -> usize,
    ) -> Result<Vec<Hit>> {
        self.recall_with(self.recall, mem, message, count_tokens)
    }

    /// `recall` under other limits (a caller with a small context lowers the budget).
    pub fn recall_with(
        &self,
        c: RecallConfig,
        mem: &UserMemory,
        message: &str,
        count_tokens: &dyn Fn(&str) -> usize,
    ) -> Result<Vec<Hit>> {
        if c.limit == 0 || c.token_budget == 0 {
            return Ok(Vec::new());
        }
        let qv = self.embed_query(message)?;
        let q = Query {
            embedding: qv.as_ref().map(|(m, v)| (m.as_str(), v.as_slice())),
            limit: c.limit,
            token_budget: Some(c.token_budget),
            count_tokens,
            ..Query::new(message)
        };
        Ok(self.relevant(mem.search(&q)?, c.min_cosine))
    }

    /// A user's search (the memory panel, `GET /v1/memories?q=`): like `recall`, only memories
    /// that share a word with the query or are near it in meaning, but any number of them and,
    /// with `include_invalid`, closed ones too.
    pub fn search(
        &self,
        mem: &UserMemory,
        text: &str,
        limit: usize,
        include_invalid: bool,
    ) -> Result<Vec<Hit>> {
        let qv = self.embed_query(text)?;
        let q = Query {
            embedding: qv.as_ref().map(|(m, v)| (m.as_str(), v.as_slice())),
            limit,
            include_invalid,
            ..Query::new(text)
        };
        Ok(self.relevant(mem.search(&q)?, self.recall.min_cosine))
    }

    fn relevant(&self, hits: Vec<Hit>, min_cosine: f32) -> Vec<Hit> {
        hits.into_iter()
            .filter(|h| h.bm25_rank.is_some() || h.cosine.is_some_and(|s| s >= min_cosine))
            .collect()
    }

    /// Stores the turn and applies what the user's message says about them (rules: instant and
    /// deterministic). Runs after the reply was sent, so it never delays it.
    pub fn learn(&self, mem: &mut UserMemory, turn: &FinishedTurn) -> Result<Learned> {
        let start = Instant::now();
        let title = conversation_title(turn.conversation);
        let conversation = match mem.find_conversation(&title)? {
            Some(id) => id,
            None => mem.add_conversation(&title, None)?,
        };
        let user_turn = mem.add_turn(conversation, None, "user", turn.user, None)?;
        mem.add_turn(conversation, None, "assistant", turn.reply, None)?;
        let pipeline = Pipeline {
            extractors: vec![&RuleExtractor],
            embedder: self.embedder.as_deref().map(|e| e as &dyn Embedder),
        };
        let source = Source {
            conversation,
            turn: Some(user_turn),
        };
        let applied = pipeline
            .process(mem, turn.user, Some(source), None)?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        Ok(Learned {
            conversation,
            user_turn,
            applied,
            millis: start.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// `messages` with the memory section first: merged into a leading system message, or as one.
/// The section stays plain text (rendered without parsing special tokens), so a remembered
/// sentence cannot forge a turn.
pub fn with_memories<M>(
    messages: &mut Vec<M>,
    hits: &[Hit],
    role_of: impl Fn(&M) -> &str,
    content_of: impl Fn(&mut M) -> &mut String,
    system: impl FnOnce(String) -> M,
) {
    if hits.is_empty() {
        return;
    }
    let section = crate::search::format_for_prompt(hits);
    match messages.first_mut() {
        Some(first) if role_of(first) == "system" => {
            let c = content_of(first);
            c.push_str("\n\n");
            c.push_str(section.trim_end());
        }
        _ => messages.insert(0, system(section.trim_end().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_closes_the_fact_it_denies_and_only_that_one() {
        let dir = tempfile::tempdir().unwrap();
        let memory = ChatMemory::new(dir.path().to_path_buf(), None);
        let mut m = memory.open("u").unwrap();
        let say = |m: &mut UserMemory, user| {
            let t = FinishedTurn {
                conversation: Some("c"),
                user,
                reply: "ok",
            };
            memory.learn(m, &t).unwrap()
        };
        let current = |m: &UserMemory| -> Vec<String> {
            m.list(false).unwrap().into_iter().map(|x| x.text).collect()
        };
        say(
            &mut m,
            "I'm allergic to peanuts. I live in Lyon. I work at Acme.",
        );
        // A denial of something else closes nothing.
        say(&mut m, "I don't live in Berlin.");
        assert!(current(&m).contains(&"The user lives in Lyon.".to_string()));
        assert!(current(&m).contains(&"The user does not live in Berlin.".to_string()));
        say(
            &mut m,
            "I'm not allergic to peanuts anymore. I no longer work at Acme.",
        );
        let now = current(&m);
        for closed in [
            "The user is allergic to peanuts.",
            "The user works at Acme.",
        ] {
            assert!(!now.contains(&closed.to_string()), "{now:?}");
            // Closed, not deleted: the old fact is in the full list with a successor.
            let all = m.list(true).unwrap();
            let old = all.iter().find(|x| x.text == closed).unwrap();
            assert!(old.valid_until.is_some() && old.superseded_by.is_some());
        }
        assert!(now.contains(&"The user is not allergic to peanuts.".to_string()));
        assert!(now.contains(&"The user no longer works at Acme.".to_string()));
        assert!(now.contains(&"The user lives in Lyon.".to_string()));
        // A denial of a longer value closes nothing ("York" is not "New York").
        say(&mut m, "I live in New York.");
        say(&mut m, "I don't live in York.");
        assert!(current(&m).contains(&"The user lives in New York.".to_string()));
        // Not the user's own statement: no denial.
        for not_a_denial in [
            "If I'm not allergic to peanuts, I'll eat the cake.",
            "My sister thinks I'm not allergic to peanuts, but I am.",
            "I hope I'm not allergic to shellfish.",
            "Suppose I no longer work at Globex.",
            "You said I don't live in New York.",
            "I don't work as hard as I used to.",
            "I don't work for free.",
            "I don't live in the past.",
        ] {
            let l = say(&mut m, not_a_denial);
            assert!(l.applied.is_empty(), "{not_a_denial}: {:?}", l.applied);
        }
        // Said again, the denial is one memory; the positive again reopens the slot.
        say(&mut m, "I am not allergic to peanuts.");
        say(&mut m, "I'm allergic to peanuts after all.");
        let now = current(&m);
        assert!(
            now.contains(&"The user is allergic to peanuts.".to_string()),
            "{now:?}"
        );
        assert!(!now.iter().any(|t| t.contains("not allergic")), "{now:?}");
        // A denial stored while nothing it denies was remembered is closed by the affirmation.
        say(&mut m, "I don't live in Berlin.");
        say(&mut m, "I live in Berlin.");
        let now = current(&m);
        assert!(
            now.contains(&"The user lives in Berlin.".to_string()),
            "{now:?}"
        );
        assert!(
            !now.iter().any(|t| t.contains("not live in Berlin")),
            "{now:?}"
        );
    }

    #[test]
    fn learning_keys_conversations_and_recall_needs_a_word_or_a_near_vector() {
        let dir = tempfile::tempdir().unwrap();
        let memory = ChatMemory::new(dir.path().to_path_buf(), None);
        let mut m = memory.open("u").unwrap();
        let t = |user| FinishedTurn {
            conversation: Some("abc"),
            user,
            reply: "ok",
        };
        let a = memory.learn(&mut m, &t("I live in Lyon.")).unwrap();
        let b = memory.learn(&mut m, &t("What's up?")).unwrap();
        assert_eq!(a.conversation, b.conversation);
        assert_eq!(a.applied.len(), 1);
        assert!(b.applied.is_empty());
        assert_eq!(m.turns(a.conversation).unwrap().len(), 4);
        let other = memory
            .learn(
                &mut m,
                &FinishedTurn {
                    conversation: None,
                    user: "hi",
                    reply: "hello",
                },
            )
            .unwrap();
        assert_ne!(other.conversation, a.conversation);
        let today = &crate::time::format_ms(crate::time::now_ms())[..10];
        let dated = memory
            .learn(
                &mut m,
                &FinishedTurn {
                    conversation: Some(today),
                    user: "hi",
                    reply: "hello",
                },
            )
            .unwrap();
        assert_ne!(
            dated.conversation, other.conversation,
            "a key is not the day"
        );
        m.remember(NewMemory::new("The user plays chess.", Kind::Fact))
            .unwrap();
        let est = crate::text::estimate_tokens;
        let hits = memory.recall(&m, "where do I live?", &est).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert!(hits[0].memory.text.contains("Lyon"));
        assert!(memory
            .recall(&m, "tell me a joke", &est)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_changed_value_near_in_meaning_is_kept_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = UserMemory::open(dir.path(), "u").unwrap();
        // The same vector for both: as near in meaning as can be.
        let with = |text: &str| NewMemory {
            embedding: Some(crate::Embedding {
                model: "e".into(),
                vector: vec![1.0, 0.5, 0.25],
            }),
            ..NewMemory::new(text, Kind::Event)
        };
        let a = m
            .remember(with("The dentist appointment is on May 3 at 10am."))
            .unwrap();
        let b = m
            .remember(with("The dentist appointment is on May 4 at 10am."))
            .unwrap();
        assert_ne!(a.id(), b.id());
        // Saying less than what is known is a repeat.
        let c = m
            .remember(with("The dentist appointment is on May 4."))
            .unwrap();
        assert_eq!(c.id(), b.id());
        assert!(matches!(c, crate::Applied::Reaffirmed { .. }), "{c:?}");
    }

    #[test]
    fn the_section_joins_a_system_message_or_leads() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = UserMemory::open(dir.path(), "u").unwrap();
        m.remember(NewMemory::new("The user is vegan.", Kind::Fact))
            .unwrap();
        let hits = m.search(&Query::new("vegan")).unwrap();
        type Msg = (String, String);
        let sys = |c: String| ("system".to_string(), c);
        let mut a: Vec<Msg> = vec![("user".into(), "hi".into())];
        with_memories(&mut a, &hits, |m| &m.0, |m| &mut m.1, sys);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].0, "system");
        assert!(a[0].1.contains("The user is vegan."));
        let mut b: Vec<Msg> = vec![("system".into(), "Be brief.".into()), a[1].clone()];
        with_memories(&mut b, &hits, |m| &m.0, |m| &mut m.1, sys);
        assert_eq!(b.len(), 2);
        assert!(b[0].1.starts_with("Be brief.\n\nWhat you remember"));
        let mut c = b.clone();
        with_memories(&mut c, &[], |m| &m.0, |m| &mut m.1, sys);
        assert_eq!(c, b);
    }
}
