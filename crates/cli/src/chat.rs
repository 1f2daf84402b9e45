//! `autodidact run`: streaming chat with history; Ctrl-C stops a reply, `/exit` or Ctrl-D ends.
use anyhow::Result;
use autodidact_engine::{Batch, FinishReason, GenConfig, Request, SamplingParams};
use autodidact_model::{ChatTemplate, LoraAdapter, Message, Model};
use std::io::{BufRead, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One answer. `batch` lives across turns so each turn reuses the conversation's cached prefix.
fn reply(
    m: &Model,
    batch: &mut Batch,
    template: &ChatTemplate,
    history: &[Message],
    params: &SamplingParams,
    adapter: &Option<Arc<LoraAdapter>>,
) -> Result<String> {
    let n_ctx = batch.config().n_ctx;
    let prompt = template.render_tokens(&m.tokenizer, history)?;
    if prompt.len() + 1 >= n_ctx {
        anyhow::bail!("the conversation ({} tokens) no longer fits the context of {n_ctx}; start a new session or raise --ctx", prompt.len());
    }
    let interrupted = crate::ctrl_c_flag()?;
    interrupted.store(false, Ordering::SeqCst);
    let mut out = std::io::stdout().lock();
    batch.add(
        m,
        0,
        Request {
            prompt,
            params: params.clone(),
            json: None,
            adapter: adapter.clone(),
        },
    )?;
    let mut done = Vec::new();
    while !batch.is_empty() {
        done.extend(batch.step(m, |d| {
            let _ = out.write_all(d.text.as_bytes());
            let _ = out.flush();
            !interrupted.swap(false, Ordering::SeqCst)
        })?);
    }
    let (_, c) = &done[0];
    if c.finish == FinishReason::Cancelled {
        write!(out, " [stopped]")?;
    }
    writeln!(out)?;
    Ok(c.text.trim().to_string())
}

pub fn run(
    m: &Model,
    params: SamplingParams,
    n_ctx: usize,
    prompt: Option<String>,
    adapter: Option<Arc<LoraAdapter>>,
) -> Result<()> {
    let template = ChatTemplate::for_tokenizer(&m.tokenizer);
    let mut batch = Batch::new(GenConfig {
        n_ctx,
        max_parked: 1,
        ..GenConfig::default()
    });
    let mut history = Vec::new();
    if let Some(p) = prompt {
        history.push(Message::new("user", &p));
        reply(m, &mut batch, &template, &history, &params, &adapter)?;
        return Ok(());
    }
    eprintln!(
        "chatting with {} — /exit or Ctrl-D to leave, Ctrl-C stops a reply",
        m.gguf
            .get_str("general.name")
            .ok()
            .flatten()
            .unwrap_or("the model")
    );
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!(">>> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            break;
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if text == "/exit" || text == "/bye" {
            break;
        }
        history.push(Message::new("user", text));
        match reply(m, &mut batch, &template, &history, &params, &adapter) {
            Ok(answer) => history.push(Message::new("assistant", &answer)),
            Err(e) => {
                history.pop();
                eprintln!("error: {e:#}");
            }
        }
    }
    Ok(())
}
