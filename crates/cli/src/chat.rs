//! `autodidact run`: streaming chat with line editing and history; Ctrl-C stops a reply, `/exit`,
//! Ctrl-D or a second Ctrl-C at the prompt ends. Once the conversation outgrows the context, the
//! oldest turns are dropped (system messages stay) and the user is told.
use anyhow::{Context, Result};
use autodidact_engine::{Batch, FinishReason, GenConfig, Request, SamplingParams};
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
}

const HELP: &str = "/help     this list
/clear    forget the conversation (a system message stays)
/exit     leave (also /bye, Ctrl-D, or Ctrl-C twice at the prompt)
Ctrl-C while the model answers stops the answer; ↑/↓ recall earlier lines.";

/// Drops the oldest turns until the prompt leaves `reserve` tokens for the reply; returns the
/// prompt and how many messages went. System messages are never dropped; a user message goes with
/// the reply that followed it, so turns keep alternating.
fn fit(
    m: &Model,
    template: &ChatTemplate,
    history: &mut Vec<Message>,
    n_ctx: usize,
    reserve: usize,
) -> Result<(Vec<u32>, usize)> {
    let mut dropped = 0;
    loop {
        let prompt = template.render_tokens(&m.tokenizer, history)?;
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
    let (prompt, dropped) = fit(m, template, history, n_ctx, reserve)?;
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

/// The line editor, with the history of earlier sessions loaded.
fn editor(history: &Path) -> Result<DefaultEditor> {
    let mut ed = DefaultEditor::new().context("starting the line editor")?;
    if history.exists() {
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

pub fn run(m: &Model, opts: ChatOptions) -> Result<()> {
    let template = ChatTemplate::for_tokenizer(&m.tokenizer);
    let mut batch = Batch::new(GenConfig {
        n_ctx: opts.n_ctx,
        max_parked: 1,
        ..GenConfig::default()
    });
    let mut history: Vec<Message> = Vec::new();
    if let Some(p) = &opts.prompt {
        history.push(Message::new("user", p));
        reply(m, &mut batch, &template, &mut history, &opts)?;
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
    let history_path = opts.home.join("history").join("run.txt");
    let mut ed = editor(&history_path)?;
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
            Ok(answer) => history.push(Message::new("assistant", &answer)),
            Err(e) => {
                history.pop();
                eprintln!("error: {e:#}");
            }
        }
    }
    save_history(&mut ed, &history_path)
}
