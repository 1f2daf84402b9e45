use thiserror::Error;

/// Errors from generation. Each says what to change; none names a CLI flag.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] autodidact_model::ModelError),
    #[error(transparent)]
    Store(#[from] autodidact_store::StoreError),
    #[error("prompt of {prompt} tokens leaves no room in a context of {n_ctx}")]
    PromptTooLong { prompt: usize, n_ctx: usize },
    #[error("empty prompt")]
    EmptyPrompt,
    #[error("invalid sampling parameter: {0}")]
    BadParam(String),
    #[error("the engine's queue is full")]
    Busy,
    #[error("the engine has stopped")]
    Stopped,
    #[error("could not start the engine thread: {0}")]
    Spawn(String),
}
