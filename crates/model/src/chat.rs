//! Chat prompts: the model's own Jinja template from GGUF metadata when present, else a built-in
//! Gemma turn format or Llama 3 header format.
use crate::ModelError;
use crate::Tokenizer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum ChatTemplate {
    /// A Jinja template (from `tokenizer.chat_template`).
    Jinja(String),
    /// `<start_of_turn>user … <end_of_turn>`, system text folded into the first user turn.
    Gemma,
    /// `<|start_header_id|>role<|end_header_id|>\n\n … <|eot_id|>`.
    Llama3,
}

impl ChatTemplate {
    /// The template a model should use: its own, else one matching its special tokens.
    pub fn for_tokenizer(tok: &Tokenizer) -> Self {
        if let Some(t) = &tok.chat_template {
            return ChatTemplate::Jinja(t.clone());
        }
        if tok.token_id("<|start_header_id|>").is_some() {
            ChatTemplate::Llama3
        } else {
            ChatTemplate::Gemma
        }
    }

    /// The prompt text for `messages`, ending where the assistant's reply begins. BOS is not
    /// included unless the Jinja template writes it (see [`ChatTemplate::render_tokens`]).
    pub fn render(&self, messages: &[Message], bos: &str, eos: &str) -> Result<String, ModelError> {
        Ok(self.render_parts(messages, bos, eos)?.to_text())
    }

    /// [`ChatTemplate::render`] as the template's own text and the messages' text, kept apart so
    /// that only the template's markers become special tokens.
    pub fn render_parts(
        &self,
        messages: &[Message],
        bos: &str,
        eos: &str,
    ) -> Result<Rendered, ModelError> {
        for m in messages {
            if !matches!(
                m.role.as_str(),
                "system" | "user" | "assistant" | "model" | "developer" | "tool"
            ) {
                return Err(ModelError::Template(format!("unknown role {:?}", m.role)));
            }
        }
        let mut out = Rendered::default();
        match self {
            ChatTemplate::Gemma => {
                let mut system: Vec<&str> = Vec::new();
                for m in messages {
                    match m.role.as_str() {
                        "system" | "developer" => system.push(&m.content),
                        role => {
                            let role = if matches!(role, "assistant" | "model") {
                                "model"
                            } else {
                                "user"
                            };
                            out.markup(&format!("<start_of_turn>{role}\n"));
                            if role == "user" {
                                for s in system.drain(..) {
                                    out.text(s);
                                    out.markup("\n\n");
                                }
                            }
                            out.text(m.content.trim());
                            out.markup("<end_of_turn>\n");
                        }
                    }
                }
                out.markup("<start_of_turn>model\n");
            }
            ChatTemplate::Llama3 => {
                for m in messages {
                    let role = if m.role == "model" {
                        "assistant"
                    } else {
                        m.role.as_str()
                    };
                    out.markup(&format!("<|start_header_id|>{role}<|end_header_id|>\n\n"));
                    out.text(m.content.trim());
                    out.markup("<|eot_id|>");
                }
                out.markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
            ChatTemplate::Jinja(src) => jinja_parts(src, messages, bos, eos, &mut out)?,
        }
        Ok(out)
    }

    /// The text that closes an assistant turn: what a trained reply ends with, so the model
    /// learns to stop. Jinja templates name no marker, so the tokenizer's own is looked up.
    pub fn end_of_turn(&self, tok: &Tokenizer) -> String {
        match self {
            ChatTemplate::Gemma => "<end_of_turn>".into(),
            ChatTemplate::Llama3 => "<|eot_id|>".into(),
            ChatTemplate::Jinja(_) => ["<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>"]
                .into_iter()
                .find(|m| tok.token_id(m).is_some())
                .map(String::from)
                .or_else(|| tok.eos.and_then(|e| tok.token_text(e)).map(String::from))
                .unwrap_or_default(),
        }
    }

    /// Renders and tokenizes, adding BOS once whether or not the template wrote it. Special-token
    /// texts inside messages stay text: content cannot open or close a turn.
    pub fn render_tokens(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
    ) -> Result<Vec<u32>, ModelError> {
        let (bos, eos) = bos_eos(tok);
        Ok(self.render_parts(messages, &bos, &eos)?.tokens(tok, &bos))
    }
}

/// The texts of the tokenizer's BOS and EOS tokens, as templates name them.
pub fn bos_eos(tok: &Tokenizer) -> (String, String) {
    let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
    (text(tok.bos), text(tok.eos))
}

/// One piece of a rendered prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub text: String,
    /// The template's own text (its special-token texts are tokenized as special tokens);
    /// `false` for what came from a message, which is always plain text.
    pub markup: bool,
}

/// A rendered prompt as template markup and message text, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rendered {
    pub parts: Vec<Part>,
}

impl Rendered {
    /// Appends template text.
    pub fn markup(&mut self, s: &str) {
        self.push(s, true);
    }

    /// Appends message text.
    pub fn text(&mut self, s: &str) {
        self.push(s, false);
    }

    fn push(&mut self, s: &str, markup: bool) {
        if s.is_empty() {
            return;
        }
        match self.parts.last_mut() {
            Some(p) if p.markup == markup => p.text.push_str(s),
            _ => self.parts.push(Part {
                text: s.to_string(),
                markup,
            }),
        }
    }

    /// Appends every part of `other`.
    pub fn extend(&mut self, other: &Rendered) {
        for p in &other.parts {
            self.push(&p.text, p.markup);
        }
    }

    /// The whole prompt as one string.
    pub fn to_text(&self) -> String {
        self.parts.iter().map(|p| p.text.as_str()).collect()
    }

    /// What follows the first `n` bytes of the text, or `None` when `n` is past the end or splits a
    /// character.
    pub fn tail(&self, mut n: usize) -> Option<Rendered> {
        let mut out = Rendered::default();
        for p in &self.parts {
            if n >= p.text.len() {
                n -= p.text.len();
                continue;
            }
            out.push(p.text.get(n..)?, p.markup);
            n = 0;
        }
        (n == 0).then_some(out)
    }

    /// Token ids: markup with special tokens parsed, message text as text; BOS added unless the
    /// markup already starts with `bos`'s text.
    pub fn tokens(&self, tok: &Tokenizer, bos: &str) -> Vec<u32> {
        let has_bos = !bos.is_empty()
            && self
                .parts
                .first()
                .is_some_and(|p| p.markup && p.text.starts_with(bos));
        self.tokens_with(tok, !has_bos)
    }

    /// Token ids, adding BOS/EOS as the model asks when `add_special`.
    pub fn tokens_with(&self, tok: &Tokenizer, add_special: bool) -> Vec<u32> {
        let parts: Vec<(&str, bool)> = self
            .parts
            .iter()
            .map(|p| (p.text.as_str(), p.markup))
            .collect();
        tok.encode_parts(&parts, add_special)
    }
}

/// Brackets a placeholder for message `k`'s content in the Jinja template's output. Private-use
/// characters: a template's own text never contains them, and the real content never enters the
/// template at all, so a message cannot fake a placeholder either.
const OPEN: char = '\u{F0000}';
const CLOSE: char = '\u{F0001}';
/// Padding around each placeholder: when the template trims a message (`| trim`, as Gemma's
/// does) the padding disappears and the real content is trimmed the same way.
const PAD: &str = " \n";

/// Renders a Jinja template with placeholders for the messages' contents, then puts each content
/// back as text between the template's markup.
fn jinja_parts(
    src: &str,
    messages: &[Message],
    bos: &str,
    eos: &str,
    out: &mut Rendered,
) -> Result<(), ModelError> {
    let mut env = minijinja::Environment::new();
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template("chat", src)
        .map_err(|e| ModelError::Template(e.to_string()))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| ModelError::Template(e.to_string()))?;
    let placeheld: Vec<Message> = messages
        .iter()
        .enumerate()
        .map(|(k, m)| Message {
            role: m.role.clone(),
            content: format!("{PAD}{OPEN}{k}{CLOSE}{PAD}"),
        })
        .collect();
    let text = tmpl
        .render(minijinja::context! {
            messages => placeheld,
            bos_token => bos,
            eos_token => eos,
            add_generation_prompt => true,
        })
        .map_err(|e| ModelError::Template(e.to_string()))?;
    let mut rest = text.as_str();
    while let Some(open) = rest.find(OPEN) {
        let (before, after) = rest.split_at(open);
        let after = &after[OPEN.len_utf8()..];
        let close = after
            .find(CLOSE)
            .ok_or_else(|| ModelError::Template("the template cut a message short".into()))?;
        let k: usize = after[..close]
            .parse()
            .ok()
            .filter(|&k| k < messages.len())
            .ok_or_else(|| ModelError::Template("the template altered a message".into()))?;
        rest = &after[close + CLOSE.len_utf8()..];
        let (before, keep_start) = match before.strip_suffix(PAD) {
            Some(b) => (b, true),
            None => (before, false),
        };
        let keep_end = match rest.strip_prefix(PAD) {
            Some(r) => {
                rest = r;
                true
            }
            None => false,
        };
        out.markup(before);
        let c = messages[k].content.as_str();
        out.text(match (keep_start, keep_end) {
            (true, true) => c,
            (true, false) => c.trim_end(),
            (false, true) => c.trim_start(),
            (false, false) => c.trim(),
        });
    }
    out.markup(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{Array, GgufFile, GgufWriter, Value};
    use crate::tokenizer::TokenType;

    /// A SentencePiece vocabulary with both templates' markers as control tokens.
    fn marker_tokenizer() -> Tokenizer {
        let mut tokens: Vec<String> = [
            "<pad>",
            "<eos>",
            "<bos>",
            "<unk>",
            "<start_of_turn>",
            "<end_of_turn>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ]
        .map(String::from)
        .to_vec();
        let mut types = vec![3i32; tokens.len()];
        types[3] = 2;
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        for t in [
            "\u{2581}",
            "\u{2581}a",
            "model",
            "user",
            "\n\n",
            "\u{2581}Hi",
        ] {
            tokens.push(t.into());
            types.push(1);
        }
        let n = tokens.len();
        let mut w = GgufWriter::new();
        w.set("tokenizer.ggml.model", Value::String("llama".into()));
        w.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
        w.set(
            "tokenizer.ggml.scores",
            Value::Array(Array::F32(vec![0.0; n])),
        );
        w.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
        w.set("tokenizer.ggml.bos_token_id", Value::U32(2));
        w.set("tokenizer.ggml.eos_token_id", Value::U32(1));
        w.set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
        let bytes = w.to_bytes().unwrap();
        Tokenizer::from_gguf(&GgufFile::from_bytes("markers", &bytes).unwrap()).unwrap()
    }

    /// A Gemma-like Jinja template: system text folded into the first user turn, contents trimmed.
    const GEMMA_JINJA: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}\
        {% set prefix = messages[0]['content'] + '\n\n' %}{% set turns = messages[1:] %}\
        {% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}\
        {% for m in turns %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n\
        {{ prefix if loop.first else '' }}{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}\
        {% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

    fn chat(t: &str) -> Vec<Message> {
        vec![
            Message::new("system", &format!("Be {t} brief.")),
            Message::new("user", &format!("a{t}model\n{t}")),
            Message::new("assistant", &format!("{t}ok\n")),
            Message::new("user", &format!(" {t} ")),
        ]
    }

    #[test]
    fn message_text_never_becomes_a_special_token() {
        let tok = marker_tokenizer();
        let specials: Vec<u32> = (0..tok.vocab_size() as u32)
            .filter(|&i| {
                matches!(
                    tok.token_type(i),
                    Some(TokenType::Control | TokenType::Unknown)
                )
            })
            .collect();
        assert_eq!(specials.len(), 9);
        let count = |ids: &[u32], s: u32| ids.iter().filter(|&&i| i == s).count();
        for template in [
            ChatTemplate::Gemma,
            ChatTemplate::Llama3,
            ChatTemplate::Jinja(GEMMA_JINJA.into()),
        ] {
            let benign = template.render_tokens(&tok, &chat("x")).unwrap();
            // Benign content tokenizes as the joined text always did.
            let text = template.render(&chat("x"), "<bos>", "<eos>").unwrap();
            let has_bos = text.starts_with("<bos>");
            assert_eq!(benign, tok.encode(&text, !has_bos, true), "{template:?}");
            for &s in &specials {
                let forged = tok.token_text(s).unwrap();
                let msgs = chat(forged);
                let ids = template.render_tokens(&tok, &msgs).unwrap();
                for &t in &specials {
                    assert_eq!(
                        count(&ids, t),
                        count(&benign, t),
                        "{template:?}: content {forged:?} produced {:?}",
                        tok.token_text(t)
                    );
                }
                // Nothing is lost: the ids spell the rendered text.
                let text = template.render(&msgs, "<bos>", "<eos>").unwrap();
                let text = text.strip_prefix("<bos>").unwrap_or(&text);
                assert_eq!(tok.decode(&ids[1..], true), text, "{template:?}");
            }
        }
    }

    #[test]
    fn jinja_contents_are_trimmed_as_the_template_trims() {
        let t = ChatTemplate::Jinja(GEMMA_JINJA.into());
        let r = t
            .render_parts(
                &[
                    Message::new("system", " S "),
                    Message::new("user", "  Hi \n"),
                ],
                "<bos>",
                "",
            )
            .unwrap();
        let texts: Vec<(&str, bool)> = r
            .parts
            .iter()
            .map(|p| (p.text.as_str(), p.markup))
            .collect();
        assert_eq!(
            texts,
            [
                ("<bos><start_of_turn>user\n", true),
                (" S ", false),
                ("\n\n", true),
                ("Hi", false),
                ("<end_of_turn>\n<start_of_turn>model\n", true)
            ]
        );
        let tail = r.tail("<bos><start_of_turn>user\n S".len()).unwrap();
        assert_eq!(
            tail.parts[0],
            Part {
                text: " ".into(),
                markup: false
            }
        );
        assert!(r.tail(10_000).is_none());
    }

    #[test]
    fn gemma_format_folds_system_into_first_user_turn() {
        let msgs = [
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
            Message::new("assistant", "Hello."),
            Message::new("user", "Bye"),
        ];
        let s = ChatTemplate::Gemma.render(&msgs, "<bos>", "<eos>").unwrap();
        assert_eq!(
            s,
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn llama3_format_has_headers() {
        let s = ChatTemplate::Llama3
            .render(&[Message::new("user", "Hi")], "", "")
            .unwrap();
        assert_eq!(
            s,
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn jinja_templates_render_and_raise() {
        let t = ChatTemplate::Jinja(
            "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}\
             {% if add_generation_prompt %}[assistant]{% endif %}"
                .into(),
        );
        assert_eq!(
            t.render(&[Message::new("user", "x")], "<s>", "").unwrap(),
            "<s>[user]x[assistant]"
        );
        let bad = ChatTemplate::Jinja("{{ raise_exception('no system role') }}".into());
        assert!(bad.render(&[Message::new("user", "x")], "", "").is_err());
        assert!(ChatTemplate::Gemma
            .render(&[Message::new("wizard", "x")], "", "")
            .is_err());
    }
}
