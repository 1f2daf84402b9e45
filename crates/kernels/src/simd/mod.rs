//! Runtime CPU-feature dispatch: one table of dot-product functions per SIMD level.
use crate::blocks::{BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0};
use crate::reference;
use half::{bf16, f16};
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod packed_x86;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Instruction-set levels with their own kernels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    Scalar,
    Avx2,
    Avx512,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512-vnni",
        }
    }
}

/// What this CPU supports, and the best level among them.
#[derive(Debug, Clone, Copy)]
pub struct CpuFeatures {
    pub avx2: bool,
    /// The kernel level: AVX-512 F/BW/VL with VNNI.
    pub avx512: bool,
    /// AVX-512F on top of `avx2`: enough for the element-wise loops of [`crate::vec`].
    pub avx512f: bool,
}

impl CpuFeatures {
    pub fn best(&self) -> SimdLevel {
        if self.avx512 {
            SimdLevel::Avx512
        } else if self.avx2 {
            SimdLevel::Avx2
        } else {
            SimdLevel::Scalar
        }
    }

    pub fn supports(&self, level: SimdLevel) -> bool {
        match level {
            SimdLevel::Scalar => true,
            SimdLevel::Avx2 => self.avx2,
            SimdLevel::Avx512 => self.avx512,
        }
    }
}

/// What this CPU supports, detected once.
pub fn cpu_features() -> CpuFeatures {
    static FEATURES: std::sync::OnceLock<CpuFeatures> = std::sync::OnceLock::new();
    *FEATURES.get_or_init(detect)
}

fn detect() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        let avx512f = avx2 && is_x86_feature_detected!("avx512f");
        let avx512 = avx512f
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        CpuFeatures {
            avx2,
            avx512,
            avx512f,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        CpuFeatures {
            avx2: false,
            avx512: false,
            avx512f: false,
        }
    }
}

/// Many rows × many tokens: `out[t * stride + r] = w_r · a_t`. Unsafe: `out` must cover every index.
pub type Gemm<B, A> = unsafe fn(&[B], usize, &[A], usize, *mut f32, usize);

/// Dot products of one weight row with one activation row, and row-block products, for one SIMD level.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub level: SimdLevel,
    pub q4_0: fn(&[BlockQ4_0], &[BlockQ8_0]) -> f32,
    pub q5_0: fn(&[BlockQ5_0], &[BlockQ8_0]) -> f32,
    pub q8_0: fn(&[BlockQ8_0], &[BlockQ8_0]) -> f32,
    pub q4k: fn(&[BlockQ4K], &[BlockQ8K]) -> f32,
    pub q5k: fn(&[BlockQ5K], &[BlockQ8K]) -> f32,
    pub q6k: fn(&[BlockQ6K], &[BlockQ8K]) -> f32,
    pub f32: fn(&[f32], &[f32]) -> f32,
    pub f16: fn(&[f16], &[f32]) -> f32,
    pub bf16: fn(&[bf16], &[f32]) -> f32,
    pub axpy_f16: fn(&mut [f32], f32, &[f16]),
    pub gemm_q4_0: Gemm<BlockQ4_0, BlockQ8_0>,
    pub gemm_q5_0: Gemm<BlockQ5_0, BlockQ8_0>,
    pub gemm_q8_0: Gemm<BlockQ8_0, BlockQ8_0>,
    pub gemm_q4k: Gemm<BlockQ4K, BlockQ8K>,
    pub gemm_q5k: Gemm<BlockQ5K, BlockQ8K>,
    pub gemm_q6k: Gemm<BlockQ6K, BlockQ8K>,
    /// The product over [`crate::packed`] weights, on levels where packing pays.
    pub packed: Option<crate::packed::PackedGemm>,
}

const SCALAR: Kernels = Kernels {
    level: SimdLevel::Scalar,
    q4_0: reference::dot_q4_0_q8_0,
    q5_0: reference::dot_q5_0_q8_0,
    q8_0: reference::dot_q8_0_q8_0,
    q4k: reference::dot_q4k_q8k,
    q5k: reference::dot_q5k_q8k,
    q6k: reference::dot_q6k_q8k,
    f32: reference::dot_f32,
    f16: reference::dot_f16_f32,
    bf16: reference::dot_bf16_f32,
    axpy_f16: reference::axpy_f16,
    gemm_q4_0: reference::gemm_q4_0,
    gemm_q5_0: reference::gemm_q5_0,
    gemm_q8_0: reference::gemm_q8_0,
    gemm_q4k: reference::gemm_q4k,
    gemm_q5k: reference::gemm_q5k,
    gemm_q6k: reference::gemm_q6k,
    packed: None,
};

/// Safe wrappers over one x86 module's `unsafe` target-feature functions. They are only reachable
/// through a `Kernels` table that `Kernels::for_level` hands out after checking the CPU.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_table {
    ($m:ident, $level:expr, $packed:expr) => {{
        mod wrap {
            use super::x86::$m as k;
            use crate::blocks::*;
            use half::{bf16, f16};
            // SAFETY (all): only installed in a table after feature detection succeeded.
            pub fn q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
                unsafe { k::dot_q4_0_q8_0(w, a) }
            }
            pub fn q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
                unsafe { k::dot_q5_0_q8_0(w, a) }
            }
            pub fn q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
                unsafe { k::dot_q8_0_q8_0(w, a) }
            }
            pub fn q4k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
                unsafe { k::dot_q4k_q8k(w, a) }
            }
            pub fn q5k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
                unsafe { k::dot_q5k_q8k(w, a) }
            }
            pub fn q6k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
                unsafe { k::dot_q6k_q8k(w, a) }
            }
            pub fn f32(w: &[f32], a: &[f32]) -> f32 {
                unsafe { k::dot_f32(w, a) }
            }
            pub fn f16(w: &[f16], a: &[f32]) -> f32 {
                unsafe { k::dot_f16_f32(w, a) }
            }
            pub fn bf16(w: &[bf16], a: &[f32]) -> f32 {
                unsafe { k::dot_bf16_f32(w, a) }
            }
            pub fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
                unsafe { k::axpy_f16(y, a, x) }
            }
        }
        Kernels {
            level: $level,
            q4_0: wrap::q4_0,
            q5_0: wrap::q5_0,
            q8_0: wrap::q8_0,
            q4k: wrap::q4k,
            q5k: wrap::q5k,
            q6k: wrap::q6k,
            f32: wrap::f32,
            f16: wrap::f16,
            bf16: wrap::bf16,
            axpy_f16: wrap::axpy_f16,
            gemm_q4_0: x86::$m::gemm_q4_0,
            gemm_q5_0: x86::$m::gemm_q5_0,
            gemm_q8_0: x86::$m::gemm_q8_0,
            gemm_q4k: x86::$m::gemm_q4k,
            gemm_q5k: x86::$m::gemm_q5k,
            gemm_q6k: x86::$m::gemm_q6k,
            packed: $packed,
        }
    }};
}

impl Kernels {
    /// The table for `level`, or `None` when this CPU lacks it.
    pub fn for_level(level: SimdLevel) -> Option<Kernels> {
        if !cpu_features().supports(level) {
            return None;
        }
        match level {
            SimdLevel::Scalar => Some(SCALAR),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => Some(x86_table!(avx2, SimdLevel::Avx2, None)),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => Some(x86_table!(
                avx512,
                SimdLevel::Avx512,
                Some(packed_x86::gemm_packed)
            )),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The process-wide table: the best level, or the one named by `AUTODIDACT_SIMD`
    /// (`scalar`, `avx2`, `avx512`) when this CPU supports it.
    pub fn get() -> &'static Kernels {
        static K: OnceLock<Kernels> = OnceLock::new();
        K.get_or_init(|| {
            let features = cpu_features();
            let wanted = match std::env::var("AUTODIDACT_SIMD").ok().as_deref() {
                Some("scalar") => Some(SimdLevel::Scalar),
                Some("avx2") => Some(SimdLevel::Avx2),
                Some("avx512") => Some(SimdLevel::Avx512),
                _ => None,
            };
            let level = wanted
                .filter(|l| features.supports(*l))
                .unwrap_or_else(|| features.best());
            Kernels::for_level(level).unwrap_or(SCALAR)
        })
    }
}
