//! Text helpers shared by the write and read paths: normalisation for dedupe, words for matching,
//! and the token estimate for prompt budgets.

/// Lowercased words with punctuation dropped, so "I like tea." and "i like  TEA" compare equal.
pub fn normalize(text: &str) -> String {
    words(text).join(" ")
}

/// Lowercased alphanumeric runs (apostrophes inside a word kept: "user's").
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if (c == '\'' || c == '’')
            && !cur.is_empty()
            && chars.peek().is_some_and(|n| n.is_alphanumeric())
        {
            cur.push('\'');
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "did", "do", "does", "for", "from",
    "had", "has", "have", "how", "i", "i'm", "in", "is", "it", "me", "my", "of", "on", "or", "so",
    "that", "the", "their", "them", "they", "this", "to", "was", "we", "were", "what", "when",
    "where", "which", "who", "why", "will", "with", "you", "your", "user", "user's", "s", "am",
    "can", "tell", "about", "again", "any", "know",
];

pub fn is_stopword(w: &str) -> bool {
    STOP.contains(&w)
}

/// Words that carry meaning: the query terms for BM25 and the overlap measure for near-duplicates.
pub fn content_words(text: &str) -> Vec<String> {
    let all = words(text);
    let content: Vec<String> = all.iter().filter(|w| !is_stopword(w)).cloned().collect();
    if content.is_empty() {
        all
    } else {
        content
    }
}

/// Jaccard overlap of two texts' content-word sets.
pub fn overlap(a: &str, b: &str) -> f64 {
    let a: std::collections::BTreeSet<String> = content_words(a).into_iter().collect();
    let b: std::collections::BTreeSet<String> = content_words(b).into_iter().collect();
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / a.union(&b).count() as f64
}

/// A conservative token count for budgets when the caller has no tokenizer at hand: English runs
/// about 4 bytes a token in Gemma's and Llama's vocabularies; rounding up and a few tokens for the
/// list markup keep a budget from being overrun.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(3) + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_space_and_punctuation() {
        assert_eq!(normalize("I like  TEA."), normalize("i like tea"));
        assert_eq!(
            words("The user's cat, Miso!"),
            ["the", "user's", "cat", "miso"]
        );
    }

    #[test]
    fn overlap_is_jaccard() {
        assert!((overlap("likes green tea", "likes tea") - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(overlap("tea", "coffee"), 0.0);
        assert_eq!(overlap("Tea!", "tea"), 1.0);
    }
}
