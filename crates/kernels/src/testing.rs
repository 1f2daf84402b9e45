//! Deterministic inputs shared by the kernel tests, benchmarks and examples.

/// Pseudo-random values in [-1, 1) with an outlier (×6) every 97th, like real weights and
/// activations; the same `seed` gives the same values.
pub fn weight_like_values(n: usize, seed: u64) -> Vec<f32> {
    let step = |s: u64| {
        s.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    };
    let mut s = step(seed);
    (0..n)
        .map(|i| {
            s = step(s);
            let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            if i % 97 == 0 {
                v * 6.0
            } else {
                v
            }
        })
        .collect()
}
