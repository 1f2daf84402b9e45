//! Criterion benchmarks of the matrix kernels at the default model's shapes: decode (one token),
//! batched decode (16 tokens) and prefill (64 tokens) for each weight type the model uses, through
//! the row-major kernels and through the packed layout the model runs on where the CPU has it.
//! `cargo bench -p autodidact-kernels`.
use autodidact_kernels::packed::{matmul_packed, PackedMatrix};
use autodidact_kernels::quant::quantize_to_vec;
use autodidact_kernels::{matmul_threads, GgmlType, Kernels, QuantizedActs, WeightView};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use autodidact_kernels::testing::weight_like_values as values;

fn bench(c: &mut Criterion) {
    let kernels = Kernels::get();
    // (type, rows, cols) as in Gemma 3 270M: attn_q/ffn_gate (Q5_0), attn_output (Q4_K), ffn_down (Q6_K),
    // and a 16k-row slice of the tied Q8_0 output projection.
    for (ty, rows, cols) in [
        (GgmlType::Q5_0, 2048, 640),
        (GgmlType::Q4K, 640, 1024),
        (GgmlType::Q6K, 640, 2048),
        (GgmlType::Q8_0, 16384, 640),
        (GgmlType::Q8_0, 512, 640),
    ] {
        let w = quantize_to_vec(ty, &values(rows * cols, 1)).unwrap();
        let view = WeightView::new(ty, &w, rows, cols).unwrap();
        let packed = kernels
            .packed
            .and_then(|g| Some((g, PackedMatrix::pack(&view)?)));
        for n in [1usize, 16, 64] {
            let x = values(n * cols, 2);
            let mut out = vec![0f32; n * rows];
            let mut g = c.benchmark_group(format!("matmul {} {rows}x{cols}", ty.name()));
            // Multiply-accumulates per second: comparable across types and token counts.
            g.throughput(Throughput::Elements((rows * cols * n) as u64));
            g.bench_function(format!("rows tokens={n}"), |b| {
                b.iter(|| {
                    let mut acts = QuantizedActs::from_f32(&x, n, cols);
                    matmul_threads(kernels, &view, &mut acts, &mut out).unwrap();
                })
            });
            if let Some((gemm, p)) = &packed {
                g.bench_function(format!("packed tokens={n}"), |b| {
                    b.iter(|| {
                        let mut acts = QuantizedActs::from_f32(&x, n, cols);
                        matmul_packed(*gemm, p, &mut acts, &mut out).unwrap();
                    })
                });
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
