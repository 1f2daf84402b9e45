//! Runtime CPU-feature dispatch: one table of dot-product functions per SIMD level.
use crate::blocks::{BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0};
use crate::reference;
use half::{bf16, f16};
use std::sync::OnceLock;

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_mmla;
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
    /// aarch64 base NEON: widening byte multiplies for the integer dots.
    Neon,
    /// NEON with the dotprod extension's `sdot`.
    NeonDotprod,
    /// `sdot` plus the i8mm extension's `smmla` for products of two or more tokens.
    NeonI8mm,
}

impl SimdLevel {
    /// Every level, of every architecture, lowest first within each.
    pub const ALL: [SimdLevel; 6] = [
        SimdLevel::Scalar,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
        SimdLevel::Neon,
        SimdLevel::NeonDotprod,
        SimdLevel::NeonI8mm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512-vnni",
            SimdLevel::Neon => "neon",
            SimdLevel::NeonDotprod => "neon-dotprod",
            SimdLevel::NeonI8mm => "neon-i8mm",
        }
    }

    /// The level `AUTODIDACT_SIMD` names: a [`SimdLevel::name`], or `avx512`, `dotprod`, `i8mm`.
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        let short = match name {
            "avx512" => Some(SimdLevel::Avx512),
            "dotprod" => Some(SimdLevel::NeonDotprod),
            "i8mm" => Some(SimdLevel::NeonI8mm),
            _ => None,
        };
        short.or_else(|| SimdLevel::ALL.into_iter().find(|l| l.name() == name))
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
    /// aarch64 Advanced SIMD (always there on aarch64 Linux).
    pub neon: bool,
    /// `sdot`/`udot` (FEAT_DotProd), on top of `neon`.
    pub dotprod: bool,
    /// `smmla` (FEAT_I8MM), on top of `dotprod`.
    pub i8mm: bool,
}

impl CpuFeatures {
    pub fn best(&self) -> SimdLevel {
        SimdLevel::ALL
            .into_iter()
            .rev()
            .find(|l| self.supports(*l))
            .unwrap_or(SimdLevel::Scalar)
    }

    pub fn supports(&self, level: SimdLevel) -> bool {
        match level {
            SimdLevel::Scalar => true,
            SimdLevel::Avx2 => self.avx2,
            SimdLevel::Avx512 => self.avx512,
            SimdLevel::Neon => self.neon,
            SimdLevel::NeonDotprod => self.dotprod,
            SimdLevel::NeonI8mm => self.i8mm,
        }
    }
}

/// What this CPU supports, detected once.
pub fn cpu_features() -> CpuFeatures {
    static FEATURES: std::sync::OnceLock<CpuFeatures> = std::sync::OnceLock::new();
    *FEATURES.get_or_init(detect)
}

fn detect() -> CpuFeatures {
    let none = CpuFeatures {
        avx2: false,
        avx512: false,
        avx512f: false,
        neon: false,
        dotprod: false,
        i8mm: false,
    };
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
            ..none
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        let neon = has!("neon");
        let dotprod = neon && has!("dotprod");
        let i8mm = dotprod && has!("i8mm");
        CpuFeatures {
            neon,
            dotprod,
            i8mm,
            ..none
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        none
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

/// Safe wrappers over one NEON module's `unsafe` target-feature functions, as `x86_table!`.
#[cfg(target_arch = "aarch64")]
macro_rules! neon_table {
    ($m:ident, $level:expr) => {{
        mod wrap {
            use super::neon::$m as k;
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
            gemm_q4_0: neon::$m::gemm_q4_0,
            gemm_q5_0: neon::$m::gemm_q5_0,
            gemm_q8_0: neon::$m::gemm_q8_0,
            gemm_q4k: neon::$m::gemm_q4k,
            gemm_q5k: neon::$m::gemm_q5k,
            gemm_q6k: neon::$m::gemm_q6k,
            // The interleaved layout of `crate::packed` is built for 16-lane x86 registers.
            packed: None,
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
            #[cfg(target_arch = "aarch64")]
            SimdLevel::Neon => Some(neon_table!(neon, SimdLevel::Neon)),
            #[cfg(target_arch = "aarch64")]
            SimdLevel::NeonDotprod => Some(neon_table!(dotprod, SimdLevel::NeonDotprod)),
            #[cfg(target_arch = "aarch64")]
            SimdLevel::NeonI8mm => Some(Kernels {
                gemm_q4_0: neon_mmla::gemm_q4_0,
                gemm_q5_0: neon_mmla::gemm_q5_0,
                gemm_q8_0: neon_mmla::gemm_q8_0,
                ..neon_table!(dotprod, SimdLevel::NeonI8mm)
            }),
            // Levels of another architecture: `supports` said no above.
            _ => None,
        }
    }

    /// The process-wide table: the best level, or the one named by `AUTODIDACT_SIMD`
    /// (see [`SimdLevel::from_name`]) when this CPU supports it.
    pub fn get() -> &'static Kernels {
        static K: OnceLock<Kernels> = OnceLock::new();
        K.get_or_init(|| {
            let features = cpu_features();
            let wanted = std::env::var("AUTODIDACT_SIMD")
                .ok()
                .and_then(|n| SimdLevel::from_name(&n));
            let level = wanted
                .filter(|l| features.supports(*l))
                .unwrap_or_else(|| features.best());
            Kernels::for_level(level).unwrap_or(SCALAR)
        })
    }
}
