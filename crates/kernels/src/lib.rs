//! Tensor element types, (de)quantization, SIMD dot products and matrix kernels for CPU inference.
//!
//! Every SIMD path has a scalar reference in [`reference`] that tests compare it against.
// Block formats are specified by index arithmetic; the loops mirror that layout on purpose.
#![allow(clippy::needless_range_loop)]

/// Defines `pub fn $name` running `$plain` compiled with the target features `$features` when
/// [`simd::cpu_features`] reports `$check`, and the portable `$plain` elsewhere: the same loops,
/// vectorized 16 lanes wide under the wider target.
macro_rules! dispatch_wider {
    ($(#[$attr:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        = $plain:ident where $check:ident, $features:literal) => {
        $(#[$attr])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if crate::simd::cpu_features().$check {
                #[target_feature(enable = $features)]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $plain($($arg),*)
                }
                // SAFETY: the CPU has the features `wide` is compiled for (checked above).
                return unsafe { wide($($arg),*) };
            }
            $plain($($arg),*)
        }
    };
}

pub mod blocks;
mod dtype;
mod error;
pub mod gemm;
mod matmul;
pub mod packed;
mod packed_k;
pub mod quant;
pub mod reference;
mod simd;
pub mod testing;
pub mod vec;

pub use blocks::{BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0, QK_K};
pub use dtype::GgmlType;
pub use error::KernelError;
pub use gemm::{linear, sgemm, sgemm_serial, Accumulate, MatMut, MatRef};
pub use matmul::{matmul, matmul_threads, QuantizedActs, WeightView};
pub use packed::{matmul_packed, matmul_packed_many, PackKind, PackedMatrix};
pub use simd::{cpu_features, CpuFeatures, Kernels, SimdLevel};
