//! Kernel tests: quantization round trips, reference dots against dequantized products, and every
//! SIMD level against the scalar reference.
use autodidact_kernels::quant::{dequantize_to_vec, quantize_to_vec};
use autodidact_kernels::{matmul_threads, GgmlType, Kernels, QuantizedActs, SimdLevel, WeightView};

use autodidact_kernels::testing::weight_like_values as values;

const WEIGHT_TYPES: [GgmlType; 9] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

#[test]
fn quantization_round_trip_error_is_bounded() {
    let x = values(1024, 1);
    for ty in WEIGHT_TYPES.into_iter().chain([GgmlType::Q8K]) {
        let q = quantize_to_vec(ty, &x).unwrap();
        assert_eq!(q.len(), ty.row_bytes(x.len()).unwrap());
        let y = dequantize_to_vec(ty, &q, x.len()).unwrap();
        let rmse = (x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            / x.len() as f32)
            .sqrt();
        // Bits per weight bound the error: 4-bit ≈ 0.1 of the range, 8-bit ≈ 0.01.
        let bound = match ty {
            GgmlType::F32 => 0.0,
            GgmlType::F16 | GgmlType::BF16 => 0.005,
            GgmlType::Q8_0 | GgmlType::Q8K => 0.02,
            GgmlType::Q6K | GgmlType::Q5_0 | GgmlType::Q5K => 0.08,
            _ => 0.16,
        };
        assert!(rmse <= bound, "{ty:?}: rmse {rmse} > {bound}");
    }
}

#[test]
fn wrong_sizes_are_errors_not_panics() {
    assert!(quantize_to_vec(GgmlType::Q4K, &[0.0; 100]).is_err());
    assert!(dequantize_to_vec(GgmlType::Q8_0, &[0u8; 33], 32).is_err());
    assert!(GgmlType::from_id(999).is_err());
}

/// The reference quantized dot equals the f32 dot of the dequantized weight and activation rows.
#[test]
fn reference_dot_matches_dequantized_product() {
    let k = 512;
    let w = values(k, 7);
    let x = values(k, 8);
    let scalar = Kernels::for_level(SimdLevel::Scalar).unwrap();
    for ty in WEIGHT_TYPES {
        let wq = quantize_to_vec(ty, &w).unwrap();
        let wd = dequantize_to_vec(ty, &wq, k).unwrap();
        let act = ty.act_type();
        let xd = if act == GgmlType::F32 {
            x.clone()
        } else {
            dequantize_to_vec(act, &quantize_to_vec(act, &x).unwrap(), k).unwrap()
        };
        let expect: f32 = wd.iter().zip(&xd).map(|(a, b)| a * b).sum();
        let view = WeightView::new(ty, &wq, 1, k).unwrap();
        let mut acts = QuantizedActs::from_f32(&x, 1, k);
        let mut out = [0f32];
        matmul_threads(&scalar, &view, &mut acts, &mut out).unwrap();
        let tol = 1e-4 * expect.abs().max(1.0) * 10.0;
        assert!(
            (out[0] - expect).abs() <= tol,
            "{ty:?}: {} vs {expect}",
            out[0]
        );
    }
}

/// Each SIMD level this CPU has agrees with the scalar reference on a whole matrix product. The
/// NEON levels keep the reference's float steps for the quantized types, so those must be equal
/// bit for bit. 37 rows and 5 tokens leave odd rows and tokens for every tile shape.
#[test]
fn simd_levels_match_scalar_reference() {
    let (rows, k, n) = (37, 768, 5);
    let scalar = Kernels::for_level(SimdLevel::Scalar).unwrap();
    let mut tested = 0;
    for level in SimdLevel::ALL
        .into_iter()
        .filter(|&l| l != SimdLevel::Scalar)
    {
        let Some(kern) = Kernels::for_level(level) else {
            eprintln!("skipping {level:?}: not supported by this CPU");
            continue;
        };
        tested += 1;
        let exact = matches!(
            level,
            SimdLevel::Neon | SimdLevel::NeonDotprod | SimdLevel::NeonI8mm
        );
        for ty in WEIGHT_TYPES {
            let quantized = !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
            let w: Vec<u8> = (0..rows)
                .flat_map(|r| quantize_to_vec(ty, &values(k, 100 + r as u64)).unwrap())
                .collect();
            let view = WeightView::new(ty, &w, rows, k).unwrap();
            // One token (decode's path) and five (the multi-token tiles).
            for n in [1, n] {
                let x = values(n * k, 3);
                let mut a1 = QuantizedActs::from_f32(&x, n, k);
                let mut a2 = QuantizedActs::from_f32(&x, n, k);
                let mut o1 = vec![0f32; n * rows];
                let mut o2 = vec![f32::NAN; n * rows];
                matmul_threads(&scalar, &view, &mut a1, &mut o1).unwrap();
                matmul_threads(&kern, &view, &mut a2, &mut o2).unwrap();
                if exact && quantized {
                    assert_eq!(o1, o2, "{level:?} {ty:?} n={n}");
                    continue;
                }
                for (i, (a, b)) in o1.iter().zip(&o2).enumerate() {
                    // Integer parts are exact; only the order of f32 accumulation differs.
                    let tol = 2e-5 * a.abs().max(1.0) * (k as f32).sqrt();
                    assert!(
                        (a - b).abs() <= tol,
                        "{level:?} {ty:?} n={n} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
        // The f16 value accumulation of attention, on lengths with and without a tail.
        for len in [7, 64, 77] {
            let x: Vec<half::f16> = values(len, 5)
                .iter()
                .map(|&v| half::f16::from_f32(v))
                .collect();
            let y0 = values(len, 6);
            let (mut want, mut got) = (y0.clone(), y0.clone());
            (scalar.axpy_f16)(&mut want, 0.37, &x);
            (kern.axpy_f16)(&mut got, 0.37, &x);
            for (a, b) in want.iter().zip(&got) {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + a.abs()),
                    "{level:?} axpy_f16: {a} vs {b}"
                );
            }
        }
    }
    // Where the CI asks for a level (`AUTODIDACT_EXPECT_SIMD=neon-i8mm` under qemu), it ran.
    if let Ok(name) = std::env::var("AUTODIDACT_EXPECT_SIMD") {
        let level = SimdLevel::from_name(&name).expect("AUTODIDACT_EXPECT_SIMD names a level");
        assert!(
            Kernels::for_level(level).is_some(),
            "{name} expected but this CPU lacks it"
        );
        assert_eq!(Kernels::get().level, level, "best level on this CPU");
    }
    eprintln!("{tested} SIMD levels checked against the scalar reference");
}

#[test]
fn matmul_rejects_mismatched_shapes() {
    let w = quantize_to_vec(GgmlType::Q8_0, &values(64, 1)).unwrap();
    let view = WeightView::new(GgmlType::Q8_0, &w, 1, 64).unwrap();
    let mut acts = QuantizedActs::from_f32(&values(32, 2), 1, 32);
    let mut out = [0f32];
    assert!(matmul_threads(Kernels::get(), &view, &mut acts, &mut out).is_err());
    assert!(WeightView::new(GgmlType::Q8_0, &w, 2, 64).is_err());
}

/// Packed Q4_0/Q5_0/Q8_0/Q4_K/Q6_K: lossless repacking (rows read back exactly), every available packed kernel
/// bit-identical to the scalar packed reference, and both within float rounding of the unpacked
/// product. 37 rows leave a partial group; 1, 5 and 13 tokens reach every token tile.
#[test]
fn packed_weights_match_unpacked_products() {
    use autodidact_kernels::packed::gemm_reference;
    use autodidact_kernels::{matmul_packed, PackedMatrix};
    let scalar = Kernels::for_level(SimdLevel::Scalar).unwrap();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q6K,
    ] {
        let k_quant = matches!(ty, GgmlType::Q4K | GgmlType::Q6K);
        let (rows, cols) = if k_quant { (37, 512) } else { (37, 96) };
        let wq = quantize_to_vec(ty, &values(rows * cols, 7)).unwrap();
        let view = WeightView::new(ty, &wq, rows, cols).unwrap();
        let packed = PackedMatrix::pack(&view).unwrap();
        let dense = dequantize_to_vec(ty, &wq, rows * cols).unwrap();
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            packed.dequantize_row(r, &mut row).unwrap();
            assert_eq!(row, dense[r * cols..(r + 1) * cols], "{ty:?} row {r}");
        }
        assert!(packed.dequantize_row(rows, &mut row).is_err());
        // Group-wise decoding of a range that starts and ends inside groups.
        let mut block = vec![0f32; 30 * cols];
        packed.dequantize_rows(3, 33, &mut block).unwrap();
        assert_eq!(block, dense[3 * cols..33 * cols], "{ty:?} rows 3..33");
        for n in [1usize, 5, 13] {
            let x = values(n * cols, 11 + n as u64);
            let mut want = vec![0f32; n * rows];
            matmul_threads(
                &scalar,
                &view,
                &mut QuantizedActs::from_f32(&x, n, cols),
                &mut want,
            )
            .unwrap();
            let mut reference = vec![0f32; n * rows];
            matmul_packed(
                gemm_reference,
                &packed,
                &mut QuantizedActs::from_f32(&x, n, cols),
                &mut reference,
            )
            .unwrap();
            for (a, b) in reference.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{ty:?} n={n}: {a} vs {b}"
                );
            }
            for level in SimdLevel::ALL {
                let Some(gemm) = Kernels::for_level(level).and_then(|k| k.packed) else {
                    continue;
                };
                let mut got = vec![f32::NAN; n * rows];
                matmul_packed(
                    gemm,
                    &packed,
                    &mut QuantizedActs::from_f32(&x, n, cols),
                    &mut got,
                )
                .unwrap();
                assert_eq!(got, reference, "{ty:?} {level:?} n={n}");
            }
        }
    }
}

/// Several packed weights of different kinds against one set of activations in one call give
/// exactly what each gives alone, and a mismatched output is an error.
#[test]
fn one_call_for_several_packed_weights_equals_one_call_each() {
    use autodidact_kernels::packed::gemm_reference;
    use autodidact_kernels::{matmul_packed, matmul_packed_many, PackedMatrix};
    let cols = 512;
    let mats: Vec<PackedMatrix> = [
        (GgmlType::Q5_0, 70),
        (GgmlType::Q8_0, 16),
        (GgmlType::Q4_0, 33),
        (GgmlType::Q4K, 48),
        (GgmlType::Q5_0, 5),
    ]
    .iter()
    .enumerate()
    .map(|(i, &(ty, rows))| {
        let wq = quantize_to_vec(ty, &values(rows * cols, 20 + i as u64)).unwrap();
        PackedMatrix::pack(&WeightView::new(ty, &wq, rows, cols).unwrap()).unwrap()
    })
    .collect();
    let gemms = [Kernels::get().packed, Some(gemm_reference as _)];
    for gemm in gemms.into_iter().flatten() {
        for n in [1usize, 9] {
            let x = values(n * cols, 3 + n as u64);
            let mut outs: Vec<Vec<f32>> = mats.iter().map(|m| vec![f32::NAN; n * m.rows]).collect();
            let mut acts = QuantizedActs::from_f32(&x, n, cols);
            let mut jobs: Vec<(&PackedMatrix, &mut [f32])> = mats
                .iter()
                .zip(outs.iter_mut())
                .map(|(m, o)| (m, &mut o[..]))
                .collect();
            matmul_packed_many(gemm, &mut jobs, &mut acts).unwrap();
            for (m, got) in mats.iter().zip(&outs) {
                let mut want = vec![0f32; n * m.rows];
                matmul_packed(
                    gemm,
                    m,
                    &mut QuantizedActs::from_f32(&x, n, cols),
                    &mut want,
                )
                .unwrap();
                assert_eq!(got, &want, "{:?} n={n}", m.kind);
            }
            let mut short = [0f32; 3];
            let err = matmul_packed_many(gemm, &mut [(&mats[0], &mut short[..])], &mut acts);
            assert!(err.is_err());
        }
    }
}
