use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] autodidact_model::ModelError),
    #[error("prompt of {prompt} tokens leaves no room in a context of {n_ctx}")]
    PromptTooLong { prompt: usize, n_ctx: usize },
    #[error("empty prompt")]
    EmptyPrompt,
    #[error("invalid sampling parameter: {0}")]
    BadParam(String),
    #[error("no adapter named {0:?} (see `autodidact adapters list`)")]
    UnknownAdapter(String),
    #[error("the engine's queue is full")]
    Busy,
    #[error("the engine has stopped")]
    Stopped,
    #[error("could not start the engine thread: {0}")]
    Spawn(String),
}
