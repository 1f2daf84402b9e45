//! Tokenizers built from GGUF metadata: SentencePiece-style (`llama`) and byte-level BPE (`gpt2`).
//!
//! Special tokens are split out of the text before the model's algorithm runs, longest first, as
//! llama.cpp does: control tokens only when `parse_special` is on, user-defined tokens always.
mod bpe;
mod spm;
mod stream;
pub mod wordpiece;

pub use stream::StreamDecoder;

use crate::gguf::{Array, GgufFile, Value};
use crate::ModelError;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

pub const KEY_MODEL: &str = "tokenizer.ggml.model";
pub const KEY_PRE: &str = "tokenizer.ggml.pre";
pub const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
pub const KEY_SCORES: &str = "tokenizer.ggml.scores";
pub const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub const KEY_MERGES: &str = "tokenizer.ggml.merges";
pub const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
pub const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
pub const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
pub const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
pub const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
pub const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
pub const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
pub const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// Token kinds as GGUF numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_id(v: i64) -> Self {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// SentencePiece-style: scores, `▁` for spaces, byte fallback.
    Spm,
    /// GPT-2-style byte-level BPE with merges and a pre-tokenizer regex.
    Bpe,
}

/// Texts of end-of-generation tokens across model families (besides the eos/eot ids in metadata).
const EOG_TEXTS: [&str; 6] = [
    "<end_of_turn>",
    "<|eot_id|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|end|>",
    "<|eom_id|>",
];

pub struct Tokenizer {
    pub kind: TokenizerKind,
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<TokenType>,
    vocab: Vocab,
    /// Control, user-defined and unknown tokens, longest text first.
    specials: Vec<u32>,
    byte_tokens: [Option<u32>; 256],
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    add_space_prefix: bool,
    eog: Vec<u32>,
    bpe: Option<bpe::Bpe>,
    pub chat_template: Option<String>,
}

/// Token text → id without a second copy of the vocabulary's strings: the table holds ids and
/// hashes the texts they point at (a `HashMap<String, u32>` cost ~25 MB for 262k tokens).
struct Vocab {
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Vocab {
    fn new(tokens: &[String]) -> Self {
        let hasher = DefaultHashBuilder::default();
        let mut table = HashTable::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let h = hasher.hash_one(t.as_str());
            // A text listed twice keeps its first id.
            if table.find(h, |&j| tokens[j as usize] == *t).is_none() {
                table.insert_unique(h, i as u32, |&j| {
                    hasher.hash_one(tokens[j as usize].as_str())
                });
            }
        }
        Vocab { table, hasher }
    }

    fn get(&self, tokens: &[String], text: &str) -> Option<u32> {
        let h = self.hasher.hash_one(text);
        self.table.find(h, |&j| tokens[j as usize] == text).copied()
    }
}

fn id_key(gguf: &GgufFile, key: &str, n: usize) -> Result<Option<u32>, ModelError> {
    Ok(gguf
        .get_u64(key)?
        .filter(|&v| (v as usize) < n)
        .map(|v| v as u32))
}

impl Tokenizer {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, ModelError> {
        let tokens = gguf.get_array(KEY_TOKENS)?.cloned();
        let scores = gguf.get_array(KEY_SCORES)?.cloned();
        Self::build(gguf, tokens, scores)
    }

    /// [`Tokenizer::from_gguf`], moving the vocabulary and scores out of the file's metadata
    /// instead of copying them (tens of megabytes for a 262k vocabulary).
    pub fn take_from_gguf(gguf: &mut GgufFile) -> Result<Self, ModelError> {
        // Type-check both before taking either, so an error leaves the metadata whole.
        gguf.get_array(KEY_TOKENS)?;
        gguf.get_array(KEY_SCORES)?;
        let array = |v: Option<Value>| match v {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        };
        let tokens = array(gguf.take(KEY_TOKENS));
        let scores = array(gguf.take(KEY_SCORES));
        Self::build(gguf, tokens, scores)
    }

    /// The metadata entries [`Tokenizer::take_from_gguf`] moved out, rebuilt for writing a GGUF.
    pub fn taken_metadata(&self) -> [(&'static str, Value); 2] {
        [
            (KEY_TOKENS, Value::Array(Array::String(self.tokens.clone()))),
            (KEY_SCORES, Value::Array(Array::F32(self.scores.clone()))),
        ]
    }

    fn build(
        gguf: &GgufFile,
        tokens: Option<Array>,
        scores: Option<Array>,
    ) -> Result<Self, ModelError> {
        let model = gguf.get_str(KEY_MODEL)?.unwrap_or("llama").to_string();
        let kind = match model.as_str() {
            "llama" => TokenizerKind::Spm,
            "gpt2" => TokenizerKind::Bpe,
            other => return Err(ModelError::UnsupportedTokenizer(other.to_string())),
        };
        let tokens = match tokens {
            Some(Array::String(v)) => v,
            Some(_) => {
                return Err(ModelError::Tokenizer(format!(
                    "{KEY_TOKENS} is not a string array"
                )))
            }
            None => return Err(ModelError::MissingKey(KEY_TOKENS.into())),
        };
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::Tokenizer("empty vocabulary".into()));
        }
        let scores = match scores {
            Some(Array::F32(v)) if v.len() == n => v,
            Some(_) => {
                return Err(ModelError::Tokenizer(format!(
                    "{KEY_SCORES} must be {n} floats"
                )))
            }
            None => vec![0.0; n],
        };
        let types = match gguf.get_array(KEY_TOKEN_TYPE)? {
            Some(a) => {
                let v = a.to_i64_vec().filter(|v| v.len() == n).ok_or_else(|| {
                    ModelError::Tokenizer(format!("{KEY_TOKEN_TYPE} must be {n} integers"))
                })?;
                v.into_iter().map(TokenType::from_id).collect()
            }
            None => vec![TokenType::Normal; n],
        };
        let vocab = Vocab::new(&tokens);
        let token_id = |t: &str| vocab.get(&tokens, t);
        let mut byte_tokens = [None; 256];
        if kind == TokenizerKind::Spm {
            for (b, slot) in byte_tokens.iter_mut().enumerate() {
                *slot = token_id(&format!("<0x{b:02X}>"));
            }
        }
        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                matches!(
                    types[i as usize],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                ) && !tokens[i as usize].is_empty()
            })
            .collect();
        specials.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));
        let bos = id_key(gguf, KEY_BOS, n)?;
        let eos = id_key(gguf, KEY_EOS, n)?;
        let mut eot = id_key(gguf, KEY_EOT, n)?;
        if eot.is_none() {
            eot = ["<end_of_turn>", "<|eot_id|>", "<|im_end|>"]
                .iter()
                .find_map(|t| token_id(t));
        }
        let mut eog: Vec<u32> = eos.into_iter().chain(eot).collect();
        for t in EOG_TEXTS {
            if let Some(id) = token_id(t) {
                if !eog.contains(&id) {
                    eog.push(id);
                }
            }
        }
        let bpe = if kind == TokenizerKind::Bpe {
            let pre = gguf.get_str(KEY_PRE)?.unwrap_or("default");
            let merges = match gguf.get_array(KEY_MERGES)? {
                Some(Array::String(v)) => v.as_slice(),
                Some(_) => {
                    return Err(ModelError::Tokenizer(format!(
                        "{KEY_MERGES} is not a string array"
                    )))
                }
                None => return Err(ModelError::MissingKey(KEY_MERGES.into())),
            };
            Some(bpe::Bpe::new(pre, merges)?)
        } else {
            None
        };
        Ok(Tokenizer {
            kind,
            tokens,
            scores,
            types,
            vocab,
            specials,
            byte_tokens,
            bos,
            eos,
            eot,
            add_bos: gguf
                .get_bool(KEY_ADD_BOS)?
                .unwrap_or(kind == TokenizerKind::Spm),
            add_eos: gguf.get_bool(KEY_ADD_EOS)?.unwrap_or(false),
            add_space_prefix: gguf
                .get_bool(KEY_ADD_SPACE_PREFIX)?
                .unwrap_or(kind == TokenizerKind::Spm),
            eog,
            bpe,
            chat_template: gguf.get_str(KEY_CHAT_TEMPLATE)?.map(str::to_string),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.get(&self.tokens, text)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Whether generation should stop at `id` (eos, end-of-turn and their kin).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub fn eog_tokens(&self) -> &[u32] {
        &self.eog
    }

    /// Token ids of `text`. `add_special` adds BOS/EOS as the model's metadata asks;
    /// `parse_special` turns control-token texts such as `<start_of_turn>` into their ids.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.encode_parts(&[(text, parse_special)], add_special)
    }

    /// Token ids of texts joined, each with its own `parse_special`: a chat template's markers
    /// become control tokens while the messages between them stay text whatever they contain.
    /// Text on both sides of a boundary is tokenized as one run, exactly as the joined string
    /// would be, so benign content gives the same ids as [`Tokenizer::encode`] of the whole.
    pub fn encode_parts(&self, parts: &[(&str, bool)], add_special: bool) -> Vec<u32> {
        // Control tokens come only from parts that ask for them; user-defined ones are pieces
        // of the vocabulary found in any text, so they are split after the parts are joined.
        let control = |ty| matches!(ty, TokenType::Control | TokenType::Unknown);
        let mut runs: Vec<Fragment<String>> = Vec::new();
        for &(text, parse_special) in parts {
            for f in self.partition(text, |ty| parse_special && control(ty)) {
                match (runs.last_mut(), f) {
                    (Some(Fragment::Text(run)), Fragment::Text(s)) => run.push_str(s),
                    (_, Fragment::Text(s)) => runs.push(Fragment::Text(s.to_string())),
                    (_, Fragment::Token(id)) => runs.push(Fragment::Token(id)),
                }
            }
        }
        let frags = runs.iter().flat_map(|f| match f {
            Fragment::Text(s) => self.partition(s, |ty| ty == TokenType::UserDefined),
            Fragment::Token(id) => vec![Fragment::Token(*id)],
        });
        let mut out = Vec::new();
        if add_special && self.add_bos {
            if let Some(b) = self.bos {
                out.push(b);
            }
        }
        let mut prev_special = true;
        for frag in frags {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(s) => {
                    match self.kind {
                        TokenizerKind::Spm => {
                            let mut t = String::with_capacity(s.len() + 3);
                            if self.add_space_prefix && prev_special {
                                t.push(' ');
                            }
                            t.push_str(s);
                            let escaped = t.replace(' ', "\u{2581}");
                            spm::encode(self, &escaped, &mut out);
                        }
                        TokenizerKind::Bpe => {
                            if let Some(b) = &self.bpe {
                                b.encode(s, |t| self.vocab.get(&self.tokens, t), &mut out);
                            }
                        }
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            if let Some(e) = self.eos {
                out.push(e);
            }
        }
        out
    }

    /// Splits the texts of tokens of the kinds `take` selects out of `text`, longest first.
    fn partition<'a>(
        &self,
        text: &'a str,
        take: impl Fn(TokenType) -> bool,
    ) -> Vec<Fragment<&'a str>> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Fragment::Text(text)];
        for &id in &self.specials {
            if !take(self.types[id as usize]) {
                continue;
            }
            let tok = self.tokens[id as usize].as_str();
            // Cheap whole-text check first: most of the thousands of specials never occur.
            if !text.contains(tok) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Text(mut s) => {
                        while let Some(pos) = s.find(tok) {
                            if pos > 0 {
                                next.push(Fragment::Text(&s[..pos]));
                            }
                            next.push(Fragment::Token(id));
                            s = &s[pos + tok.len()..];
                        }
                        if !s.is_empty() {
                            next.push(Fragment::Text(s));
                        }
                    }
                    tok @ Fragment::Token(_) => next.push(tok),
                }
            }
            frags = next;
        }
        frags
    }

    /// The bytes one token stands for. Control tokens give nothing unless `special` is set.
    pub fn token_bytes(&self, id: u32, special: bool) -> Vec<u8> {
        let Some(text) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        match self.types[id as usize] {
            TokenType::Control => {
                if special {
                    text.as_bytes().to_vec()
                } else {
                    Vec::new()
                }
            }
            TokenType::Unused => Vec::new(),
            TokenType::Unknown => "\u{2585}".as_bytes().to_vec(),
            TokenType::Byte if self.kind == TokenizerKind::Spm => {
                parse_byte_token(text).map(|b| vec![b]).unwrap_or_default()
            }
            _ => match self.kind {
                TokenizerKind::Spm => text.replace('\u{2581}', " ").into_bytes(),
                TokenizerKind::Bpe => bpe::decode_token(text),
            },
        }
    }

    /// Decodes ids to text; invalid UTF-8 (a sequence cut by `max_tokens`) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id, special));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn score(&self, id: u32) -> f32 {
        self.scores[id as usize]
    }
}

/// A piece of the input: text for the model's algorithm, or a special token split out of it.
#[derive(Debug, Clone, Copy)]
enum Fragment<T> {
    Text(T),
    Token(u32),
}

fn parse_byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}
