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
    /// included unless the Jinja template writes it (see [`render_tokens`]).
    pub fn render(&self, messages: &[Message], bos: &str, eos: &str) -> Result<String, ModelError> {
        for m in messages {
            if !matches!(
                m.role.as_str(),
                "system" | "user" | "assistant" | "model" | "developer" | "tool"
            ) {
                return Err(ModelError::Template(format!("unknown role {:?}", m.role)));
            }
        }
        match self {
            ChatTemplate::Gemma => {
                let mut out = String::new();
                let mut system = String::new();
                for m in messages {
                    match m.role.as_str() {
                        "system" | "developer" => {
                            system.push_str(&m.content);
                            system.push_str("\n\n");
                        }
                        role => {
                            let role = if matches!(role, "assistant" | "model") {
                                "model"
                            } else {
                                "user"
                            };
                            out.push_str("<start_of_turn>");
                            out.push_str(role);
                            out.push('\n');
                            if role == "user" && !system.is_empty() {
                                out.push_str(&std::mem::take(&mut system));
                            }
                            out.push_str(m.content.trim());
                            out.push_str("<end_of_turn>\n");
                        }
                    }
                }
                out.push_str("<start_of_turn>model\n");
                Ok(out)
            }
            ChatTemplate::Llama3 => {
                let mut out = String::new();
                for m in messages {
                    let role = if m.role == "model" {
                        "assistant"
                    } else {
                        m.role.as_str()
                    };
                    out.push_str(&format!(
                        "<|start_header_id|>{role}<|end_header_id|>\n\n{}<|eot_id|>",
                        m.content.trim()
                    ));
                }
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
                Ok(out)
            }
            ChatTemplate::Jinja(src) => {
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
                tmpl.render(minijinja::context! {
                    messages => messages,
                    bos_token => bos,
                    eos_token => eos,
                    add_generation_prompt => true,
                })
                .map_err(|e| ModelError::Template(e.to_string()))
            }
        }
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

    /// Renders and tokenizes, adding BOS once whether or not the template wrote it.
    pub fn render_tokens(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
    ) -> Result<Vec<u32>, ModelError> {
        let bos = tok
            .bos
            .and_then(|b| tok.token_text(b))
            .unwrap_or("")
            .to_string();
        let eos = tok
            .eos
            .and_then(|e| tok.token_text(e))
            .unwrap_or("")
            .to_string();
        let text = self.render(messages, &bos, &eos)?;
        let has_bos = !bos.is_empty() && text.starts_with(&bos);
        Ok(tok.encode(&text, !has_bos, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
