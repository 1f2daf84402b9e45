//! SentencePiece-style encoding: repeatedly merge the adjacent pair whose joined text is the
//! highest-scoring vocabulary entry (ties: leftmost), then fall back to byte tokens for unknowns.
use super::Tokenizer;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| o.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

pub(super) fn encode(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    if text.is_empty() {
        return;
    }
    let mut syms: Vec<Symbol> = text
        .char_indices()
        .map(|(i, c)| Symbol {
            start: i,
            len: c.len_utf8(),
            prev: None,
            next: None,
        })
        .collect();
    let n = syms.len();
    for (i, s) in syms.iter_mut().enumerate() {
        s.prev = i.checked_sub(1);
        s.next = if i + 1 < n { Some(i + 1) } else { None };
    }
    let mut heap = BinaryHeap::new();
    let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Symbol], l: usize, r: usize| {
        let start = syms[l].start;
        let size = syms[l].len + syms[r].len;
        if let Some(id) = tok.token_id(&text[start..start + size]) {
            heap.push(Bigram {
                score: tok.score(id),
                left: l,
                right: r,
                size,
            });
        }
    };
    for i in 1..n {
        try_add(&mut heap, &syms, i - 1, i);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (b.left, b.right);
        // Stale entries: one side was merged away or grew since this bigram was queued.
        if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != b.size {
            continue;
        }
        syms[l].len += syms[r].len;
        syms[r].len = 0;
        syms[l].next = syms[r].next;
        if let Some(nx) = syms[r].next {
            syms[nx].prev = Some(l);
        }
        if let Some(p) = syms[l].prev {
            try_add(&mut heap, &syms, p, l);
        }
        if let Some(nx) = syms[l].next {
            try_add(&mut heap, &syms, l, nx);
        }
    }
    let mut i = Some(0);
    while let Some(k) = i {
        let s = &syms[k];
        let piece = &text[s.start..s.start + s.len];
        match tok.token_id(piece) {
            Some(id) => out.push(id),
            None => {
                for b in piece.bytes() {
                    if let Some(id) = tok.byte_tokens[b as usize] {
                        out.push(id);
                    } else if let Some(unk) = tok.token_id("<unk>") {
                        out.push(unk);
                    }
                }
            }
        }
        i = s.next;
    }
}
