//! Per-sequence KV cache, allocated once: full-attention layers hold `n_ctx` positions, sliding-window
//! layers a ring of `window + max_batch` (enough for every query of a batch to see its whole window).
use crate::config::Config;
use half::f16;

pub(crate) struct LayerKv {
    /// (cap, kv_dim), position p at row p % cap.
    pub k: Vec<f16>,
    pub v: Vec<f16>,
    pub cap: usize,
}

/// `n` zeros straight from the allocator's zeroed pages, which stay unresident until written:
/// a short chat touches only the first rows of a cache sized for the whole context.
/// (`vec![f16::ZERO; n]` would write every element.)
fn zeroed_f16(n: usize) -> Vec<f16> {
    let mut v = std::mem::ManuallyDrop::new(vec![0u16; n]);
    // SAFETY: f16 is a transparent u16 (same size and alignment) and all-zero bits are +0.0; the
    // pointer, length and capacity come from a live Vec whose ownership moves to the new one.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut f16, v.len(), v.capacity()) }
}

/// The cache of one sequence: `len` positions filled so far.
pub struct SeqCache {
    pub(crate) layers: Vec<LayerKv>,
    len: usize,
    /// Lowest position the sliding rings still hold beyond what `len` implies: truncating or
    /// copying a prefix leaves older rows that belong to positions no longer in the sequence.
    ring_from: usize,
    n_ctx: usize,
    /// Tokens per forward call the sliding rings were sized for.
    max_batch: usize,
    window: Option<usize>,
}

impl SeqCache {
    pub fn new(c: &Config, n_ctx: usize, max_batch: usize) -> Self {
        let kv = c.kv_dim();
        let layers = (0..c.n_layer)
            .map(|il| {
                let cap = match c.sliding_window {
                    Some(w) if c.swa_layers[il] => n_ctx.min(w + max_batch),
                    _ => n_ctx,
                };
                LayerKv {
                    k: zeroed_f16(cap * kv),
                    v: zeroed_f16(cap * kv),
                    cap,
                }
            })
            .collect();
        SeqCache {
            layers,
            len: 0,
            ring_from: 0,
            n_ctx,
            max_batch,
            window: c.sliding_window,
        }
    }

    /// Positions filled (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.n_ctx
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.ring_from = 0;
    }

    /// Keeps only the first `len` positions, for reusing a shared prompt prefix. Returns false (and
    /// changes nothing) when a sliding ring has already overwritten positions the kept prefix's
    /// next queries would need.
    pub fn truncate(&mut self, len: usize) -> bool {
        if len >= self.len {
            return len == self.len;
        }
        if let Some(w) = self.window {
            for l in &self.layers {
                if l.cap < self.n_ctx {
                    // The next query (at `len`) needs positions len+1-w .. len-1 still in the ring.
                    let needed = (len + 1).saturating_sub(w);
                    if needed < self.ring_held_from(l.cap) {
                        return false;
                    }
                }
            }
        }
        // Rows of positions before `len - cap` were overwritten by the positions cut off here.
        for l in &self.layers {
            if l.cap < self.n_ctx {
                self.ring_from = self.ring_from.max(self.len.saturating_sub(l.cap));
            }
        }
        self.len = len;
        true
    }

    /// The oldest position a ring of `cap` rows still holds.
    fn ring_held_from(&self, cap: usize) -> usize {
        self.len.saturating_sub(cap).max(self.ring_from)
    }

    /// Makes this cache hold `src`'s first `len` positions (and nothing after): sequences that
    /// share a prompt prefix compute it once. Returns false (and changes nothing) when the
    /// caches differ in shape, `src` holds fewer than `len` positions, or a sliding ring of
    /// `src` has overwritten positions that the next queries after `len` would need.
    pub fn copy_prefix_from(&mut self, src: &SeqCache, len: usize) -> bool {
        let same_shape = self.layers.len() == src.layers.len()
            && self.window == src.window
            && self.n_ctx == src.n_ctx
            && self
                .layers
                .iter()
                .zip(&src.layers)
                .all(|(a, b)| a.cap == b.cap && a.k.len() == b.k.len());
        if !same_shape || len > src.len {
            return false;
        }
        // The positions of each layer to copy: all of them for full attention; for a ring, those
        // it still holds, which must reach back to what the query at `len` attends to.
        let mut spans = Vec::with_capacity(self.layers.len());
        let mut ring_from = 0;
        for l in &src.layers {
            let from = if l.cap < self.n_ctx {
                let from = len.saturating_sub(l.cap).max(src.ring_held_from(l.cap));
                if let Some(w) = self.window {
                    if (len + 1).saturating_sub(w) < from {
                        return false;
                    }
                }
                ring_from = ring_from.max(from);
                from
            } else {
                0
            };
            spans.push(from);
        }
        for ((dst, s), from) in self.layers.iter_mut().zip(&src.layers).zip(spans) {
            let kv = s.k.len() / s.cap;
            for p in from..len {
                let row = (p % s.cap) * kv;
                dst.k[row..row + kv].copy_from_slice(&s.k[row..row + kv]);
                dst.v[row..row + kv].copy_from_slice(&s.v[row..row + kv]);
            }
        }
        self.len = len;
        // Rows below what was copied hold whatever this cache held before.
        self.ring_from = ring_from;
        true
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Bytes held by this cache.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.len() + l.v.len()) * 2)
            .sum()
    }
}
