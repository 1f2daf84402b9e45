//! Embeddings: unit vectors stored as little-endian f32 blobs, searched by a brute-force dot product
//! over one contiguous array (100,000 × 384 floats is 154 MB, scanned in a few milliseconds; an
//! approximate index would cost recall for no need at one person's scale).
use crate::error::{MemoryError, Result};
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

/// Every stored vector of one dimension, in memory, with each memory's validity.
#[derive(Debug, Default)]
pub struct VectorIndex {
    pub dim: usize,
    ids: Vec<i64>,
    current: Vec<bool>,
    // [ids.len() × dim], row i belongs to ids[i].
    data: Vec<f32>,
    slot: HashMap<i64, usize>,
}

impl VectorIndex {
    pub fn new(dim: usize) -> Self {
        VectorIndex {
            dim,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds or replaces `id`'s vector (already unit length, `dim` long).
    pub fn upsert(&mut self, id: i64, v: &[f32], current: bool) {
        debug_assert_eq!(v.len(), self.dim);
        match self.slot.get(&id) {
            Some(&i) => {
                self.data[i * self.dim..(i + 1) * self.dim].copy_from_slice(v);
                self.current[i] = current;
            }
            None => {
                self.slot.insert(id, self.ids.len());
                self.ids.push(id);
                self.current.push(current);
                self.data.extend_from_slice(v);
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
            let (head, tail) = self.data.split_at_mut(last * self.dim);
            head[i * self.dim..(i + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.slot.insert(moved, i);
        }
        self.ids.pop();
        self.current.pop();
        self.data.truncate(last * self.dim);
    }

    /// The `k` most similar (cosine, since all rows are unit length) ids, best first.
    pub fn top_k(&self, query: &[f32], k: usize, include_invalid: bool) -> Vec<(i64, f32)> {
        if k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        // A bounded min-heap would save little: k is tens, the scan is the cost.
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        let mut floor = f32::NEG_INFINITY;
        for (i, row) in self.data.chunks_exact(self.dim).enumerate() {
            if !include_invalid && !self.current[i] {
                continue;
            }
            let s = dot(row, query);
            if best.len() < k || s > floor {
                let pos = best.partition_point(|&(b, _)| b >= s);
                best.insert(pos, (s, i));
                if best.len() > k {
                    best.pop();
                }
                if best.len() == k {
                    floor = best[k - 1].0;
                }
            }
        }
        best.into_iter().map(|(s, i)| (self.ids[i], s)).collect()
    }

    pub fn get(&self, id: i64) -> Option<&[f32]> {
        self.slot
            .get(&id)
            .map(|&i| &self.data[i * self.dim..(i + 1) * self.dim])
    }
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
        assert_eq!(ix.get(3).unwrap(), &[0.0, 0.0, 1.0]);
        assert!(normalized(&[0.0, 0.0]).is_err());
        assert_eq!(from_blob(&to_blob(&[1.5, -2.0])), [1.5, -2.0]);
    }
}
