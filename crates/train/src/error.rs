use thiserror::Error;

/// Errors from training and adapter files: each names the file, line or setting at fault.
#[derive(Debug, Error)]
pub enum TrainError {
    #[error("{path}:{line}: {what}")]
    Data {
        path: String,
        line: usize,
        what: String,
    },
    #[error("{path}: no usable examples{why}")]
    NoData { path: String, why: String },
    #[error("invalid training setting: {0}")]
    Config(String),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Format { path: String, what: String },
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged { step: usize, loss: f32 },
    #[error(transparent)]
    Model(#[from] autodidact_model::ModelError),
    #[error(transparent)]
    Kernel(#[from] autodidact_kernels::KernelError),
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
