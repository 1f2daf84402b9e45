//! A loaded model: the mapped GGUF file, its configuration, tokenizer and bound weights.
use crate::config::Config;
use crate::gguf::GgufFile;
use crate::kv_cache::SeqCache;
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;
use crate::ModelError;
use std::path::Path;

pub struct Model {
    pub gguf: GgufFile,
    pub config: Config,
    pub tokenizer: Tokenizer,
    pub weights: Weights,
}

impl Model {
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let gguf = GgufFile::open(path)?;
        Self::from_gguf(gguf)
    }

    /// The vocabulary moves from `gguf`'s metadata into the tokenizer (see
    /// [`Tokenizer::taken_metadata`] to write it back).
    pub fn from_gguf(mut gguf: GgufFile) -> Result<Self, ModelError> {
        let config = Config::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::take_from_gguf(&mut gguf)?;
        if tokenizer.vocab_size() != config.n_vocab {
            return Err(ModelError::Invalid(format!(
                "tokenizer has {} tokens, the model {}",
                tokenizer.vocab_size(),
                config.n_vocab
            )));
        }
        let weights = Weights::load(&gguf, &config)?;
        Ok(Model {
            gguf,
            config,
            tokenizer,
            weights,
        })
    }

    /// A fresh cache for one sequence of up to `n_ctx` positions, fed at most `max_batch` tokens a call.
    pub fn new_cache(&self, n_ctx: usize, max_batch: usize) -> SeqCache {
        SeqCache::new(&self.config, n_ctx.max(1), max_batch.max(1))
    }
}
