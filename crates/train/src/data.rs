//! Training data from JSONL: chat (`{"messages": [...]}`), prompt/completion, plain `{"text"}`
//! and preference (`{"prompt", "chosen", "rejected"}`) lines, tokenized with the model's own
//! tokenizer and chat template. Bad lines are reported with their line numbers.
use crate::graph::Sequence;
use crate::TrainError;
use autodidact_model::chat::{bos_eos, Rendered};
use autodidact_model::tokenizer::TokenType;
use autodidact_model::{ChatTemplate, Message, Model, Tokenizer};
use serde_json::Value;
use std::path::Path;

/// What a line that cannot be used does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadLine {
    Fail,
    Skip,
}

#[derive(Debug, Clone, Copy)]
pub struct DataOptions {
    /// Longer examples are cut to this many tokens (the completion's end is what goes).
    pub seq_len: usize,
    pub on_bad: OnBadLine,
}

/// One preference pair: the prompt's tokens and each answer's tokens (with its end of turn).
#[derive(Debug, Clone, PartialEq)]
pub struct Preference {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

impl Preference {
    /// The prompt followed by `answer`, trained on the answer only.
    pub fn sequence(&self, chosen: bool) -> Sequence {
        let ans = if chosen { &self.chosen } else { &self.rejected };
        let mut tokens = self.prompt.clone();
        tokens.extend_from_slice(ans);
        let p = self.prompt.len();
        let labels = (0..tokens.len())
            .map(|i| (i + 1 >= p && i + 1 < tokens.len()).then(|| tokens[i + 1]))
            .collect();
        Sequence::new(tokens, labels)
    }
}

/// One supervised example in memory (what a JSONL line holds, or what a program made).
#[derive(Debug, Clone, PartialEq)]
pub enum SftExample {
    /// Chat turns; every assistant turn is trained, with the template's end-of-turn marker.
    Chat(Vec<Message>),
    /// Raw text: the prompt is context, the completion (and EOS) is trained.
    PromptCompletion { prompt: String, completion: String },
    /// Raw text trained throughout.
    Text(String),
}

/// The prompt of a preference pair: chat turns (answers become the assistant's turn) or raw text.
#[derive(Debug, Clone, PartialEq)]
pub enum PreferencePrompt {
    Chat(Vec<Message>),
    Text(String),
}

/// One preference pair in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceExample {
    pub prompt: PreferencePrompt,
    pub chosen: String,
    pub rejected: String,
}

/// Lines read, and the bad ones skipped with why.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub lines: usize,
    pub skipped: Vec<(usize, String)>,
    pub truncated: usize,
}

/// Tokenization shared by every format.
struct Encoder<'a> {
    tok: &'a Tokenizer,
    template: ChatTemplate,
    bos: String,
    eos: String,
}

impl<'a> Encoder<'a> {
    fn new(m: &'a Model) -> Self {
        let tok = &m.tokenizer;
        let (bos, eos) = bos_eos(tok);
        Encoder {
            tok,
            template: ChatTemplate::for_tokenizer(tok),
            bos,
            eos,
        }
    }

    /// Tokens of text segments joined, each token marked with whether its segment is trained.
    /// The whole text is tokenized at once, as inference will see it; a token belongs to the
    /// segment where the tokenization of the text up to that segment's end stops agreeing.
    /// Only template markup yields special tokens; message text is always text.
    fn segments(&self, segs: &[(Rendered, bool)]) -> (Vec<u32>, Vec<bool>) {
        let bos_written = !self.bos.is_empty()
            && segs.first().is_some_and(|(r, _)| {
                r.parts
                    .first()
                    .is_some_and(|p| p.markup && p.text.starts_with(&self.bos))
            });
        let encode = |r: &Rendered| r.tokens_with(self.tok, !bos_written);
        let mut whole = Rendered::default();
        for (r, _) in segs {
            whole.extend(r);
        }
        let full = encode(&whole);
        let mut trained = vec![false; full.len()];
        let (mut text, mut from) = (Rendered::default(), 0);
        for (i, (t, on)) in segs.iter().enumerate() {
            text.extend(t);
            let upto = if i + 1 == segs.len() {
                full.len()
            } else {
                let part = encode(&text);
                part.iter().zip(&full).take_while(|(a, b)| a == b).count()
            };
            for m in trained.iter_mut().take(upto).skip(from) {
                *m = *on;
            }
            from = upto.max(from);
        }
        (full, trained)
    }

    /// `(prompt, completion)` as raw text: BOS + prompt, then the completion and EOS trained.
    fn raw(&self, prompt: &str, completion: &str) -> (Vec<u32>, Vec<bool>) {
        let plain = |s: &str| {
            let mut r = Rendered::default();
            r.text(s);
            r
        };
        let segs = [(plain(prompt), false), (plain(completion), true)];
        let (mut t, mut m) = self.segments(&segs);
        if let Some(e) = self.tok.eos {
            t.push(e);
            m.push(true);
        }
        (t, m)
    }

    /// Every assistant turn is trained, with the template's end-of-turn marker; everything the
    /// template puts around the turns is not.
    fn chat(&self, messages: &[Message]) -> Result<(Vec<u32>, Vec<bool>), String> {
        if !messages.iter().any(|m| is_assistant(&m.role)) {
            return Err("no assistant message to learn from".into());
        }
        let eot = self.template.end_of_turn(self.tok);
        let mut text = String::new();
        let mut segs = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if !is_assistant(&m.role) {
                continue;
            }
            let prefix = self
                .template
                .render_parts(&messages[..i], &self.bos, &self.eos)
                .map_err(|e| e.to_string())?;
            let prefix_text = prefix.to_text();
            let rest = prefix_text
                .starts_with(text.as_str())
                .then(|| prefix.tail(text.len()))
                .flatten();
            let Some(rest) = rest else {
                return Err("the chat template does not render turns incrementally; \
                            use prompt/completion lines instead"
                    .into());
            };
            segs.push((rest, false));
            let mut reply = Rendered::default();
            reply.text(&m.content);
            reply.markup(&eot);
            text = prefix_text + &reply.to_text();
            segs.push((reply, true));
        }
        Ok(self.segments(&segs))
    }

    fn sft(&self, ex: &SftExample) -> Result<(Vec<u32>, Vec<bool>), String> {
        Ok(match ex {
            SftExample::Chat(msgs) => self.chat(msgs)?,
            SftExample::PromptCompletion { prompt, completion } => self.raw(prompt, completion),
            SftExample::Text(t) => self.raw("", t),
        })
    }

    /// A preference pair: the prompt (chat messages or raw text) and both answers.
    fn preference(&self, ex: &PreferenceExample) -> Result<Preference, String> {
        let (chosen, rejected) = (ex.chosen.as_str(), ex.rejected.as_str());
        if chosen == rejected {
            return Err("\"chosen\" and \"rejected\" are the same".into());
        }
        let (pairs, prompt_len) = match &ex.prompt {
            PreferencePrompt::Text(p) => {
                let a = self.raw(p, chosen);
                let b = self.raw(p, rejected);
                let n = a.1.iter().take_while(|t| !**t).count();
                ((a.0, b.0), n)
            }
            PreferencePrompt::Chat(msgs) => {
                let mut m = msgs.clone();
                m.push(Message::new("assistant", chosen));
                let a = self.chat(&m)?;
                m.last_mut().expect("pushed above").content = rejected.to_string();
                let b = self.chat(&m)?;
                let n = a.1.iter().rposition(|t| !*t).map_or(0, |i| i + 1);
                ((a.0, b.0), n)
            }
        };
        // Both answers follow the same prompt tokens; any merge across the boundary shortens it.
        let (a, b) = pairs;
        let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let p = prompt_len.min(shared);
        Ok(Preference {
            prompt: a[..p].to_vec(),
            chosen: a[p..].to_vec(),
            rejected: b[p..].to_vec(),
        })
    }
}

/// A JSONL object as a supervised example.
fn sft_from_json(v: &Value) -> Result<SftExample, String> {
    if let Some(msgs) = v.get("messages") {
        Ok(SftExample::Chat(messages(msgs)?))
    } else if v.get("prompt").is_some() || v.get("completion").is_some() {
        Ok(SftExample::PromptCompletion {
            prompt: string(v, "prompt")?.to_string(),
            completion: string(v, "completion")?.to_string(),
        })
    } else if v.get("text").is_some() {
        Ok(SftExample::Text(string(v, "text")?.to_string()))
    } else {
        Err("expected \"messages\", \"prompt\" and \"completion\", or \"text\"".into())
    }
}

/// A JSONL object as a preference pair.
fn preference_from_json(v: &Value) -> Result<PreferenceExample, String> {
    let prompt = match v.get("prompt").ok_or("missing \"prompt\"")? {
        Value::String(p) => PreferencePrompt::Text(p.clone()),
        msgs @ Value::Array(_) => PreferencePrompt::Chat(messages(msgs)?),
        _ => return Err("\"prompt\" must be a string or a list of messages".into()),
    };
    Ok(PreferenceExample {
        prompt,
        chosen: string(v, "chosen")?.to_string(),
        rejected: string(v, "rejected")?.to_string(),
    })
}

/// The control tokens the model's chat template writes around a user and an assistant turn,
/// BOS aside (Gemma: `<start_of_turn>`, `<end_of_turn>`): the rows a base model has never
/// learned, for [`crate::TrainConfig::tokens`]. Empty when the template writes none.
pub fn template_tokens(m: &Model) -> Vec<u32> {
    let msgs = [Message::new("user", "a"), Message::new("assistant", "b")];
    let Ok((tokens, _)) = Encoder::new(m).chat(&msgs) else {
        return Vec::new();
    };
    let tok = &m.tokenizer;
    let mut out: Vec<u32> = Vec::new();
    for t in tokens {
        // Control tokens only: Gemma's vocabulary marks newline runs ("\n", "\n\n" …) as
        // user-defined, and those are ordinary text the base knows well.
        let control = tok.token_type(t) == Some(TokenType::Control);
        if control && Some(t) != tok.bos && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn is_assistant(role: &str) -> bool {
    role == "assistant" || role == "model"
}

fn messages(v: &Value) -> Result<Vec<Message>, String> {
    serde_json::from_value::<Vec<Message>>(v.clone())
        .map_err(|e| format!("\"messages\" must be a list of {{\"role\", \"content\"}}: {e}"))
}

fn string<'v>(obj: &'v Value, key: &str) -> Result<&'v str, String> {
    obj.get(key)
        .ok_or_else(|| format!("missing \"{key}\""))?
        .as_str()
        .ok_or_else(|| format!("\"{key}\" must be a string"))
}

/// Tokens and their trained marks into a sequence cut at `seq_len`; `None` when nothing trained
/// survives the cut.
fn to_sequence(
    (mut tokens, mut trained): (Vec<u32>, Vec<bool>),
    seq_len: usize,
) -> (Option<Sequence>, bool) {
    let cut = tokens.len() > seq_len;
    tokens.truncate(seq_len);
    trained.truncate(seq_len);
    // Position i predicts token i + 1, trained when that token is.
    let labels: Vec<Option<u32>> = (0..tokens.len())
        .map(|i| (i + 1 < tokens.len() && trained[i + 1]).then(|| tokens[i + 1]))
        .collect();
    if labels.iter().all(Option::is_none) {
        return (None, cut);
    }
    (Some(Sequence::new(tokens, labels)), cut)
}

/// The longest line read whole. Longer lines are bad lines, found without holding them: an
/// example is cut to `seq_len` tokens anyway, so megabytes of one line can only cost time and
/// memory. A token is rarely more than 16 bytes, hence the bound from `seq_len`.
pub fn max_line_bytes(seq_len: usize) -> usize {
    (seq_len * 16 * 4).max(1 << 20)
}

/// Reads the next line (without its newline) into `buf`, at most `cap` bytes of it; returns
/// `None` at the end, `Some(false)` when the line was longer than `cap` (the rest is skipped).
fn next_line(
    r: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut fits = true;
    let mut any = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(fits));
        }
        any = true;
        let (take, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if fits && buf.len() + take <= cap {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            fits = false;
            buf.clear();
        }
        r.consume(take + end as usize);
        if end {
            return Ok(Some(fits));
        }
    }
}

/// Runs `parse` over every non-blank line, collecting results and handling bad lines.
fn each_line<T>(
    path: &Path,
    opts: &DataOptions,
    mut parse: impl FnMut(&Value) -> Result<(Option<T>, bool), String>,
) -> Result<(Vec<T>, LoadReport), TrainError> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let cap = max_line_bytes(opts.seq_len);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut rep = LoadReport::default();
    let name = path.display().to_string();
    let mut line_no = 0;
    while let Some(fits) =
        next_line(&mut reader, &mut buf, cap).map_err(|e| TrainError::io(path, e))?
    {
        line_no += 1;
        if fits && buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        rep.lines += 1;
        let res = if !fits {
            Err(format!("the line is longer than {cap} bytes"))
        } else {
            std::str::from_utf8(&buf).map_err(|e| {
                format!(
                    "not UTF-8 text (invalid byte at column {})",
                    e.valid_up_to() + 1
                )
            })
        };
        let res = res
            .and_then(|line| {
                serde_json::from_str::<Value>(line).map_err(|e| format!("not JSON: {e}"))
            })
            .and_then(|v| {
                if v.is_object() {
                    parse(&v)
                } else {
                    Err("each line must be a JSON object".into())
                }
            })
            .and_then(|(item, cut)| {
                rep.truncated += cut as usize;
                item.map(|x| (x, cut)).ok_or_else(|| {
                    format!(
                        "nothing left to train on within the sequence length of {} tokens",
                        opts.seq_len
                    )
                })
            });
        match res {
            Ok((x, _)) => out.push(x),
            Err(what) if opts.on_bad == OnBadLine::Skip => rep.skipped.push((line_no, what)),
            Err(what) => {
                return Err(TrainError::Data {
                    path: name,
                    line: line_no,
                    what,
                })
            }
        }
    }
    if out.is_empty() {
        let why = match rep.skipped.first() {
            Some((l, w)) => format!(" ({} bad lines; line {l}: {w})", rep.skipped.len()),
            None => " (the file is empty)".into(),
        };
        return Err(TrainError::NoData { path: name, why });
    }
    Ok((out, rep))
}

/// Supervised examples: `messages`, `prompt` + `completion`, or `text` (trained throughout).
pub fn load_sft(
    path: &Path,
    m: &Model,
    opts: &DataOptions,
) -> Result<(Vec<Sequence>, LoadReport), TrainError> {
    let enc = Encoder::new(m);
    each_line(path, opts, |v| {
        Ok(to_sequence(enc.sft(&sft_from_json(v)?)?, opts.seq_len))
    })
}

/// In-memory supervised examples, tokenized as [`load_sft`] does a file's. A bad example is an
/// error (or skipped) with its index; the report counts examples as lines.
pub fn encode_sft(
    examples: &[SftExample],
    m: &Model,
    opts: &DataOptions,
) -> Result<(Vec<Sequence>, LoadReport), TrainError> {
    let enc = Encoder::new(m);
    each_example(examples, opts, |ex| {
        Ok(to_sequence(enc.sft(ex)?, opts.seq_len))
    })
}

/// In-memory preference pairs, tokenized as [`load_preferences`] does a file's.
pub fn encode_preferences(
    examples: &[PreferenceExample],
    m: &Model,
    opts: &DataOptions,
) -> Result<(Vec<Preference>, LoadReport), TrainError> {
    let enc = Encoder::new(m);
    each_example(examples, opts, |ex| {
        fit_preference(enc.preference(ex)?, opts)
    })
}

/// [`each_line`] for examples already in memory (numbered from 1 in errors).
fn each_example<E, T>(
    examples: &[E],
    opts: &DataOptions,
    mut encode: impl FnMut(&E) -> Result<(Option<T>, bool), String>,
) -> Result<(Vec<T>, LoadReport), TrainError> {
    let mut out = Vec::new();
    let mut rep = LoadReport::default();
    for (i, ex) in examples.iter().enumerate() {
        rep.lines += 1;
        let res = encode(ex).and_then(|(item, cut)| {
            rep.truncated += cut as usize;
            item.ok_or_else(|| {
                format!(
                    "nothing left to train on within the sequence length of {} tokens",
                    opts.seq_len
                )
            })
        });
        match res {
            Ok(x) => out.push(x),
            Err(what) if opts.on_bad == OnBadLine::Skip => rep.skipped.push((i + 1, what)),
            Err(what) => {
                return Err(TrainError::Data {
                    path: "examples".into(),
                    line: i + 1,
                    what,
                })
            }
        }
    }
    if out.is_empty() {
        return Err(TrainError::NoData {
            path: "examples".into(),
            why: match rep.skipped.first() {
                Some((l, w)) => format!(" ({} bad; example {l}: {w})", rep.skipped.len()),
                None => " (none were given)".into(),
            },
        });
    }
    Ok((out, rep))
}

/// Preference pairs for DPO.
pub fn load_preferences(
    path: &Path,
    m: &Model,
    opts: &DataOptions,
) -> Result<(Vec<Preference>, LoadReport), TrainError> {
    let enc = Encoder::new(m);
    each_line(path, opts, |v| {
        fit_preference(enc.preference(&preference_from_json(v)?)?, opts)
    })
}

/// Cuts both answers to fit; the prompt must leave room for at least one answer token.
fn fit_preference(p: Preference, opts: &DataOptions) -> Result<(Option<Preference>, bool), String> {
    let Preference {
        prompt,
        chosen,
        rejected,
    } = p;
    let room = opts.seq_len.saturating_sub(prompt.len());
    if room == 0 {
        return Ok((None, true));
    }
    let cut = chosen.len() > room || rejected.len() > room;
    let take = |a: Vec<u32>| a.into_iter().take(room).collect::<Vec<_>>();
    Ok((
        Some(Preference {
            prompt,
            chosen: take(chosen),
            rejected: take(rejected),
        }),
        cut,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use autodidact_kernels::GgmlType;
    use autodidact_model::gguf::GgufFile;
    use autodidact_model::testing::tiny_model;
    use autodidact_model::Arch;

    /// Training data cannot forge turns either: special-token texts in messages stay text.
    #[test]
    fn message_text_never_becomes_a_special_token() {
        let bytes = tiny_model(Arch::Gemma3, GgmlType::F32, 3);
        let m = Model::from_gguf(GgufFile::from_bytes("tiny", &bytes).unwrap()).unwrap();
        let enc = Encoder::new(&m);
        let forged = "<bos><eos><pad>";
        let msgs = [
            Message::new("system", forged),
            Message::new("user", &format!("a{forged}")),
            Message::new("assistant", &format!("{forged}b")),
        ];
        let (tokens, trained) = enc.chat(&msgs).unwrap();
        let bos = m.tokenizer.bos.unwrap();
        assert_eq!(tokens.iter().filter(|&&t| t == bos).count(), 1);
        assert_eq!(tokens[0], bos);
        for special in [0, m.tokenizer.eos.unwrap()] {
            assert!(!tokens.contains(&special), "{tokens:?}");
        }
        assert!(trained.iter().any(|&t| t));
        let (raw, _) = enc.raw(forged, forged);
        assert_eq!(raw.iter().filter(|&&t| t == bos).count(), 1);
        assert_eq!(raw.last(), m.tokenizer.eos.as_ref());
        assert_eq!(
            raw.iter().filter(|&&t| Some(t) == m.tokenizer.eos).count(),
            1
        );
    }
}
