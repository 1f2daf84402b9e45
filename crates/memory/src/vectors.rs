//! Embeddings: unit vectors stored as little-endian f32 blobs, searched by a brute-force scan over
//! one contiguous array held in memory (an approximate index would cost recall for no need at one
//! person's scale).
use crate::error::{MemoryError, Result};
use autodidact_kernels::quant::quantize_row;
use autodidact_kernels::{matmul, GgmlType, QuantizedActs, WeightView};
use rayon::prelude::*;
use std::collections::HashMap;

/// Scales `v` to unit length; refuses NaN, infinities and the zero vector.
pub fn normalized(v: &[f32]) -> Result<Vec<f32>> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err(MemoryError::BadEmbedding);
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n == 0.0 || !n.is_finite() {
        return Err(MemoryError::BadEmbedding);
    }
    Ok(v.iter().map(|x| x / n).collect())
}

pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// How the index holds its rows. Scanning is bound by memory bandwidth (100,000 × 384 f32 is
/// 154 MB a query), so dimensions that are a multiple of 32 are held as Q8_0 (34 bytes per 32
/// values: 41 MB at that size) and scanned by the kernels' threaded int8 GEMV; the cosine comes
/// out within about 0.003 of the exact one, which moves ranks only among near-ties.
#[derive(Debug)]
enum Rows {
    F32(Vec<f32>),
    Q8(Vec<u8>),
}

/// Every stored vector of one dimension, in memory, with each memory's validity.
#[derive(Debug)]
pub struct VectorIndex {
    pub dim: usize,
    ids: Vec<i64>,
    current: Vec<bool>,
    // [ids.len() × row], row i belongs to ids[i].
    rows: Rows,
    slot: HashMap<i64, usize>,
}

impl VectorIndex {
    pub fn new(dim: usize) -> Self {
        let rows = if dim > 0 && dim.is_multiple_of(GgmlType::Q8_0.block_len()) {
            Rows::Q8(Vec::new())
        } else {
            Rows::F32(Vec::new())
        };
        VectorIndex {
            dim,
            ids: Vec::new(),
            current: Vec::new(),
            rows,
            slot: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes the rows take in memory.
    pub fn bytes(&self) -> usize {
        match &self.rows {
            Rows::F32(d) => d.len() * 4,
            Rows::Q8(b) => b.len(),
        }
    }

    /// Adds or replaces `id`'s vector (already unit length, `dim` long).
    pub fn upsert(&mut self, id: i64, v: &[f32], current: bool) {
        debug_assert_eq!(v.len(), self.dim);
        let i = match self.slot.get(&id) {
            Some(&i) => {
                self.current[i] = current;
                i
            }
            None => {
                let i = self.ids.len();
                self.slot.insert(id, i);
                self.ids.push(id);
                self.current.push(current);
                match &mut self.rows {
                    Rows::F32(d) => d.resize(d.len() + self.dim, 0.0),
                    Rows::Q8(b) => b.resize(b.len() + q8_row_bytes(self.dim), 0),
                }
                i
            }
        };
        match &mut self.rows {
            Rows::F32(d) => d[i * self.dim..(i + 1) * self.dim].copy_from_slice(v),
            Rows::Q8(b) => {
                let rb = q8_row_bytes(self.dim);
                quantize_row(GgmlType::Q8_0, v, &mut b[i * rb..(i + 1) * rb])
                    .expect("the row length is a whole number of Q8_0 blocks");
            }
        }
    }

    pub fn set_current(&mut self, id: i64, current: bool) {
        if let Some(&i) = self.slot.get(&id) {
            self.current[i] = current;
        }
    }

    /// Swap-removes `id`'s row.
    pub fn remove(&mut self, id: i64) {
        let Some(i) = self.slot.remove(&id) else {
            return;
        };
        let last = self.ids.len() - 1;
        if i != last {
            let moved = self.ids[last];
            self.ids[i] = moved;
            self.current[i] = self.current[last];
            self.slot.insert(moved, i);
        }
        self.ids.pop();
        self.current.pop();
        match &mut self.rows {
            Rows::F32(d) => swap_remove_row(d, self.dim, i, last),
            Rows::Q8(b) => swap_remove_row(b, q8_row_bytes(self.dim), i, last),
        }
    }

    /// Every row's cosine with `query` (all rows are unit length).
    fn scores(&self, query: &[f32]) -> Vec<f32> {
        let n = self.ids.len();
        match &self.rows {
            Rows::F32(d) => d
                .par_chunks_exact(self.dim)
                .map(|r| dot(r, query))
                .collect(),
            Rows::Q8(b) => {
                let mut out = vec![0f32; n];
                let w = WeightView::new(GgmlType::Q8_0, b, n, self.dim)
                    .expect("rows are whole Q8_0 rows");
                let mut acts = QuantizedActs::from_f32(query, 1, self.dim);
                matmul(&w, &mut acts, &mut out).expect("shapes checked by construction");
                out
            }
        }
    }

    /// The `k` most similar (cosine) ids, best first.
    pub fn top_k(&self, query: &[f32], k: usize, include_invalid: bool) -> Vec<(i64, f32)> {
        if k == 0 || query.len() != self.dim || self.ids.is_empty() {
            return Vec::new();
        }
        let scores = self.scores(query);
        let mut best: Vec<(f32, usize)> = scores
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| include_invalid || self.current[i])
            .map(|(i, s)| (s, i))
            .collect();
        let by_score = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if best.len() > k {
            best.select_nth_unstable_by(k - 1, by_score);
            best.truncate(k);
        }
        best.sort_unstable_by(by_score);
        best.into_iter().map(|(s, i)| (self.ids[i], s)).collect()
    }
}

fn q8_row_bytes(dim: usize) -> usize {
    GgmlType::Q8_0
        .row_bytes(dim)
        .expect("dim is a multiple of the block length")
}

/// Moves row `last` into row `i` and drops the last row, `row` elements each.
fn swap_remove_row<T: Copy>(data: &mut Vec<T>, row: usize, i: usize, last: usize) {
    if i != last {
        let (head, tail) = data.split_at_mut(last * row);
        head[i * row..(i + 1) * row].copy_from_slice(&tail[..row]);
    }
    data.truncate(last * row);
}

/// Eight independent accumulators so the compiler vectorises the loop without reassociating.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_cosine_and_remove_keeps_rows_straight() {
        let mut ix = VectorIndex::new(3);
        ix.upsert(1, &normalized(&[1.0, 0.0, 0.0]).unwrap(), true);
        ix.upsert(2, &normalized(&[1.0, 1.0, 0.0]).unwrap(), true);
        ix.upsert(3, &normalized(&[0.0, 0.0, 1.0]).unwrap(), false);
        let q = normalized(&[1.0, 0.2, 0.0]).unwrap();
        let ids: Vec<i64> = ix.top_k(&q, 3, false).iter().map(|h| h.0).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(ix.top_k(&q, 3, true).len(), 3);
        ix.remove(1);
        assert_eq!(ix.top_k(&q, 1, false)[0].0, 2);
        assert!(normalized(&[0.0, 0.0]).is_err());
        assert_eq!(from_blob(&to_blob(&[1.5, -2.0])), [1.5, -2.0]);
    }

    /// A deterministic unit vector of `dim` values.
    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f32 / (1u64 << 53) as f32 - 0.5
            })
            .collect();
        normalized(&v).unwrap()
    }

    #[test]
    fn the_int8_index_ranks_as_exact_cosine_does_within_its_error() {
        let dim = 384;
        let mut ix = VectorIndex::new(dim);
        assert!(matches!(ix.rows, Rows::Q8(_)));
        let rows: Vec<Vec<f32>> = (0..500).map(|i| unit(i, dim)).collect();
        for (i, v) in rows.iter().enumerate() {
            ix.upsert(i as i64, v, i % 7 != 0);
        }
        assert_eq!(ix.bytes(), 500 * 12 * 34);
        let q = unit(9999, dim);
        let got = ix.top_k(&q, 10, false);
        let mut exact: Vec<(f32, i64)> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 7 != 0)
            .map(|(i, v)| (dot(v, &q), i as i64))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (rank, (id, s)) in got.iter().enumerate() {
            let truth = dot(&rows[*id as usize], &q);
            assert!((truth - s).abs() < 3e-3, "{truth} vs {s}");
            // Rank by rank, the score is the exact one's within the error.
            assert!((exact[rank].0 - s).abs() < 6e-3, "rank {rank}");
        }
        // Removing and replacing keep rows straight.
        ix.remove(got[0].0);
        assert!(ix.top_k(&q, 10, false).iter().all(|h| h.0 != got[0].0));
        ix.upsert(got[1].0, &q, true);
        let top = ix.top_k(&q, 1, true)[0];
        assert_eq!(top.0, got[1].0);
        assert!((top.1 - 1.0).abs() < 3e-3);
    }
}
