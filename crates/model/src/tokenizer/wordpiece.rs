//! BERT's WordPiece tokenizer (Hugging Face `BertTokenizer`): clean, split CJK characters, strip
//! accents and lowercase, split on whitespace and punctuation, then greedy longest-match pieces
//! with `##` continuations. Loads `tokenizer.json` or `vocab.txt`.
use crate::ModelError;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    pub cls: u32,
    pub sep: u32,
    pub pad: u32,
    unk: u32,
    lowercase: bool,
    strip_accents: bool,
    max_chars_per_word: usize,
}

fn tok_err(path: &Path, what: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(format!("{}: {what}", path.display()))
}

impl WordPiece {
    /// `tokenizer.json` when the directory has one (it carries the normaliser's settings), else
    /// `vocab.txt` with BERT-uncased defaults.
    pub fn from_dir(dir: &Path) -> Result<WordPiece, ModelError> {
        let json = dir.join("tokenizer.json");
        if json.exists() {
            return Self::from_tokenizer_json(&json);
        }
        let vocab = dir.join("vocab.txt");
        let text = std::fs::read_to_string(&vocab).map_err(|source| ModelError::Io {
            path: vocab.display().to_string(),
            source,
        })?;
        let map = text
            .lines()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        Self::new(map, true, true, 100, &vocab)
    }

    pub fn from_tokenizer_json(path: &Path) -> Result<WordPiece, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| tok_err(path, e))?;
        let model = &v["model"];
        if model["type"] != "WordPiece" {
            return Err(tok_err(
                path,
                format!("model type {} is not WordPiece", model["type"]),
            ));
        }
        let vocab: HashMap<String, u32> = model["vocab"]
            .as_object()
            .ok_or_else(|| tok_err(path, "no model.vocab"))?
            .iter()
            .map(|(k, id)| {
                id.as_u64()
                    .map(|i| (k.clone(), i as u32))
                    .ok_or_else(|| tok_err(path, format!("vocab id of {k:?} is not a number")))
            })
            .collect::<Result<_, _>>()?;
        let norm = &v["normalizer"];
        let lowercase = norm["lowercase"].as_bool().unwrap_or(true);
        // Hugging Face: `strip_accents: null` follows `lowercase`.
        let strip_accents = norm["strip_accents"].as_bool().unwrap_or(lowercase);
        let max = model["max_input_chars_per_word"].as_u64().unwrap_or(100) as usize;
        Self::new(vocab, lowercase, strip_accents, max, path)
    }

    fn new(
        vocab: HashMap<String, u32>,
        lowercase: bool,
        strip_accents: bool,
        max_chars_per_word: usize,
        path: &Path,
    ) -> Result<WordPiece, ModelError> {
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| tok_err(path, format!("vocabulary lacks {t}")))
        };
        Ok(WordPiece {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            pad: id("[PAD]")?,
            unk: id("[UNK]")?,
            vocab,
            lowercase,
            strip_accents,
            max_chars_per_word,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// `[CLS] pieces… [SEP]`, at most `max_len` ids (pieces past it are dropped, as with
    /// `truncation=True`). Text that looks like `[SEP]` is split like any other text.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut out = vec![self.cls];
        let budget = max_len.saturating_sub(2);
        'words: for word in self.pre_tokenize(&self.normalize(text)) {
            for id in self.word_pieces(&word) {
                if out.len() - 1 == budget {
                    break 'words;
                }
                out.push(id);
            }
        }
        out.push(self.sep);
        out
    }

    fn normalize(&self, text: &str) -> String {
        let mut s = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || (is_control(c) && !c.is_whitespace()) {
                continue;
            }
            if c.is_whitespace() {
                s.push(' ');
            } else if is_cjk(c) {
                s.push(' ');
                s.push(c);
                s.push(' ');
            } else {
                s.push(c);
            }
        }
        if self.strip_accents {
            s = s.nfd().filter(|c| !is_combining_mark(*c)).collect();
        }
        if self.lowercase {
            s = s.chars().flat_map(char::to_lowercase).collect();
        }
        s
    }

    fn pre_tokenize(&self, s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for c in s.chars() {
            if c.is_whitespace() {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            } else if is_punctuation(c) {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            } else {
                cur.push(c);
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    /// Greedy longest-match-first; a word with any unmatched rest is `[UNK]` as a whole.
    fn word_pieces(&self, word: &str) -> Vec<u32> {
        let chars: Vec<(usize, char)> = word.char_indices().collect();
        if chars.len() > self.max_chars_per_word {
            return vec![self.unk];
        }
        let mut out = Vec::new();
        let mut start = 0;
        let mut piece = String::new();
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while end > start {
                piece.clear();
                if start > 0 {
                    piece.push_str("##");
                }
                let (a, b) = (chars[start].0, chars.get(end).map_or(word.len(), |c| c.0));
                piece.push_str(&word[a..b]);
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => out.push(id),
                None => return vec![self.unk],
            }
            start = end;
        }
        out
    }
}

fn is_control(c: char) -> bool {
    c.is_control() || matches!(c as u32, 0x200b..=0x200f | 0x202a..=0x202e | 0xfeff)
}

/// The CJK Unified Ideograph blocks BERT pads with spaces.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4e00..=0x9fff | 0x3400..=0x4dbf | 0x20000..=0x2a6df | 0x2a700..=0x2b73f
        | 0x2b740..=0x2b81f | 0x2b820..=0x2ceaf | 0xf900..=0xfaff | 0x2f800..=0x2fa1f)
}

/// ASCII symbols (as BERT treats them) and the Unicode punctuation blocks people type: Latin-1
/// punctuation, General Punctuation, CJK punctuation and full-width forms. Approximates
/// Unicode's P* categories for the scripts the vocabulary covers.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(c as u32,
        0xa1 | 0xa7 | 0xab | 0xb6 | 0xb7 | 0xbb | 0xbf | 0x37e | 0x387
        | 0x55a..=0x55f | 0x589 | 0x5be | 0x5c0 | 0x5c3 | 0x5c6 | 0x5f3 | 0x5f4
        | 0x609 | 0x60a | 0x60c | 0x60d | 0x61b | 0x61e | 0x61f | 0x66a..=0x66d | 0x6d4
        | 0x964 | 0x965 | 0x970 | 0xe4f | 0xe5a | 0xe5b
        | 0x2010..=0x2027 | 0x2030..=0x2043 | 0x2045..=0x2051 | 0x2053..=0x205e
        | 0x207d | 0x207e | 0x208d | 0x208e | 0x2308..=0x230b | 0x2329 | 0x232a
        | 0x2768..=0x2775 | 0x27c5 | 0x27c6 | 0x27e6..=0x27ef | 0x2983..=0x2998
        | 0x29d8..=0x29db | 0x29fc | 0x29fd | 0x2cf9..=0x2cfc | 0x2cfe | 0x2cff
        | 0x2e00..=0x2e2e | 0x2e30..=0x2e4f | 0x3001..=0x3003 | 0x3008..=0x3011
        | 0x3014..=0x301f | 0x3030 | 0x303d | 0x30a0 | 0x30fb
        | 0xfe10..=0xfe19 | 0xfe30..=0xfe52 | 0xfe54..=0xfe61 | 0xfe63 | 0xfe68 | 0xfe6a | 0xfe6b
        | 0xff01..=0xff03 | 0xff05..=0xff0a | 0xff0c..=0xff0f | 0xff1a | 0xff1b | 0xff1f
        | 0xff20 | 0xff3b..=0xff3d | 0xff3f | 0xff5b | 0xff5d | 0xff5f..=0xff65)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        let words = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##believ", "##able", "hello", ",", "cafe",
            "東",
        ];
        let vocab = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect();
        WordPiece::new(vocab, true, true, 100, Path::new("test")).unwrap()
    }

    #[test]
    fn pieces_accents_punctuation_and_unknowns() {
        let t = tiny();
        assert_eq!(t.encode("Unbelievable, HELLO", 64), [2, 4, 5, 6, 8, 7, 3]);
        assert_eq!(t.encode("Café 東x", 64), [2, 9, 10, 1, 3]);
        assert_eq!(t.encode("hello hello hello", 4), [2, 7, 7, 3]);
        assert_eq!(t.encode("[SEP]", 64), [2, 1, 1, 1, 3]);
    }
}
