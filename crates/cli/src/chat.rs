//! `autodidact run`: streaming chat with line editing and history; Ctrl-C stops a reply, `/exit`,
//! Ctrl-D or a second Ctrl-C at the prompt ends. Once the conversation outgrows the context, the
//! oldest turns are dropped (system messages stay) and the user is told.
use anyhow::{Context, Result};
use autodidact_engine::{Batch, FinishReason, GenConfig, Request, SamplingParams};
use autodidact_memory::chat::{with_memories, ChatMemory, FinishedTurn};
use autodidact_memory::extract::{Extractor, RuleExtractor};
use autodidact_memory::{Hit, UserMemory};
use autodidact_model::{ChatTemplate, LoraAdapter, Message, Model};
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What `run` was asked for.
pub struct ChatOptions {
    pub params: SamplingParams,
    pub n_ctx: usize,
    /// Answer this once and exit instead of chatting.
    pub prompt: Option<String>,
    pub adapter: Option<Arc<LoraAdapter>>,
    /// How the user named the adapter, for the greeting.
    pub adapter_name: Option<String>,
    /// `AUTODIDACT_HOME`, where the line history is kept.
    pub home: PathBuf,
    /// The user's memory (`None` with `--no-memory`): recalled into each prompt, learned from
    /// after each reply.
    pub memory: Option<Memory>,
}

/// One user's memory in a chat session.
pub struct Memory {
    pub chat: ChatMemory,
    pub user: UserMemory,
    /// This session's conversation key (its turns are stored under it).
    pub session: String,
}

impl Memory {
    /// The memories for `text`, counted in the chat model's tokens; a failure is reported and the
    /// turn goes on without memory.
    fn recall(&self, m: &Model, text: &str, n_ctx: usize) -> Vec<Hit> {
        let count = |t: &str| m.tokenizer.encode(t, false, false).len();
        let mut c = self.chat.recall;
        c.token_budget = c.token_budget.min(n_ctx / 8);
        self.chat
            .recall_with(c, &self.user, text, &count)
            .unwrap_or_else(|e| {
                eprintln!("(memory: recall failed: {e})");
                Vec::new()
            })
    }

    fn learn(&mut self, said: &str, reply: &str) {
        let turn = FinishedTurn {
            conversation: Some(&self.session),
            user: said,
            reply,
        };
        match self.chat.learn(&mut self.user, &turn) {
            Ok(l) => {
                for a in &l.applied {
                    if let Ok(m) = self.user.get(a.id()) {
                        eprintln!("(remembered [{}] {})", m.id, m.text);
                    }
                }
            }
            Err(e) => eprintln!("(memory: could not store this turn: {e})"),
        }
    }

    /// `/remember TEXT`, `/memories`, `/forget ID`; `None` when `line` is none of them.
    fn command(&mut self, line: &str) -> Option<Result<()>> {
        let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        Some(match cmd {
            "/remember" if !rest.is_empty() => self.remember(rest),
            "/memories" => self.user.list(false).map_err(Into::into).map(|list| {
                if list.is_empty() {
                    eprintln!("(no memories yet)");
                }
                for m in list {
                    eprintln!("[{}] {} ({})", m.id, m.text, m.kind);
                }
            }),
            "/forget" => match rest.parse::<i64>() {
                Ok(id) => self
                    .user
                    .forget(id)
                    .map(|_| eprintln!("(forgot memory {id})"))
                    .map_err(Into::into),
                Err(_) => Err(anyhow::anyhow!("usage: /forget ID (ids are in /memories)")),
            },
            _ => return None,
        })
    }

    fn remember(&mut self, text: &str) -> Result<()> {
        let line = format!("remember that {text}");
        let cands = RuleExtractor.extract(&line)?;
        let Some(c) = cands.into_iter().next() else {
            anyhow::bail!("nothing to remember in {text:?}");
        };
        let a = self.chat.remember(&mut self.user, c.into_new(None, None))?;
        let m = self.user.get(a.id())?;
        eprintln!("(remembered [{}] {})", m.id, m.text);
        Ok(())
    }
}

const HELP: &str = "/help     this list
/clear    forget the conversation (a system message stays)
/remember TEXT    remember TEXT about you (memory is on unless --no-memory)
/memories         what is remembered about you
/forget ID        forget memory ID from disk
/exit     leave (also /bye, Ctrl-D, or Ctrl-C twice at the prompt)
Ctrl-C while the model answers stops the answer; ↑/↓ recall earlier lines.";

/// Drops the oldest turns until the prompt leaves `reserve` tokens for the reply; returns the
/// prompt and how many messages went. System messages are never dropped; a user message goes with
/// the reply that followed it, so turns keep alternating.
fn fit(
    m: &Model,
    template: &ChatTemplate,
    (history, recalled): (&mut Vec<Message>, &[Hit]),
    n_ctx: usize,
    reserve: usize,
) -> Result<(Vec<u32>, usize)> {
    let mut dropped = 0;
    loop {
        let mut shown = history.clone();
        with_memories(
            &mut shown,
            recalled,
            |x| x.role.as_str(),
            |x| &mut x.content,
            |c| Message::new("system", &c),
        );
        let prompt = template.render_tokens(&m.tokenizer, &shown)?;
        if prompt.len() + reserve < n_ctx {
            return Ok((prompt, dropped));
        }
        let turns = history.iter().filter(|x| x.role != "system").count();
        let Some(first) = history.iter().position(|x| x.role != "system") else {
            anyhow::bail!("the system message alone fills the context of {n_ctx} tokens");
        };
        if turns <= 1 {
            anyhow::bail!(
                "this message ({} tokens) leaves no room for a reply in the context of {n_ctx}; \
                 shorten it or raise --ctx",
                prompt.len()
            );
        }
        history.remove(first);
        dropped += 1;
        if history
            .get(first)
            .is_some_and(|x| x.role == "assistant" && history.len() > first + 1)
        {
            history.remove(first);
            dropped += 1;
        }
    }
}

/// One answer, streamed to stdout. `batch` lives across turns so each turn reuses the
/// conversation's cached prefix.
fn reply(
    m: &Model,
    batch: &mut Batch,
    template: &ChatTemplate,
    history: &mut Vec<Message>,
    opts: &ChatOptions,
) -> Result<String> {
    let n_ctx = batch.config().n_ctx;
    let reserve = opts.params.max_tokens.clamp(1, (n_ctx / 4).max(1));
    let said = history
        .last()
        .map(|x| x.content.clone())
        .unwrap_or_default();
    let mut recalled = match &opts.memory {
        Some(mem) => mem.recall(m, &said, n_ctx),
        None => Vec::new(),
    };
    // Memory never costs the conversation its place: what fits only without it goes without it.
    let (prompt, dropped) = match fit(m, template, (history, &recalled), n_ctx, reserve) {
        Err(_) if !recalled.is_empty() => {
            recalled.clear();
            fit(m, template, (history, &[]), n_ctx, reserve)?
        }
        r => r?,
    };
    if !recalled.is_empty() {
        let ids: Vec<String> = recalled
            .iter()
            .map(|h| format!("[{}]", h.memory.id))
            .collect();
        eprintln!("(using memories {})", ids.join(" "));
    }
    if dropped > 0 {
        eprintln!(
            "(the conversation outgrew the context of {n_ctx} tokens: dropped its oldest {dropped} messages)"
        );
    }
    let interrupted = crate::ctrl_c_flag()?;
    interrupted.store(false, Ordering::SeqCst);
    let mut out = std::io::stdout().lock();
    batch.add(
        m,
        0,
        Request {
            prompt,
            params: opts.params.clone(),
            json: None,
            adapter: opts.adapter.clone(),
        },
    )?;
    let mut shown = String::new();
    let mut done = Vec::new();
    while !batch.is_empty() {
        done.extend(batch.step(m, |d| {
            // Ctrl-C arrived while this token was computed: it is not shown.
            if interrupted.swap(false, Ordering::SeqCst) {
                return false;
            }
            shown.push_str(d.text);
            let _ = out.write_all(d.text.as_bytes());
            let _ = out.flush();
            true
        })?);
    }
    let (_, c) = &done[0];
    let text = if c.finish == FinishReason::Cancelled {
        write!(out, " [stopped]")?;
        shown
    } else {
        c.text.clone()
    };
    writeln!(out)?;
    Ok(text.trim().to_string())
}

/// The line editor, with the history of earlier sessions loaded (none: this session's only).
fn editor(history: Option<&Path>) -> Result<DefaultEditor> {
    let mut ed = DefaultEditor::new().context("starting the line editor")?;
    if let Some(history) = history.filter(|h| h.exists()) {
        ed.load_history(history)
            .with_context(|| format!("reading {}", history.display()))?;
    }
    Ok(ed)
}

/// Saves the history readable by its owner only: it holds everything the user typed.
fn save_history(ed: &mut DefaultEditor, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    ed.save_history(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

pub fn run(m: &Model, mut opts: ChatOptions) -> Result<()> {
    let template = ChatTemplate::for_tokenizer(&m.tokenizer);
    let mut batch = Batch::new(GenConfig {
        n_ctx: opts.n_ctx,
        max_parked: 1,
        ..GenConfig::default()
    });
    let mut history: Vec<Message> = Vec::new();
    if let Some(p) = &opts.prompt {
        history.push(Message::new("user", p));
        let answer = reply(m, &mut batch, &template, &mut history, &opts)?;
        if let Some(mem) = &mut opts.memory {
            mem.learn(p, &answer);
        }
        return Ok(());
    }
    let name = m
        .gguf
        .get_str("general.name")
        .ok()
        .flatten()
        .unwrap_or("the model");
    let who = match &opts.adapter_name {
        Some(a) => format!("{name} with adapter {a}"),
        None => format!("{name} (base model, no adapter)"),
    };
    eprintln!("chatting with {who}; /help lists commands, /exit or Ctrl-D leaves");
    // What the user types says what memory keeps: with an encrypted store, a plain-text line
    // history would undo the encryption, so it is kept for this session only.
    let encrypted = opts.memory.as_ref().is_some_and(|m| m.chat.encrypted());
    let history_path = (!encrypted).then(|| opts.home.join("history").join("run.txt"));
    let mut ed = editor(history_path.as_deref())?;
    // Install the Ctrl-C handler now: a reply's Ctrl-C must never kill the session.
    crate::ctrl_c_flag()?;
    let tty = std::io::stdin().is_terminal();
    let mut interrupts = 0;
    loop {
        // On a terminal the editor draws the prompt; piped input gets one on stderr.
        if !tty {
            eprint!(">>> ");
        }
        let line = match ed.readline(if tty { ">>> " } else { "" }) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                interrupts += 1;
                if interrupts >= 2 {
                    break;
                }
                eprintln!("(Ctrl-C again, /exit or Ctrl-D to leave)");
                continue;
            }
            Err(ReadlineError::Eof) => {
                eprintln!();
                break;
            }
            Err(e) => return Err(e).context("reading a line"),
        };
        interrupts = 0;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let _ = ed.add_history_entry(text);
        let word = text.split_whitespace().next().unwrap_or("");
        if matches!(word, "/remember" | "/memories" | "/forget") {
            match opts.memory.as_mut().and_then(|mem| mem.command(text)) {
                Some(Err(e)) => eprintln!("error: {e:#}"),
                Some(Ok(())) => {}
                None if opts.memory.is_none() => eprintln!("memory is off (--no-memory)"),
                None => eprintln!("usage: /remember TEXT, /memories, /forget ID"),
            }
            continue;
        }
        match text {
            "/exit" | "/bye" => break,
            "/help" | "/?" => {
                eprintln!("{HELP}");
                continue;
            }
            "/clear" => {
                history.retain(|x| x.role == "system");
                eprintln!("(conversation cleared)");
                continue;
            }
            t if t.starts_with('/') && !t.contains(char::is_whitespace) => {
                eprintln!("unknown command {t}; /help lists them");
                continue;
            }
            _ => {}
        }
        history.push(Message::new("user", text));
        match reply(m, &mut batch, &template, &mut history, &opts) {
            Ok(answer) => {
                if let Some(mem) = &mut opts.memory {
                    mem.learn(text, &answer);
                }
                history.push(Message::new("assistant", &answer));
            }
            Err(e) => {
                history.pop();
                eprintln!("error: {e:#}");
            }
        }
    }
    match &history_path {
        Some(p) => save_history(&mut ed, p),
        None => Ok(()),
    }
}
