//! Tensor element types, (de)quantization, SIMD dot products and matrix kernels for CPU inference.
//!
//! Every SIMD path has a scalar reference in [`reference`] that tests compare it against.
// Block formats are specified by index arithmetic; the loops mirror that layout on purpose.
#![allow(clippy::needless_range_loop)]

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
pub use packed::{matmul_packed, PackKind, PackedMatrix};
pub use simd::{cpu_features, CpuFeatures, Kernels, SimdLevel};
