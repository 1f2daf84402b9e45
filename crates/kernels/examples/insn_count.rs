//! A quantized matrix product repeated on one thread, for counting executed instructions per SIMD
//! level under emulation (wall time there says nothing about a real core):
//!
//! ```sh
//! AUTODIDACT_SIMD=neon qemu-aarch64 -cpu max -singlestep -d exec,nochain -D /dev/stdout \
//!   insn_count Q4_K 256 1024 1 4 | grep -c Trace
//! ```
//! Arguments: weight type (Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K), rows, columns, tokens, repetitions.
//! The difference between two repetition counts is the products' own instructions.
use autodidact_kernels::blocks::{cast, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K};
use autodidact_kernels::blocks::{BlockQ8K, BlockQ8_0, QK_K};
use autodidact_kernels::quant::{quantize_q8_0_row, quantize_q8k_row, quantize_to_vec};
use autodidact_kernels::testing::weight_like_values;
use autodidact_kernels::{GgmlType, Kernels};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: insn_count TYPE ROWS COLS TOKENS REPS";
    let [ty, rows, cols, ntok, reps] = &args[..] else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let ty = GgmlType::ALL
        .into_iter()
        .find(|t| t.name() == ty.as_str())
        .unwrap_or_else(|| panic!("unknown type {ty}; {usage}"));
    let num = |s: &String| -> usize { s.parse().unwrap_or_else(|_| panic!("{s}: {usage}")) };
    let (rows, cols, ntok, reps) = (num(rows), num(cols), num(ntok), num(reps));
    let k = Kernels::get();
    let w = quantize_to_vec(ty, &weight_like_values(rows * cols, 1)).expect("whole blocks");
    // Block structs need their alignment: copy into u32-aligned memory.
    let mut aligned = vec![0u32; w.len().div_ceil(4)];
    autodidact_kernels::blocks::as_bytes_mut(&mut aligned)[..w.len()].copy_from_slice(&w);
    let w = &autodidact_kernels::blocks::as_bytes(&aligned)[..w.len()];
    let x = weight_like_values(ntok * cols, 2);
    let mut out = vec![0f32; ntok * rows];
    let nb = cols / ty.block_len();
    let q8 = || {
        let zero = BlockQ8_0 {
            d: half::f16::ZERO,
            qs: [0; 32],
        };
        let mut a = vec![zero; ntok * cols / 32];
        for (a, x) in a.chunks_mut(cols / 32).zip(x.chunks(cols)) {
            quantize_q8_0_row(x, a);
        }
        a
    };
    let q8k = || {
        let zero = BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; 16],
        };
        let mut a = vec![zero; ntok * cols / QK_K];
        for (a, x) in a.chunks_mut(cols / QK_K).zip(x.chunks(cols)) {
            quantize_q8k_row(x, a);
        }
        a
    };
    let (a0, ak) = (q8(), q8k());
    let o = out.as_mut_ptr();
    for _ in 0..reps {
        // SAFETY: `out` holds ntok × rows values and the activations ntok × nb blocks.
        unsafe {
            match ty {
                GgmlType::Q4_0 => (k.gemm_q4_0)(cast::<BlockQ4_0>(w), nb, &a0, ntok, o, rows),
                GgmlType::Q5_0 => (k.gemm_q5_0)(cast::<BlockQ5_0>(w), nb, &a0, ntok, o, rows),
                GgmlType::Q8_0 => (k.gemm_q8_0)(cast::<BlockQ8_0>(w), nb, &a0, ntok, o, rows),
                GgmlType::Q4K => (k.gemm_q4k)(cast::<BlockQ4K>(w), nb, &ak, ntok, o, rows),
                GgmlType::Q5K => (k.gemm_q5k)(cast::<BlockQ5K>(w), nb, &ak, ntok, o, rows),
                GgmlType::Q6K => (k.gemm_q6k)(cast::<BlockQ6K>(w), nb, &ak, ntok, o, rows),
                _ => panic!("{} has no integer gemm; {usage}", ty.name()),
            }
        }
    }
    println!(
        "{} {} checksum {}",
        k.level.name(),
        ty.name(),
        out.iter().sum::<f32>()
    );
}
