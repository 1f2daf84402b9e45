// Matmul of real weights: scalar vs SIMD max relative difference, per tensor type.
use autodidact_kernels::{matmul_threads, Kernels, QuantizedActs, SimdLevel};
use autodidact_model::Model;
fn main() {
    let model = Model::load("/tmp/gemma.gguf").unwrap();
    let file = model.gguf.bytes();
    let s = Kernels::for_level(SimdLevel::Scalar).unwrap();
    let v = Kernels::for_level(SimdLevel::Avx512).unwrap();
    let l = &model.weights.layers[0];
    for (name, m) in [
        ("q", l.attn_q),
        ("v", l.attn_v),
        ("o", l.attn_output),
        ("down", l.ffn_down),
        ("down1", model.weights.layers[1].ffn_down),
    ] {
        let w = m.view(file);
        let x: Vec<f32> = (0..w.cols)
            .map(|i| {
                ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * if i % 50 == 0 { 30.0 } else { 1.0 }
            })
            .collect();
        let mut a1 = QuantizedActs::from_f32(&x, 1, w.cols);
        let mut a2 = QuantizedActs::from_f32(&x, 1, w.cols);
        let mut o1 = vec![0f32; w.rows];
        let mut o2 = vec![0f32; w.rows];
        matmul_threads(&s, &w, &mut a1, &mut o1).unwrap();
        matmul_threads(&v, &w, &mut a2, &mut o2).unwrap();
        let scale = o1.iter().map(|x| x.abs()).fold(0.0, f32::max);
        let maxd = o1
            .iter()
            .zip(&o2)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        println!(
            "{name} {:?}: max |diff| {maxd:.3e} of max |y| {scale:.3e}",
            w.ty
        );
    }
}
