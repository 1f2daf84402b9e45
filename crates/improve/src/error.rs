//! Errors of the improvement loop, with the paths and fields they concern.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImproveError {
    #[error("{path}: field `{field}`: {reason}")]
    BadSkill {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registry {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("unknown skill {0:?} (see `skills list`)")]
    UnknownSkill(String),
    #[error("unknown run {0:?}")]
    UnknownRun(String),
    #[error("no promoted version {0} to return to")]
    UnknownVersion(i64),
    #[error("nothing to roll back to: {0}")]
    NoRollback(String),
    #[error(
        "held-out set {path} was changed on disk (hash {found}, recorded {expected}); \
         it is fixed once written — restore it or start a new version"
    )]
    EvalSetChanged {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("training example for task {key:?} of skill {skill} is in a held-out set; refusing to train on it")]
    Leak { skill: String, key: String },
    #[error("skill {skill}: level {level} has no training task left outside the held-out set")]
    Exhausted { skill: String, level: usize },
    #[error("skill {skill}: {reason}")]
    Skill { skill: String, reason: String },
    #[error("model: {0}")]
    Model(#[from] autodidact_model::ModelError),
    #[error("generation: {0}")]
    Engine(#[from] autodidact_engine::EngineError),
    #[error("store: {0}")]
    Store(#[from] autodidact_store::StoreError),
    #[error("training: {0}")]
    Train(#[from] autodidact_train::TrainError),
    #[error("interrupted; finished rollouts and rounds are saved — continue with --resume {run}")]
    Interrupted { run: String },
    #[error("run {run}: {reason}")]
    Run { run: String, reason: String },
    #[error("no TrueType font for plots (tried {}); set AUTODIDACT_FONT to one", tried.join(", "))]
    NoFont { tried: Vec<String> },
    #[error("plot {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}

impl ImproveError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImproveError::Io {
            path: path.into(),
            source,
        }
    }
}
