//! Causal (and, for sliding layers, windowed) attention of every query head over its sequence's
//! f16 KV cache, with grouped-query heads sharing a cached head.
//!
//! Rounding follows llama.cpp's CPU attention: the query is rounded to f16 like the cached keys, and
//! the softmax weights are rounded to f16 before they weight the f16 values. This model amplifies
//! such rounding differences, so mirroring them keeps logits closer to llama.cpp's.
//!
//! Two paths compute the same thing. A sequence bringing many new tokens (a prompt) runs as
//! matrix products per head and tile of queries over its keys converted once to f32; single tokens
//! (decoding) take a dot product per cached key, which needs no conversion and no scratch.
use crate::config::Config;
use crate::kv_cache::{LayerKv, SeqCache};
use autodidact_kernels::vec::{exp_inplace, f16_to_f32, max_of, softmax};
use autodidact_kernels::{sgemm_serial, Accumulate, Kernels, MatMut, MatRef};
use half::f16;
use rayon::prelude::*;

/// Per token of the batch: which input it belongs to and its position.
#[derive(Clone, Copy)]
pub(crate) struct TokenAt {
    pub input: usize,
    pub pos: usize,
}

/// New tokens of one sequence from which the matrix-product path pays off.
const GEMM_MIN_TOKENS: usize = 16;
/// Query rows per matrix-product task: small enough to spread a prompt over the threads, large
/// enough that each product is efficient.
const QUERY_TILE: usize = 32;

/// One layer's attention inputs.
pub(crate) struct AttnArgs<'a> {
    pub c: &'a Config,
    pub il: usize,
    /// Keys further back than this many positions are invisible (sliding layers).
    pub window: Option<usize>,
    /// (total, n_head * hd), already scaled.
    pub q: &'a [f32],
    pub caches: &'a [&'a SeqCache],
    pub at: &'a [TokenAt],
}

impl AttnArgs<'_> {
    fn lowest_key(&self, pos: usize) -> usize {
        self.window.map_or(0, |w| (pos + 1).saturating_sub(w))
    }
}

/// `dst = src` rounded to f16 precision: queries meet the f16 keys as llama.cpp's do.
fn round_to_f16(src: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(x).to_f32();
    }
}

/// Writes `out (total, n_head * hd)`.
pub(crate) fn attention(a: &AttnArgs, out: &mut [f32]) {
    // Tokens of one input are contiguous in the batch: find each input's span.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (t, tok) in a.at.iter().enumerate() {
        match spans.last_mut() {
            Some((start, end)) if a.at[*start].input == tok.input && *end == t => *end = t + 1,
            _ => spans.push((t, t + 1)),
        }
    }
    let qd = a.c.q_dim();
    let mut tiles: Vec<(usize, &mut [f32])> = Vec::new();
    let mut singles: Vec<(usize, &mut [f32])> = Vec::new();
    let mut rest = out;
    for &(start, end) in &spans {
        let (span, tail) = rest.split_at_mut((end - start) * qd);
        rest = tail;
        if end - start >= GEMM_MIN_TOKENS {
            let rows = span.chunks_mut(QUERY_TILE * qd);
            tiles.extend((start..end).step_by(QUERY_TILE).zip(rows));
        } else {
            singles.extend((start..end).zip(span.chunks_mut(qd)));
        }
    }
    if !tiles.is_empty() {
        attention_tiles(a, &spans, tiles);
    }
    let group = a.c.n_head / a.c.n_head_kv;
    if group > 1 && singles.len() * a.c.n_head_kv >= 2 * rayon::current_num_threads() {
        attention_grouped(a, singles);
    } else if !singles.is_empty() {
        attention_single(a, singles);
    }
}

/// Rows `from..` (as many as `k` holds) of a layer's cache (positions, wrapping around a sliding ring) as f32.
fn keys_f32(layer: &LayerKv, kvd: usize, from: usize, k: &mut [f32], v: &mut [f32]) {
    k.par_chunks_mut(kvd)
        .zip(v.par_chunks_mut(kvd))
        .enumerate()
        .for_each(|(j, (k, v))| {
            let row = ((from + j) % layer.cap) * kvd;
            f16_to_f32(&layer.k[row..row + kvd], k);
            f16_to_f32(&layer.v[row..row + kvd], v);
        });
}

/// A long span's visible keys and values in f32, `(n, kv_dim)` each, from position `lo` on.
struct SpanKeys {
    lo: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

/// The matrix-product path: per sequence, its visible keys and values in f32 once; then per tile
/// of query rows and head, `S = Q·Kᵀ`, masked softmax, `O = P·V`.
fn attention_tiles(a: &AttnArgs, spans: &[(usize, usize)], tiles: Vec<(usize, &mut [f32])>) {
    let c = a.c;
    let (hd, kvd, qd) = (c.head_dim, c.kv_dim(), c.q_dim());
    let group = c.n_head / c.n_head_kv;
    let converted: Vec<Option<SpanKeys>> = spans
        .iter()
        .map(|&(start, end)| {
            (end - start >= GEMM_MIN_TOKENS).then(|| {
                let lo = a.lowest_key(a.at[start].pos);
                let n = a.at[end - 1].pos + 1 - lo;
                let layer = &a.caches[a.at[start].input].layers[a.il];
                let (mut k, mut v) = (vec![0f32; n * kvd], vec![0f32; n * kvd]);
                keys_f32(layer, kvd, lo, &mut k, &mut v);
                SpanKeys { lo, k, v }
            })
        })
        .collect();
    let span_of = |t: usize| spans.partition_point(|&(_, end)| end <= t);
    tiles.into_par_iter().for_each(|(t0, out)| {
        let rows = out.len() / qd;
        let SpanKeys { lo: lo0, k, v } = converted[span_of(t0)]
            .as_ref()
            .expect("tiles belong to long spans");
        let lo0 = *lo0;
        let (first, last) = (a.at[t0].pos, a.at[t0 + rows - 1].pos);
        // Keys this tile can see, as offsets into the converted span.
        let (k_from, k_to) = (a.lowest_key(first) - lo0, last + 1 - lo0);
        let nk = k_to - k_from;
        let mut qh = vec![0f32; rows * hd];
        let mut s = vec![0f32; rows * nk];
        for h in 0..c.n_head {
            let g = h / group;
            for (r, dst) in qh.chunks_mut(hd).enumerate() {
                round_to_f16(&a.q[(t0 + r) * qd + h * hd..][..hd], dst);
            }
            let kg = MatRef::strided(&k[k_from * kvd + g * hd..], nk, hd, kvd, 1);
            let vg = MatRef::strided(&v[k_from * kvd + g * hd..], nk, hd, kvd, 1);
            sgemm_serial(
                MatMut::new(&mut s, rows, nk),
                MatRef::new(&qh, rows, hd),
                kg.t(),
                Accumulate::Overwrite,
                1.0,
            );
            for (r, row) in s.chunks_mut(nk).enumerate() {
                let pos = first + r;
                let (vis_lo, vis_hi) = (a.lowest_key(pos) - lo0 - k_from, pos + 1 - lo0 - k_from);
                let live = &mut row[vis_lo..vis_hi];
                let max = max_of(live);
                live.iter_mut().for_each(|x| *x -= max);
                exp_inplace(live);
                let inv = 1.0 / live.iter().sum::<f32>();
                live.iter_mut()
                    .for_each(|x| *x = f16::from_f32(*x * inv).to_f32());
                row[..vis_lo].fill(0.0);
                row[vis_hi..].fill(0.0);
            }
            sgemm_serial(
                MatMut::strided(&mut out[h * hd..], rows, hd, qd, 1),
                MatRef::new(&s, rows, nk),
                vg,
                Accumulate::Overwrite,
                1.0,
            );
        }
    });
}

/// Few tokens from many sequences (batched decoding): one job per (token, cached head) for all the
/// query heads sharing it. Each head's arithmetic is [`attention_single`]'s, kernel for kernel and
/// in the same order, so a row's result does not depend on which path the batch's size chose.
fn attention_grouped(a: &AttnArgs, rows: Vec<(usize, &mut [f32])>) {
    let c = a.c;
    let (hd, kvd, qd) = (c.head_dim, c.kv_dim(), c.q_dim());
    let group = c.n_head / c.n_head_kv;
    let jobs: Vec<(usize, usize, &mut [f32])> = rows
        .into_iter()
        .flat_map(|(t, row)| {
            row.chunks_mut(group * hd)
                .enumerate()
                .map(move |(g, o)| (t, g, o))
        })
        .collect();
    let kern = Kernels::get();
    jobs.into_par_iter().for_each_init(
        || (Vec::new(), vec![0f32; group * hd]),
        |(s, q16), (t, g, o)| {
            let tok = a.at[t];
            let layer = &a.caches[tok.input].layers[a.il];
            let lo = a.lowest_key(tok.pos);
            let n = tok.pos + 1 - lo;
            let (k0, k1) = (g * hd, (g + 1) * hd);
            // (group, hd): the group's queries, rounded to f16 like the keys.
            round_to_f16(&a.q[t * qd + g * group * hd..][..group * hd], q16);
            // (group, n) scores.
            s.resize(group * n, 0.0);
            for (qh, sh) in q16.chunks(hd).zip(s.chunks_mut(n)) {
                for (sc, kp) in sh.iter_mut().zip(lo..=tok.pos) {
                    let row = (kp % layer.cap) * kvd;
                    *sc = (kern.f16)(&layer.k[row + k0..row + k1], qh);
                }
                softmax(sh);
            }
            o.fill(0.0);
            for (oh, sh) in o.chunks_mut(hd).zip(s.chunks(n)) {
                for (&p, kp) in sh.iter().zip(lo..=tok.pos) {
                    let row = (kp % layer.cap) * kvd;
                    // Softmax weights rounded to f16 like the values.
                    (kern.axpy_f16)(oh, f16::from_f32(p).to_f32(), &layer.v[row + k0..row + k1]);
                }
            }
        },
    );
}

/// The per-key path for sequences that bring few tokens: one (token, head) job each.
fn attention_single(a: &AttnArgs, rows: Vec<(usize, &mut [f32])>) {
    let c = a.c;
    let (hd, kvd) = (c.head_dim, c.kv_dim());
    let group = c.n_head / c.n_head_kv;
    let kern = Kernels::get();
    let jobs: Vec<(usize, usize, &mut [f32])> = rows
        .into_iter()
        .flat_map(|(t, row)| {
            row.chunks_mut(hd)
                .enumerate()
                .map(move |(head, o)| (t, head, o))
        })
        .collect();
    jobs.into_par_iter().for_each_init(
        || (Vec::new(), vec![0f32; hd]),
        |(scores, q16), (t, head, o)| {
            let tok = a.at[t];
            let layer = &a.caches[tok.input].layers[a.il];
            let (k0, k1) = (head / group * hd, (head / group + 1) * hd);
            let lo = a.lowest_key(tok.pos);
            round_to_f16(&a.q[t * c.q_dim() + head * hd..][..hd], q16);
            scores.clear();
            for kp in lo..=tok.pos {
                let row = (kp % layer.cap) * kvd;
                scores.push((kern.f16)(&layer.k[row + k0..row + k1], q16));
            }
            softmax(scores);
            o.fill(0.0);
            for (i, kp) in (lo..=tok.pos).enumerate() {
                let row = (kp % layer.cap) * kvd;
                let p = f16::from_f32(scores[i]).to_f32();
                (kern.axpy_f16)(o, p, &layer.v[row + k0..row + k1]);
            }
        },
    );
}
