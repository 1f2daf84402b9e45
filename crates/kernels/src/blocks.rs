//! Block layouts exactly as ggml stores them on disk (facts from the GGUF format).
use half::f16;

pub const QK_K: usize = 256;

/// 32 weights: `w = d * (q - 8)`, q in 4 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    pub d: f16,
    /// Low nibbles hold elements 0..16, high nibbles 16..32.
    pub qs: [u8; 16],
}

/// 32 weights: `w = d * (q - 16)`, q in 5 bits (the fifth bit in `qh`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 32 weights: `w = d * q`, q a signed byte.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

/// 256 weights in 8 sub-blocks of 32 with 6-bit scales and mins: `w = d*sc*q - dmin*m`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// As Q4_K with a fifth bit per weight in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// 256 weights in 16 sub-blocks of 16 with signed 8-bit scales: `w = d*sc*(q - 32)`, q in 6 bits.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: f16,
}

/// Activation format for K-quant dot products: 256 signed bytes, an f32 scale, sums per 16.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

/// Types whose every bit pattern is valid and that hold no padding, so bytes may be viewed as them.
///
/// # Safety
/// Implementors must be `repr(C)` plain data without padding, valid for any bit pattern.
pub unsafe trait Pod: Copy {}
unsafe impl Pod for BlockQ4_0 {}
unsafe impl Pod for BlockQ5_0 {}
unsafe impl Pod for BlockQ8_0 {}
unsafe impl Pod for BlockQ4K {}
unsafe impl Pod for BlockQ5K {}
unsafe impl Pod for BlockQ6K {}
unsafe impl Pod for BlockQ8K {}
unsafe impl Pod for f32 {}
unsafe impl Pod for u32 {}
unsafe impl Pod for f16 {}
unsafe impl Pod for half::bf16 {}

/// Views raw bytes as blocks. Panics (a programming error, never user input: the GGUF reader checks
/// sizes and alignment first) when the length or alignment does not fit.
pub fn cast<T: Pod>(bytes: &[u8]) -> &[T] {
    let size = std::mem::size_of::<T>();
    assert_eq!(
        bytes.len() % size,
        0,
        "byte length not a whole number of blocks"
    );
    assert_eq!(
        bytes.as_ptr() as usize % std::mem::align_of::<T>(),
        0,
        "misaligned block data"
    );
    // SAFETY: T is Pod, the length is a multiple of size_of::<T>() and the pointer is aligned.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len() / size) }
}

/// The bytes of a block slice (for writing files and building test data).
pub fn as_bytes<T: Pod>(blocks: &[T]) -> &[u8] {
    // SAFETY: T is Pod, so every byte is initialised.
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr() as *const u8, std::mem::size_of_val(blocks))
    }
}

/// Mutable byte view of a block slice.
pub fn as_bytes_mut<T: Pod>(blocks: &mut [T]) -> &mut [u8] {
    // SAFETY: T is Pod, so any bytes written are a valid T.
    unsafe {
        std::slice::from_raw_parts_mut(
            blocks.as_mut_ptr() as *mut u8,
            std::mem::size_of_val(blocks),
        )
    }
}
