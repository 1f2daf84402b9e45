//! Embedders: the BERT sentence encoder, and a chat model's mean-pooled last hidden states (for
//! comparing against a dedicated encoder in the memory benchmark).
use crate::error::{MemoryError, Result};
use crate::Embedder;
use autodidact_model::bert::Bert;
use rayon::prelude::*;

/// A loaded sentence encoder under the name its vectors are stored with.
pub struct SentenceEncoder {
    pub name: String,
    pub bert: Bert,
}

impl SentenceEncoder {
    pub fn load(name: &str, dir: &std::path::Path) -> Result<Self> {
        let bert = Bert::load(dir).map_err(|e| MemoryError::Embed {
            message: e.to_string(),
        })?;
        Ok(SentenceEncoder {
            name: name.to_string(),
            bert,
        })
    }
}

impl Embedder for SentenceEncoder {
    fn name(&self) -> &str {
        &self.name
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        // Short texts leave the matrix products little to split: one text per worker instead.
        Ok(texts.par_iter().map(|t| self.bert.embed(t)).collect())
    }
}
