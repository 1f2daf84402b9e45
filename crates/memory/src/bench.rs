//! The memory benchmark: synthetic multi-session conversations in which facts are introduced,
//! repeated, updated, contradicted, forgotten, and told about other people, with questions whose
//! gold evidence is the turn that stated the answer. Retrieval only (no LLM judge).
use crate::error::Result;
use crate::ingest::{IngestFile, IngestTurn, Pipeline, Session};
use crate::search::Query;
use crate::store::UserMemory;
use crate::types::{Kind, NewMemory};
use crate::Embedder;
use autodidact_model::Message;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// A small deterministic generator (xorshift64*), so every run sees the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

const CITIES: &[&str] = &[
    "Lisbon",
    "Osaka",
    "Denver",
    "Krakow",
    "Nairobi",
    "Montreal",
    "Hobart",
    "Valparaiso",
    "Tallinn",
    "Accra",
    "Bergen",
    "Cusco",
];
const JOBS: &[&str] = &[
    "nurse",
    "carpenter",
    "data analyst",
    "pilot",
    "teacher",
    "baker",
    "architect",
    "veterinarian",
    "translator",
    "electrician",
];
const FOODS: &[&str] = &[
    "peanuts",
    "shellfish",
    "gluten",
    "sesame",
    "kiwi",
    "soy",
    "eggs",
    "mustard",
];
const HOBBIES: &[&str] = &[
    "rock climbing",
    "knitting",
    "chess",
    "birdwatching",
    "salsa dancing",
    "pottery",
    "surfing",
    "gardening",
    "jazz piano",
    "astronomy",
];
const NAMES: &[&str] = &[
    "Ana", "Tomasz", "Keiko", "Rafael", "Ingrid", "Kwame", "Lucia", "Omar", "Priya", "Sven",
];
const COLORS: &[&str] = &["teal", "crimson", "ochre", "lavender", "olive", "amber"];
const FILLER: &[&str] = &[
    "Can you suggest a good book for a long train ride?",
    "What's a quick recipe for dinner tonight?",
    "How do I convert Celsius to Fahrenheit?",
    "Tell me a fun fact about octopuses.",
    "Any tips for sleeping better?",
    "Explain what a mortgage is in simple words.",
    "How long should I boil an egg?",
    "What are some good stretches after running?",
    "Write a haiku about autumn.",
    "Why is the sky blue?",
];

#[derive(Debug, Clone, Serialize)]
pub struct Question {
    /// single, repeated, updated, contradicted, forgotten, other_people.
    pub kind: &'static str,
    pub text: String,
    /// Ext ids of the turns whose memory answers it (any of them counts).
    pub gold_turns: Vec<String>,
    /// Text that must not come back (a forgotten fact, a superseded value).
    pub forbidden: Vec<String>,
    /// What a right reply says (case aside); `None` where there is nothing to say.
    pub answer: Option<String>,
}

pub struct Dataset {
    pub file: IngestFile,
    pub questions: Vec<Question>,
    /// Session ids the user asks to forget after ingest.
    pub forget: Vec<String>,
}

struct Builder {
    sessions: Vec<Session>,
    rng: Rng,
    turn: usize,
}

impl Builder {
    // The last session is the one the user forgets: facts asked about stay out of it.
    fn say_early(&mut self, text: String) -> String {
        let s = self.rng.below((self.sessions.len() - 1) / 2);
        self.say(s, text)
    }

    fn say_late(&mut self, text: String) -> String {
        let n = self.sessions.len() - 1;
        let s = n / 2 + self.rng.below(n - n / 2);
        self.say(s, text)
    }

    fn say_any(&mut self, text: String) -> String {
        let s = self.rng.below(self.sessions.len() - 1);
        self.say(s, text)
    }

    /// Adds a user turn (with an assistant reply and some filler around it) to session `s`;
    /// returns the user turn's id.
    fn say(&mut self, s: usize, text: String) -> String {
        if self.rng.below(2) == 0 {
            let f = self.rng.pick(FILLER).to_string();
            self.push(s, "user", f);
            self.push(s, "assistant", "Here is what I can tell you.".into());
        }
        let id = self.push(s, "user", text);
        self.push(s, "assistant", "Thanks for telling me.".into());
        id
    }

    fn push(&mut self, s: usize, speaker: &str, text: String) -> String {
        self.turn += 1;
        let id = format!("t{}", self.turn);
        self.sessions[s].turns.push(IngestTurn {
            id: id.clone(),
            speaker: speaker.into(),
            text,
        });
        id
    }
}

/// `sessions` sessions (at least 8), a day apart, and the questions about them.
pub fn generate(sessions: usize, seed: u64) -> Dataset {
    let n = sessions.max(8);
    let mut b = Builder {
        sessions: (0..n)
            .map(|i| Session {
                id: Some(format!("s{i}")),
                title: None,
                date: crate::time::format_ms(1_704_067_200_000 + i as i64 * 86_400_000),
                turns: Vec::new(),
            })
            .collect(),
        rng: Rng::new(seed),
        turn: 0,
    };
    let mut q = Vec::new();

    // single: stated once.
    let name = b.rng.pick(NAMES);
    let t = b.say_early(format!("By the way, my name is {name}."));
    q.push(Question {
        kind: "single",
        text: "What is my name?".into(),
        gold_turns: vec![t],
        forbidden: vec![],
        answer: Some(name.to_string()),
    });
    let job = b.rng.pick(JOBS);
    let t = b.say_early(format!("I work as a {job}, so my shifts are long."));
    q.push(Question {
        kind: "single",
        text: "What do I do for a living?".into(),
        gold_turns: vec![t],
        forbidden: vec![],
        answer: Some(job.to_string()),
    });
    let color = b.rng.pick(COLORS);
    let t = b.say_any(format!("My favorite color is {color}."));
    q.push(Question {
        kind: "single",
        text: "Which color do I like best?".into(),
        gold_turns: vec![t],
        forbidden: vec![],
        answer: Some(color.to_string()),
    });

    // repeated: said in two sessions; either turn is evidence of the one memory.
    let food = b.rng.pick(FOODS);
    let t1 = b.say_early(format!("I'm allergic to {food}."));
    let t2 = b.say_late(format!("Just a reminder: I'm allergic to {food}!"));
    q.push(Question {
        kind: "repeated",
        text: "Do I have any food allergies?".into(),
        gold_turns: vec![t1, t2],
        forbidden: vec![],
        answer: Some(food.to_string()),
    });
    let hobby = b.rng.pick(HOBBIES);
    let t1 = b.say_early(format!("I love {hobby}."));
    let t2 = b.say_late(format!("I love {hobby}, as I said."));
    q.push(Question {
        kind: "repeated",
        text: format!("What do I think about {hobby}?"),
        gold_turns: vec![t1, t2],
        forbidden: vec![],
        answer: Some("love".into()),
    });

    // updated: a new value for a slot; the new one must come first and the old one not at all.
    let (c1, c2) = two(&mut b.rng, CITIES);
    b.say_early(format!("I live in {c1}."));
    let t = b.say_late(format!("Big news: I moved to {c2}."));
    q.push(Question {
        kind: "updated",
        text: "Which city do I live in?".into(),
        gold_turns: vec![t],
        // The user's old home; a friend may well live there.
        forbidden: vec![format!("user lives in {c1}")],
        answer: Some(c2.to_string()),
    });
    let (e1, e2) = two(
        &mut b.rng,
        &[
            "Acme",
            "Globex",
            "Initech",
            "Umbrella Labs",
            "Hooli",
            "Vandelay",
        ],
    );
    b.say_early(format!("I work at {e1}."));
    let t = b.say_late(format!("I now work at {e2}."));
    q.push(Question {
        kind: "updated",
        text: "Where do I work?".into(),
        gold_turns: vec![t],
        forbidden: vec![format!("user works at {e1}")],
        answer: Some(e2.to_string()),
    });

    // contradicted: a preference reversed.
    let food2 = b.rng.pick(&[
        "coriander",
        "olives",
        "blue cheese",
        "mushrooms",
        "licorice",
    ]);
    b.say_early(format!("I like {food2}."));
    let t = b.say_late(format!("Honestly, I hate {food2} now."));
    q.push(Question {
        kind: "contradicted",
        text: format!("How do I feel about {food2}?"),
        gold_turns: vec![t],
        forbidden: vec![format!("likes {food2}")],
        answer: Some("hate".into()),
    });

    // forgotten: a session the user deletes; nothing from it may come back.
    let fs = n - 1;
    let secret = b.rng.pick(&[
        "Tuesday dentist appointment",
        "surprise party plan",
        "loan application",
    ]);
    b.say(fs, format!("Remember that my {secret} is confidential."));
    q.push(Question {
        kind: "forgotten",
        text: format!("What about my {secret}?"),
        gold_turns: vec![],
        forbidden: vec![secret.into()],
        answer: None,
    });

    // other people: facts about someone else, in the two shapes people use.
    let (p1, p2) = two(&mut b.rng, NAMES);
    let t = b.say_any(format!("My sister's name is {p1}."));
    q.push(Question {
        kind: "other_people",
        text: "What is my sister called?".into(),
        gold_turns: vec![t],
        forbidden: vec![],
        answer: Some(p1.to_string()),
    });
    let city = b.rng.pick(CITIES);
    let t = b.say_any(format!("My friend {p2} lives in {city}."));
    q.push(Question {
        kind: "other_people",
        text: format!("Where does {p2} live?"),
        gold_turns: vec![t],
        forbidden: vec![],
        answer: Some(city.to_string()),
    });

    // Distractors: many other likes, so the questions compete with real noise.
    for _ in 0..n * 2 {
        let s = b.rng.below(n);
        let h = format!(
            "{} {}",
            b.rng
                .pick(&["vintage", "modern", "local", "Italian", "Korean"]),
            b.rng.pick(&[
                "films",
                "bakeries",
                "poetry",
                "board games",
                "sneakers",
                "podcasts"
            ])
        );
        b.say(s, format!("I enjoy {h}."));
    }
    Dataset {
        file: IngestFile {
            sessions: b.sessions,
        },
        questions: q,
        forget: vec![format!("s{fs}")],
    }
}

fn two<'a>(r: &mut Rng, xs: &[&'a str]) -> (&'a str, &'a str) {
    let a = r.below(xs.len());
    let b = (a + 1 + r.below(xs.len() - 1)) % xs.len();
    (xs[a], xs[b])
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct TypeScore {
    pub questions: usize,
    pub hits_at_k: usize,
    /// Questions whose forbidden text came back in the top k.
    pub leaks: usize,
}

/// A question whose gold evidence was not among the top k, and what came back instead.
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub kind: &'static str,
    pub question: String,
    pub retrieved: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecallReport {
    pub k: usize,
    pub by_type: BTreeMap<&'static str, TypeScore>,
    pub mean_context_tokens: f64,
    /// Questions asked in all (the mean above is over these).
    pub asked: usize,
    pub misses: Vec<Miss>,
}

impl RecallReport {
    /// Adds `other`'s questions (another user's dataset) to this report.
    pub fn merge(&mut self, other: RecallReport) {
        let total = self.mean_context_tokens * self.asked as f64
            + other.mean_context_tokens * other.asked as f64;
        self.asked += other.asked;
        self.mean_context_tokens = total / self.asked.max(1) as f64;
        for (ty, s) in other.by_type {
            let t = self.by_type.entry(ty).or_default();
            t.questions += s.questions;
            t.hits_at_k += s.hits_at_k;
            t.leaks += s.leaks;
        }
        self.misses.extend(other.misses);
    }

    /// Recall over the types that have gold evidence.
    pub fn overall(&self) -> f64 {
        let (h, n) = self
            .by_type
            .values()
            .filter(|t| t.questions > 0)
            .fold((0, 0), |(h, n), t| (h + t.hits_at_k, n + t.questions));
        h as f64 / n.max(1) as f64
    }
}

/// Ingests `ds`, forgets its forgotten sessions, and asks every question.
pub fn run_recall(
    mem: &mut UserMemory,
    ds: &Dataset,
    pipeline: &Pipeline,
    k: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<(RecallReport, f64)> {
    let t = Instant::now();
    let stats = pipeline.ingest(mem, &ds.file, &[])?;
    let turns_per_s = stats.turns as f64 / t.elapsed().as_secs_f64();
    for c in mem.conversations()? {
        if ds.forget.contains(&c.title) {
            mem.forget_conversation(c.id)?;
        }
    }
    // Ext turn id → stored turn id.
    let mut turn_ids = BTreeMap::new();
    for c in mem.conversations()? {
        for t in mem.turns(c.id)? {
            if let Some(e) = t.ext_id {
                turn_ids.insert(e, t.id);
            }
        }
    }
    let mut by_type: BTreeMap<&'static str, TypeScore> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut tokens = 0usize;
    for question in &ds.questions {
        let hits = recall(mem, pipeline, &question.text, k, count_tokens)?;
        tokens += count_tokens(&crate::search::format_for_prompt(&hits));
        let score = by_type.entry(question.kind).or_default();
        if !question.gold_turns.is_empty() {
            score.questions += 1;
            let gold: Vec<i64> = question
                .gold_turns
                .iter()
                .filter_map(|g| turn_ids.get(g).copied())
                .collect();
            if hits.iter().any(|h| {
                h.memory
                    .sources
                    .iter()
                    .any(|s| s.turn.is_some_and(|t| gold.contains(&t)))
            }) {
                score.hits_at_k += 1;
            } else {
                misses.push(Miss {
                    kind: question.kind,
                    question: question.text.clone(),
                    retrieved: hits.iter().map(|h| h.memory.text.clone()).collect(),
                });
            }
        }
        let lower: Vec<String> = hits.iter().map(|h| h.memory.text.to_lowercase()).collect();
        if question
            .forbidden
            .iter()
            .any(|f| lower.iter().any(|t| t.contains(&f.to_lowercase())))
        {
            score.leaks += 1;
        }
    }
    let report = RecallReport {
        k,
        by_type,
        mean_context_tokens: tokens as f64 / ds.questions.len().max(1) as f64,
        asked: ds.questions.len(),
        misses,
    };
    Ok((report, turns_per_s))
}

/// The top `k` memories for `text`, as the benchmark's questions are asked.
fn recall(
    mem: &UserMemory,
    pipeline: &Pipeline,
    text: &str,
    k: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<Vec<crate::search::Hit>> {
    let qv = match pipeline.embedder {
        Some(e) => Some((e.name().to_string(), e.embed(&[text])?.remove(0))),
        None => None,
    };
    let q = Query {
        embedding: qv.as_ref().map(|(m, v)| (m.as_str(), v.as_slice())),
        limit: k,
        token_budget: Some(2000),
        count_tokens,
        ..Query::new(text)
    };
    mem.search(&q)
}

/// One question put to the chat model twice: with what memory recalls for it (as chat puts
/// memories into a prompt: a leading system section) and with nothing.
#[derive(Debug, Clone)]
pub struct AnswerPrompt {
    pub kind: &'static str,
    pub question: String,
    pub gold: String,
    pub with_memory: Vec<Message>,
    pub without_memory: Vec<Message>,
}

/// The prompts for every question of `ds` that has an answer, from a store `run_recall` has
/// filled.
pub fn answer_prompts(
    mem: &UserMemory,
    ds: &Dataset,
    pipeline: &Pipeline,
    k: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Result<Vec<AnswerPrompt>> {
    let mut out = Vec::new();
    for q in &ds.questions {
        let Some(gold) = &q.answer else { continue };
        let hits = recall(mem, pipeline, &q.text, k, count_tokens)?;
        let without = vec![Message::new("user", &q.text)];
        let mut with = without.clone();
        crate::chat::with_memories(
            &mut with,
            &hits,
            |m| m.role.as_str(),
            |m| &mut m.content,
            |c| Message::new("system", &c),
        );
        out.push(AnswerPrompt {
            kind: q.kind,
            question: q.text.clone(),
            gold: gold.clone(),
            with_memory: with,
            without_memory: without,
        });
    }
    Ok(out)
}

/// Replies that say the answer, with memories and without, per question type.
#[derive(Debug, Default, Clone, Serialize)]
pub struct AnswerReport {
    /// Type → (asked, right with memories, right without).
    pub by_type: BTreeMap<&'static str, [usize; 3]>,
    /// A few replies with memories, as (question, gold, reply).
    pub examples: Vec<(String, String, String)>,
    /// Replies with memories that copy the memory section itself (never counted right: the
    /// answer is in them only because the prompt is).
    pub echoes: usize,
    /// Right replies with memories whose first line alone holds the answer in at most
    /// [`CONCISE_WORDS`] words: the strict count, since "holds the answer" also credits a reply
    /// that restates every recalled memory.
    pub concise: usize,
}

/// The most words a concise answer's first line has.
pub const CONCISE_WORDS: usize = 12;

/// Whether `reply`'s first non-empty line holds `gold` (case aside) in at most
/// [`CONCISE_WORDS`] words.
fn concise_answer(reply: &str, gold: &str) -> bool {
    let line = reply
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.split_whitespace().count() <= CONCISE_WORDS
        && line.to_lowercase().contains(&gold.to_lowercase())
}

/// Whether `reply` copies the memory section a prompt carried (its heading or an entry's
/// `- [id]` form).
fn copies_memory_section(reply: &str) -> bool {
    let head = crate::search::format_for_prompt(&[]);
    reply.contains(head.trim_end().trim_end_matches(':')) || reply.contains("- [")
}

impl AnswerReport {
    /// Scores `with[i]` and `without[i]`, the replies to `prompts[i]`: right when the reply holds
    /// the gold answer, case aside, and does not copy the memory section (a reply that only
    /// echoes the question never holds it: no question names its answer).
    pub fn score(prompts: &[AnswerPrompt], with: &[String], without: &[String]) -> Self {
        let mut r = AnswerReport::default();
        for (i, p) in prompts.iter().enumerate() {
            let says = |reply: Option<&String>| {
                reply.is_some_and(|t| {
                    t.to_lowercase().contains(&p.gold.to_lowercase()) && !copies_memory_section(t)
                })
            };
            r.echoes += with.get(i).is_some_and(|t| copies_memory_section(t)) as usize;
            let e = r.by_type.entry(p.kind).or_default();
            e[0] += 1;
            let right = says(with.get(i));
            e[1] += right as usize;
            r.concise +=
                (right && with.get(i).is_some_and(|t| concise_answer(t, &p.gold))) as usize;
            e[2] += says(without.get(i)) as usize;
            if r.examples.len() < 6 {
                r.examples.push((
                    p.question.clone(),
                    p.gold.clone(),
                    with.get(i).cloned().unwrap_or_default(),
                ));
            }
        }
        r
    }

    pub fn merge(&mut self, other: AnswerReport) {
        for (k, v) in other.by_type {
            let e = self.by_type.entry(k).or_default();
            for j in 0..3 {
                e[j] += v[j];
            }
        }
        self.examples.extend(other.examples);
        self.echoes += other.echoes;
        self.concise += other.concise;
    }

    /// (asked, right with memories, right without) over every type.
    pub fn total(&self) -> [usize; 3] {
        self.by_type
            .values()
            .fold([0; 3], |a, v| [a[0] + v[0], a[1] + v[1], a[2] + v[2]])
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub memories: usize,
    pub dim: usize,
    pub queries: usize,
    pub fill_seconds: f64,
    pub bm25_p50_ms: f64,
    pub bm25_p95_ms: f64,
    pub hybrid_p50_ms: f64,
    pub hybrid_p95_ms: f64,
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// Search latency over `n` memories with `dim`-dimensional vectors. Texts come from the same
/// vocabulary as the recall set; vectors are random unit vectors (the scan's cost does not
/// depend on their values).
pub fn run_latency(
    mem: &mut UserMemory,
    n: usize,
    dim: usize,
    queries: usize,
) -> Result<LatencyReport> {
    let mut r = Rng::new(7);
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let text = match r.below(5) {
            0 => format!(
                "The user enjoys {} {} (note {i}).",
                r.pick(HOBBIES),
                r.pick(COLORS)
            ),
            1 => format!(
                "The user visited {} with {} (trip {i}).",
                r.pick(CITIES),
                r.pick(NAMES)
            ),
            2 => format!(
                "The user's {} friend {} works as a {} (record {i}).",
                r.pick(COLORS),
                r.pick(NAMES),
                r.pick(JOBS)
            ),
            3 => format!(
                "The user cooked something without {} on day {i}.",
                r.pick(FOODS)
            ),
            _ => format!(
                "The user read about {} in {} (item {i}).",
                r.pick(HOBBIES),
                r.pick(CITIES)
            ),
        };
        let v: Vec<f32> = (0..dim).map(|_| r.unit()).collect();
        batch.push(NewMemory {
            embedding: Some(crate::types::Embedding {
                model: "random".into(),
                vector: v,
            }),
            ..NewMemory::new(text, Kind::Fact)
        });
        if batch.len() == 10_000 || i + 1 == n {
            mem.add_many(std::mem::take(&mut batch))?;
        }
    }
    let fill_seconds = t.elapsed().as_secs_f64();
    let qs: Vec<(String, Vec<f32>)> = (0..queries)
        .map(|_| {
            let text = match r.below(3) {
                0 => format!("what does the user think of {}", r.pick(HOBBIES)),
                1 => format!("did the user travel to {}", r.pick(CITIES)),
                _ => format!("who is {}", r.pick(NAMES)),
            };
            (text, (0..dim).map(|_| r.unit()).collect())
        })
        .collect();
    // The first vector query loads the index into memory; that is a one-off per process.
    mem.search(&Query {
        embedding: Some(("random", &qs[0].1)),
        ..Query::new(&qs[0].0)
    })?;
    let (mut lex, mut hyb) = (Vec::new(), Vec::new());
    for (text, v) in &qs {
        let t = Instant::now();
        mem.search(&Query::new(text))?;
        lex.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        mem.search(&Query {
            embedding: Some(("random", v)),
            ..Query::new(text)
        })?;
        hyb.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(LatencyReport {
        memories: n,
        dim,
        queries,
        fill_seconds,
        bm25_p50_ms: percentile(&mut lex, 0.5),
        bm25_p95_ms: percentile(&mut lex, 0.95),
        hybrid_p50_ms: percentile(&mut hyb, 0.5),
        hybrid_p95_ms: percentile(&mut hyb, 0.95),
    })
}

/// Keeps `Embedder` in scope for callers building pipelines.
pub fn pipeline<'a>(
    extractors: Vec<&'a dyn crate::Extractor>,
    embedder: Option<&'a dyn Embedder>,
) -> Pipeline<'a> {
    Pipeline {
        extractors,
        embedder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::RuleExtractor;

    #[test]
    fn small_benchmark_runs_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let mut mem = UserMemory::open(dir.path(), "bench").unwrap();
        let ds = generate(8, 1);
        let p = pipeline(vec![&RuleExtractor], None);
        let (r, _) = run_recall(&mut mem, &ds, &p, 5, &crate::text::estimate_tokens).unwrap();
        assert_eq!(r.by_type["forgotten"].leaks, 0);
        assert_eq!(r.by_type["updated"].leaks, 0);
        assert!(r.by_type["single"].hits_at_k >= 2, "{r:?}");
    }

    #[test]
    fn answers_are_asked_with_recalled_memories_and_without() {
        let dir = tempfile::tempdir().unwrap();
        let mut mem = UserMemory::open(dir.path(), "bench").unwrap();
        let ds = generate(8, 1);
        let p = pipeline(vec![&RuleExtractor], None);
        run_recall(&mut mem, &ds, &p, 5, &crate::text::estimate_tokens).unwrap();
        let prompts = answer_prompts(&mem, &ds, &p, 5, &crate::text::estimate_tokens).unwrap();
        // Every question but the forgotten one has an answer; no question names its own.
        assert_eq!(prompts.len(), ds.questions.len() - 1);
        for q in &prompts {
            assert!(!q.question.to_lowercase().contains(&q.gold.to_lowercase()));
            assert_eq!(q.without_memory.len(), 1);
            // Nothing recalled: the two prompts are the same.
            assert!(q.with_memory.len() == 1 || q.with_memory[0].role == "system");
        }
        let recalled = prompts.iter().filter(|q| q.with_memory.len() == 2).count();
        assert!(recalled * 2 > prompts.len(), "{prompts:?}");
        let city = prompts.iter().find(|q| q.kind == "updated").unwrap();
        assert!(city.with_memory[0].content.contains(&city.gold), "{city:?}");
        // A reply that holds the answer is right, whatever its case; an echo never is.
        let with: Vec<String> = prompts.iter().map(|p| p.gold.to_uppercase()).collect();
        let without: Vec<String> = prompts.iter().map(|p| p.question.clone()).collect();
        let r = AnswerReport::score(&prompts, &with, &without);
        assert_eq!(r.total(), [prompts.len(), prompts.len(), 0]);
        assert_eq!(r.concise, prompts.len());
        // Right, but only after a long first line: not concise.
        let long: Vec<String> = prompts
            .iter()
            .map(|p| format!("{} {}", "word ".repeat(CONCISE_WORDS), p.gold))
            .collect();
        let r = AnswerReport::score(&prompts, &long, &without);
        assert_eq!((r.total()[1], r.concise), (prompts.len(), 0));
        // Copying the memory section back is no answer, though the answer is in it.
        let echo: Vec<String> = prompts
            .iter()
            .map(|p| {
                p.with_memory
                    .first()
                    .map(|m| m.content.clone())
                    .unwrap_or_default()
            })
            .collect();
        let r = AnswerReport::score(&prompts, &echo, &without);
        assert_eq!(r.total()[1], 0);
        assert_eq!(r.echoes, recalled);
    }
}
