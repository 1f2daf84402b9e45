use thiserror::Error;

/// Errors from kernel entry points: all of them are shape or type mismatches a caller can report.
#[derive(Debug, Error)]
pub enum KernelError {
    #[error("unsupported tensor type {ty:?} for {op}")]
    Unsupported {
        ty: crate::GgmlType,
        op: &'static str,
    },
    #[error("unknown ggml type id {0}")]
    UnknownType(u32),
    #[error("row length {len} is not a multiple of the block size {block} of {ty:?}")]
    BadRowLength {
        ty: crate::GgmlType,
        len: usize,
        block: usize,
    },
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
}
