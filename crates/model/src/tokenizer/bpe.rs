//! GPT-2-style byte-level BPE: bytes map to printable characters, a pre-tokenizer regex splits words,
//! and merges apply lowest rank first inside each word.
use crate::ModelError;
use fancy_regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DIGITS_PATTERN: &str = r"\p{N}";

pub(super) struct Bpe {
    /// Applied in order: each regex splits the pieces the previous one produced.
    regexes: Vec<Regex>,
    ranks: HashMap<(String, String), u32>,
}

/// GPT-2's byte → printable character table and its inverse.
fn byte_tables() -> &'static ([char; 256], HashMap<char, u8>) {
    static T: OnceLock<([char; 256], HashMap<char, u8>)> = OnceLock::new();
    T.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut n = 0u32;
        for b in 0..256u32 {
            let printable =
                (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            table[b as usize] = if printable {
                char::from_u32(b).unwrap_or('?')
            } else {
                n += 1;
                char::from_u32(255 + n).unwrap_or('?')
            };
        }
        let inv = table
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        (table, inv)
    })
}

/// The bytes a byte-level token text stands for.
pub(super) fn decode_token(text: &str) -> Vec<u8> {
    let inv = &byte_tables().1;
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match inv.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

impl Bpe {
    pub(super) fn new(pre: &str, merges: &[String]) -> Result<Self, ModelError> {
        let patterns: Vec<&str> = match pre {
            "llama3" | "llama-bpe" | "llama-v3" | "dbrx" | "smaug-bpe" | "tekken" => {
                vec![LLAMA3_PATTERN]
            }
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" => {
                vec![DIGITS_PATTERN, GPT2_PATTERN]
            }
            _ => vec![GPT2_PATTERN],
        };
        let regexes = patterns
            .into_iter()
            .map(|p| {
                Regex::new(p)
                    .map_err(|e| ModelError::Tokenizer(format!("pre-tokenizer regex: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (i, m) in merges.iter().enumerate() {
            let Some((a, b)) = m.split_once(' ') else {
                return Err(ModelError::Tokenizer(format!(
                    "merge {i} {m:?} has no space"
                )));
            };
            ranks
                .entry((a.to_string(), b.to_string()))
                .or_insert(i as u32);
        }
        Ok(Bpe { regexes, ranks })
    }

    fn split<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut pieces = vec![text];
        for re in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len());
            for p in pieces {
                let mut last = 0;
                for m in re.find_iter(p) {
                    // A regex error (backtrack limit) on odd input leaves the rest as one piece.
                    let Ok(m) = m else { break };
                    if m.start() > last {
                        next.push(&p[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < p.len() {
                    next.push(&p[last..]);
                }
            }
            pieces = next;
        }
        pieces
    }

    pub(super) fn encode(
        &self,
        text: &str,
        token_id: impl Fn(&str) -> Option<u32>,
        out: &mut Vec<u32>,
    ) {
        let table = &byte_tables().0;
        for word in self.split(text) {
            let mut syms: Vec<String> = word
                .bytes()
                .map(|b| table[b as usize].to_string())
                .collect();
            loop {
                let best = syms
                    .windows(2)
                    .enumerate()
                    .filter_map(|(i, w)| {
                        self.ranks
                            .get(&(w[0].clone(), w[1].clone()))
                            .map(|&r| (r, i))
                    })
                    .min();
                let Some((_, i)) = best else { break };
                let right = syms.remove(i + 1);
                syms[i].push_str(&right);
            }
            for s in syms {
                match token_id(&s) {
                    Some(id) => out.push(id),
                    None => {
                        for c in s.chars() {
                            if let Some(id) = token_id(c.encode_utf8(&mut [0; 4])) {
                                out.push(id);
                            }
                        }
                    }
                }
            }
        }
    }
}
