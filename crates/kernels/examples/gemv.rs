//! Times one-token products against a matrix the size of Gemma 3 270M's output projection.
use autodidact_kernels::quant::quantize_to_vec;
use autodidact_kernels::{matmul_threads, GgmlType, Kernels, QuantizedActs, WeightView};
use std::time::Instant;

fn main() {
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(262144);
    let cols = 640;
    let ty = match std::env::var("TY").as_deref() {
        Ok("q5_0") => GgmlType::Q5_0,
        Ok("q4k") => GgmlType::Q4K,
        _ => GgmlType::Q8_0,
    };
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
        .collect();
    let w = quantize_to_vec(ty, &x).unwrap();
    drop(x);
    let view = WeightView::new(ty, &w, rows, cols).unwrap();
    let a: Vec<f32> = (0..cols).map(|i| (i as f32).sin()).collect();
    let mut out = vec![0f32; rows];
    let k = Kernels::get();
    // raw bandwidth: sum of u64 words
    let words: &[u64] =
        unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u64, w.len() / 8) };
    for _ in 0..3 {
        let t = Instant::now();
        let s: u64 = words.iter().fold(0u64, |a, b| a.wrapping_add(*b));
        let dt = t.elapsed().as_secs_f64();
        eprintln!("sum 1 thread: {:.2} GB/s ({s})", w.len() as f64 / dt / 1e9);
    }
    let packed = autodidact_kernels::PackedMatrix::pack(&view).unwrap();
    for n in [1usize, 1, 1, 16] {
        let a: Vec<f32> = (0..n * cols).map(|i| (i as f32).sin()).collect();
        let mut out = vec![0f32; n * rows];
        let t = Instant::now();
        let mut acts = QuantizedActs::from_f32(&a, n, cols);
        autodidact_kernels::matmul_packed(k.packed.unwrap(), &packed, &mut acts, &mut out).unwrap();
        let dt = t.elapsed().as_secs_f64();
        eprintln!(
            "packed n={n}: {:.2} ms, {:.2} GB/s",
            dt * 1e3,
            w.len() as f64 / dt / 1e9
        );
    }
    for _ in 0..3 {
        let t = Instant::now();
        let mut acts = QuantizedActs::from_f32(&a, 1, cols);
        matmul_threads(k, &view, &mut acts, &mut out).unwrap();
        let dt = t.elapsed().as_secs_f64();
        eprintln!(
            "gemv: {:.2} ms, {:.2} GB/s",
            dt * 1e3,
            w.len() as f64 / dt / 1e9
        );
    }
}
