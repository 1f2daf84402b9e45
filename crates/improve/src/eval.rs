//! Held-out evaluation through the assistant's normal chat interface (greedy, one user turn,
//! no scaffold), and the general-language guard: perplexity on a fixed text.
use crate::evalset::EvalSet;
use crate::rollout::{chat_prompt, chat_stop, generate, GenStats, Job, Prefixes};
use crate::score::{LevelScore, SkillScore};
use crate::skill::Skill;
use crate::task::Task;
use crate::ImproveError;
use autodidact_engine::SamplingParams;
use autodidact_model::{LoraAdapter, Message, Model};
use std::sync::Arc;

/// One held-out reply, kept for reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReply {
    pub sub: String,
    pub prompt: String,
    pub reply: String,
    pub pass: bool,
    pub format_ok: bool,
    pub degenerate: Option<&'static str>,
}

/// The first `n` tasks of every level of `set` (all when `n` is 0): a fixed subset, so that
/// scores with the same `n` compare.
pub fn subset(set: &EvalSet, n: usize) -> Vec<Task> {
    let mut count: std::collections::HashMap<&str, usize> = Default::default();
    set.tasks
        .iter()
        .filter(|t| {
            let c = count.entry(t.sub.as_str()).or_default();
            *c += 1;
            n == 0 || *c <= n
        })
        .cloned()
        .collect()
}

/// The key a score is stored under: the set's hash and the subset size.
pub fn evalset_id(set: &EvalSet, n: usize) -> String {
    format!("{}:v{}:r{VERDICT_RULES}:n{n}", set.hash, set.version)
}

/// The version of the rules every verdict applies (degenerate replies): scores stored under
/// older rules are measured again rather than compared with new ones. 2: garbled replies.
/// 3: an arithmetic reply must end with its answer. 4: an arithmetic reply may take 96 tokens
/// (a worked answer), not 24. 5: an arithmetic reply's equations must be true and its prose
/// short (a right last number reached through nonsense fails).
pub const VERDICT_RULES: u32 = 5;

/// Greedy replies to `tasks` in plain chat, verified.
pub fn evaluate(
    model: &Model,
    adapter: Option<Arc<LoraAdapter>>,
    skill: &Skill,
    set: &EvalSet,
    n: usize,
    max_active: usize,
) -> Result<(SkillScore, Vec<EvalReply>, GenStats), ImproveError> {
    let tasks = subset(set, n);
    let mut jobs = Vec::with_capacity(tasks.len());
    for t in &tasks {
        jobs.push(Job {
            prompt: chat_prompt(model, &[Message::new("user", &t.prompt)])?,
            params: SamplingParams {
                max_tokens: skill.max_tokens(),
                stop: chat_stop(model),
                ..SamplingParams::greedy()
            },
            adapter: adapter.clone(),
        });
    }
    let mut replies: Vec<Option<EvalReply>> = vec![None; tasks.len()];
    let stats = generate(model, jobs, max_active, Prefixes::Exact, |i, out| {
        let t = &tasks[i];
        let v = skill.verify(t, &out.text, out.cut_off);
        replies[i] = Some(EvalReply {
            sub: t.sub.clone(),
            prompt: t.prompt.clone(),
            reply: out.text,
            pass: v.pass,
            format_ok: v.format_ok,
            degenerate: v.degenerate.map(|d| d.name()),
        });
        Ok(())
    })?;
    let replies: Vec<EvalReply> = replies.into_iter().flatten().collect();
    let mut levels: Vec<LevelScore> = skill
        .levels()
        .into_iter()
        .map(|sub| LevelScore {
            sub,
            ..Default::default()
        })
        .collect();
    for r in &replies {
        if let Some(l) = levels.iter_mut().find(|l| l.sub == r.sub) {
            l.n += 1;
            l.correct += r.pass as usize;
            l.format_ok += r.format_ok as usize;
            l.degenerate += r.degenerate.is_some() as usize;
            l.passes.push(r.pass);
        }
    }
    levels.retain(|l| l.n > 0);
    Ok((
        SkillScore {
            skill: skill.name().into(),
            evalset: evalset_id(set, n),
            levels,
        },
        replies,
        stats,
    ))
}

/// Perplexity of `text` in chunks of `ctx` tokens (llama.cpp's method, the train crate's
/// scorer), over at most `max_chunks` chunks.
pub fn perplexity(
    model: &Model,
    adapter: Option<&LoraAdapter>,
    text: &str,
    ctx: usize,
    max_chunks: usize,
) -> Result<f64, ImproveError> {
    let ctx = ctx.min(model.config.ctx_train).max(4);
    let r = autodidact_train::perplexity(
        model,
        adapter,
        text,
        ctx,
        Some(max_chunks.max(1)),
        &mut |_, _, _| {},
    )?;
    Ok(r.ppl)
}
