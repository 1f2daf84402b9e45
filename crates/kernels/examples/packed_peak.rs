//! Single-thread throughput of the packed kernels, matrix in cache, in L3, and streamed from memory
//! (262144 rows: the tied output projection of the default model):
//! `cargo run --release -p autodidact-kernels --example packed_peak`.
use autodidact_kernels::packed::{matmul_packed, PackedMatrix};
use autodidact_kernels::quant::quantize_to_vec;
use autodidact_kernels::{GgmlType, Kernels, QuantizedActs, WeightView};
use std::time::Instant;

use autodidact_kernels::testing::weight_like_values as values;

fn main() {
    let Some(gemm) = Kernels::get().packed else {
        eprintln!("no packed kernels on this CPU");
        return;
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for (ty, cols) in [
        (GgmlType::Q8_0, 640),
        (GgmlType::Q5_0, 640),
        (GgmlType::Q4K, 1024),
        (GgmlType::Q6K, 2048),
    ] {
        for rows in [256usize, 16384, 262144] {
            if rows > 16384 && ty != GgmlType::Q8_0 {
                continue;
            }
            let w = quantize_to_vec(ty, &values(rows * cols, 1)).unwrap();
            let view = WeightView::new(ty, &w, rows, cols).unwrap();
            let p = PackedMatrix::pack(&view).unwrap();
            for n in [1usize, 16] {
                let x = values(n * cols, 2);
                let mut acts = QuantizedActs::from_f32(&x, n, cols);
                let mut out = vec![0f32; n * rows];
                let macs = (rows * cols * n) as f64;
                let iters = (2e8 / macs).ceil() as usize;
                // The best of several trials: this machine is shared and noisy.
                let best = pool.install(|| {
                    matmul_packed(gemm, &p, &mut acts, &mut out).unwrap();
                    (0..40)
                        .map(|_| {
                            let t = Instant::now();
                            for _ in 0..iters {
                                matmul_packed(gemm, &p, &mut acts, &mut out).unwrap();
                            }
                            macs * iters as f64 / t.elapsed().as_secs_f64() / 1e9
                        })
                        .fold(0f64, f64::max)
                });
                println!(
                    "{:5} rows={rows:6} tokens={n:2}: {best:6.1} GMAC/s",
                    ty.name()
                );
            }
        }
    }
}
