//! The batched forward pass shared by `gemma3` and `llama`: several sequences of different lengths
//! run as one activation matrix through every matmul; attention reads each token's own cache.
use crate::attention::{attention, AttnArgs, TokenAt};
use crate::config::{Activation, Config, RopeStyle};
use crate::kv_cache::SeqCache;
use crate::lora::{LoraAdapter, Target, TokenRows};
use crate::model::Model;
use crate::weights::Matrix;
use crate::ModelError;
use autodidact_kernels::vec::{
    add_inplace, gelu_gated_inplace, rms_norm, rms_norm_inplace, silu_gated_inplace,
};
use autodidact_kernels::QuantizedActs;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use std::ops::Range;

/// Which positions of an input need logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    None,
    Last,
    All,
}

/// One sequence's slice of a batch: new tokens appended at the end of its cache.
pub struct SeqInput<'a> {
    pub cache: &'a mut SeqCache,
    pub tokens: &'a [u32],
    pub logits: Logits,
    /// A LoRA adapter applied to this sequence alone (others in the batch may use another).
    pub adapter: Option<&'a LoraAdapter>,
}

/// The rows of the batch each adapter applies to.
struct AdapterSpans<'a> {
    spans: Vec<(Range<usize>, &'a LoraAdapter)>,
    u: Vec<f32>,
}

impl AdapterSpans<'_> {
    /// `out (total, out_dim) += lora(x (total, in_dim))` for target `t` of layer `il`, per span.
    fn apply(&mut self, il: usize, t: Target, x: &[f32], out: &mut [f32]) {
        for (rows, ad) in &self.spans {
            let Some(p) = ad.layers[il].get(t) else {
                continue;
            };
            let n = rows.len();
            p.apply(
                ad.scale(p),
                &x[rows.start * p.n_in..rows.end * p.n_in],
                n,
                &mut self.u,
                &mut out[rows.start * p.n_out..rows.end * p.n_out],
            );
        }
    }
}

#[derive(Default)]
pub struct ForwardOutput {
    pub n_vocab: usize,
    /// (rows, n_vocab), rows in input order.
    pub logits: Vec<f32>,
    /// The rows of `logits` (and `hidden`) belonging to each input.
    pub rows: Vec<Range<usize>>,
    /// Final-normed hidden states `(rows, n_embd)` of the same rows, when asked for (embeddings).
    pub hidden: Option<Vec<f32>>,
}

impl ForwardOutput {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.logits[r * self.n_vocab..(r + 1) * self.n_vocab]
    }
}

/// cos/sin of every (token, pair) for one RoPE base: (tokens, head_dim / 2) each.
pub struct RopeTable {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

fn rope_table(
    c: &Config,
    positions: &[usize],
    base: f32,
    freq_scale: f32,
    factors: Option<&[f32]>,
) -> RopeTable {
    let half = c.head_dim / 2;
    let theta_scale = base.powf(-2.0 / c.head_dim as f32);
    let mut cos = vec![0f32; positions.len() * half];
    let mut sin = vec![0f32; positions.len() * half];
    for (t, &p) in positions.iter().enumerate() {
        // As ggml: theta starts at the position and is multiplied by theta_scale per pair.
        let mut theta = p as f32;
        for i in 0..half {
            let ff = factors.map_or(1.0, |f| f[i]);
            let angle = freq_scale * (theta / ff);
            cos[t * half + i] = angle.cos();
            sin[t * half + i] = angle.sin();
            theta *= theta_scale;
        }
    }
    RopeTable { cos, sin }
}

/// Rotates every head of `x` (tokens, n_heads * head_dim) in place.
pub fn apply_rope(style: RopeStyle, x: &mut [f32], n_heads: usize, hd: usize, table: &RopeTable) {
    let half = hd / 2;
    x.par_chunks_mut(n_heads * hd)
        .enumerate()
        .for_each(|(t, row)| {
            let cos = &table.cos[t * half..(t + 1) * half];
            let sin = &table.sin[t * half..(t + 1) * half];
            for head in row.chunks_exact_mut(hd) {
                for i in 0..half {
                    let (a, b) = match style {
                        RopeStyle::Neox => (i, i + half),
                        RopeStyle::Norm => (2 * i, 2 * i + 1),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * cos[i] - x1 * sin[i];
                    head[b] = x0 * sin[i] + x1 * cos[i];
                }
            }
        });
}

fn norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(o, xi)| rms_norm(xi, w, eps, o));
}

fn norm_rows_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    x.par_chunks_mut(w.len())
        .for_each(|r| rms_norm_inplace(r, w, eps));
}

impl Model {
    /// The RoPE angles of `positions` for full-attention (`swa = false`) or sliding layers, as
    /// the forward pass uses them (the training pass shares them).
    pub fn rope_table(&self, positions: &[usize], swa: bool) -> RopeTable {
        let c = &self.config;
        let factors = self.weights.rope_freqs.as_deref();
        if swa {
            rope_table(c, positions, c.rope_base_swa, 1.0, factors)
        } else {
            rope_table(c, positions, c.rope_base, c.rope_freq_scale, factors)
        }
    }

    /// Runs `inputs` through the model, appending their tokens to their caches.
    pub fn forward(
        &self,
        inputs: &mut [SeqInput],
        want_hidden: bool,
    ) -> Result<ForwardOutput, ModelError> {
        let mut out = ForwardOutput::default();
        self.forward_into(inputs, want_hidden, &mut out)?;
        Ok(out)
    }

    /// As [`Model::forward`], reusing `out`'s buffers: a decode loop that keeps one output saves
    /// allocating and zeroing `(batch, vocabulary)` logits on every step.
    pub fn forward_into(
        &self,
        inputs: &mut [SeqInput],
        want_hidden: bool,
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        // Run the whole pass on a pool worker: its many short parallel regions then hand work to
        // the other workers without waking and blocking the calling thread each time.
        rayon::scope(|_| self.forward_on_pool(inputs, want_hidden, out))
    }

    fn forward_on_pool(
        &self,
        inputs: &mut [SeqInput],
        want_hidden: bool,
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let w = &self.weights;
        let file = self.gguf.bytes();
        let (d, hd) = (c.n_embd, c.head_dim);
        let (qd, kvd) = (c.q_dim(), c.kv_dim());
        let mut at = Vec::new();
        let mut tokens = Vec::new();
        let mut lora = AdapterSpans {
            spans: Vec::new(),
            u: Vec::new(),
        };
        for (i, inp) in inputs.iter().enumerate() {
            let start = inp.cache.len();
            let n = inp.tokens.len();
            if let Some(ad) = inp.adapter {
                ad.check(c)?;
                lora.spans.push((tokens.len()..tokens.len() + n, ad));
            }
            if start + n > inp.cache.capacity() {
                return Err(ModelError::ContextFull {
                    needed: start + n,
                    capacity: inp.cache.capacity(),
                });
            }
            if n > inp.cache.max_batch() {
                return Err(ModelError::Invalid(format!(
                    "{n} tokens in one call exceed the cache's batch size {}",
                    inp.cache.max_batch()
                )));
            }
            for (j, &t) in inp.tokens.iter().enumerate() {
                if t as usize >= c.n_vocab {
                    return Err(ModelError::Invalid(format!(
                        "token id {t} outside the vocabulary of {}",
                        c.n_vocab
                    )));
                }
                at.push(TokenAt {
                    input: i,
                    pos: start + j,
                });
                tokens.push(t);
            }
        }
        let total = tokens.len();
        let positions: Vec<usize> = at.iter().map(|a| a.pos).collect();

        // Each row's trained embedding rows, from its sequence's adapter.
        let mut rows_of: Vec<Option<&TokenRows>> = vec![None; total];
        for (span, ad) in &lora.spans {
            rows_of[span.clone()].fill(ad.tokens.as_ref());
        }
        // (total, d) embeddings, scaled.
        let mut x = vec![0f32; total * d];
        x.par_chunks_mut(d)
            .zip(tokens.par_iter().zip(rows_of.par_iter()))
            .try_for_each(|(row, (&t, rows))| {
                w.token_embd.dequantize_row(file, t as usize, row)?;
                if let Some(r) = rows {
                    r.add_to_embedding(t, row);
                }
                if c.embed_scale != 1.0 {
                    row.iter_mut().for_each(|v| *v *= c.embed_scale);
                }
                Ok::<(), ModelError>(())
            })?;

        let rope_full = self.rope_table(&positions, false);
        let rope_swa = self.rope_table(&positions, true);

        let mut h = vec![0f32; total * d];
        let mut q = vec![0f32; total * qd];
        let mut k = vec![0f32; total * kvd];
        let mut v = vec![0f32; total * kvd];
        let mut attn = vec![0f32; total * qd];
        let mut o = vec![0f32; total * d];
        let mut gate = vec![0f32; total * c.n_ff];
        let mut up = vec![0f32; total * c.n_ff];
        let mut acts = QuantizedActs::default();
        let gated: fn(&mut [f32], &[f32]) = match c.activation {
            Activation::GeluTanh => gelu_gated_inplace,
            Activation::Silu => silu_gated_inplace,
        };

        for (il, lw) in w.layers.iter().enumerate() {
            let swa = c.swa_layers[il];
            // Attention block.
            norm_rows(&x, &lw.attn_norm, c.rms_eps, &mut h);
            acts.set(&h, total, d);
            Matrix::matmul_many(
                file,
                &mut [
                    (&lw.attn_q, &mut q), // (total, n_head * hd)
                    (&lw.attn_k, &mut k), // (total, n_kv * hd)
                    (&lw.attn_v, &mut v), // (total, n_kv * hd)
                ],
                &mut acts,
            )?;
            lora.apply(il, Target::Q, &h, &mut q);
            lora.apply(il, Target::K, &h, &mut k);
            lora.apply(il, Target::V, &h, &mut v);
            if let (Some(qn), Some(kn)) = (&lw.attn_q_norm, &lw.attn_k_norm) {
                norm_rows_inplace(&mut q, qn, c.rms_eps);
                norm_rows_inplace(&mut k, kn, c.rms_eps);
            }
            let table = if swa { &rope_swa } else { &rope_full };
            apply_rope(c.rope_style, &mut q, c.n_head, hd, table);
            apply_rope(c.rope_style, &mut k, c.n_head_kv, hd, table);
            q.par_iter_mut().for_each(|e| *e *= c.attn_scale);
            for (t, a) in at.iter().enumerate() {
                let lc = &mut inputs[a.input].cache.layers[il];
                let slot = a.pos % lc.cap;
                lc.k[slot * kvd..(slot + 1) * kvd]
                    .convert_from_f32_slice(&k[t * kvd..(t + 1) * kvd]);
                lc.v[slot * kvd..(slot + 1) * kvd]
                    .convert_from_f32_slice(&v[t * kvd..(t + 1) * kvd]);
            }
            {
                let caches: Vec<&SeqCache> = inputs.iter().map(|i| &*i.cache).collect();
                let window = if swa { c.sliding_window } else { None };
                let args = AttnArgs {
                    c,
                    il,
                    window,
                    q: &q,
                    caches: &caches,
                    at: &at,
                };
                attention(&args, &mut attn);
            }
            acts.set(&attn, total, qd);
            lw.attn_output.matmul(file, &mut acts, &mut o)?; // (total, d)
            lora.apply(il, Target::O, &attn, &mut o);
            if let Some(pn) = &lw.post_attention_norm {
                norm_rows_inplace(&mut o, pn, c.rms_eps);
            }
            add_inplace(&mut x, &o);

            // Feed-forward block.
            norm_rows(&x, &lw.ffn_norm, c.rms_eps, &mut h);
            acts.set(&h, total, d);
            Matrix::matmul_many(
                file,
                &mut [
                    (&lw.ffn_gate, &mut gate), // (total, n_ff)
                    (&lw.ffn_up, &mut up),     // (total, n_ff)
                ],
                &mut acts,
            )?;
            lora.apply(il, Target::Gate, &h, &mut gate);
            lora.apply(il, Target::Up, &h, &mut up);
            gate.par_chunks_mut(c.n_ff)
                .zip(up.par_chunks(c.n_ff))
                .for_each(|(g, u)| gated(g, u));
            acts.set(&gate, total, c.n_ff);
            lw.ffn_down.matmul(file, &mut acts, &mut o)?; // (total, d)
            lora.apply(il, Target::Down, &gate, &mut o);
            if let Some(pn) = &lw.post_ffw_norm {
                norm_rows_inplace(&mut o, pn, c.rms_eps);
            }
            add_inplace(&mut x, &o);
        }
        for inp in inputs.iter_mut() {
            inp.cache.advance(inp.tokens.len());
        }

        // Only the rows that need logits go through the final norm and the (large) output matmul.
        let mut selected = Vec::new();
        let rows = &mut out.rows;
        rows.clear();
        let mut t0 = 0;
        for inp in inputs.iter() {
            let n = inp.tokens.len();
            let first = selected.len();
            match inp.logits {
                Logits::None => {}
                Logits::Last if n > 0 => selected.push(t0 + n - 1),
                Logits::Last => {}
                Logits::All => selected.extend(t0..t0 + n),
            }
            rows.push(first..selected.len());
            t0 += n;
        }
        let ns = selected.len();
        let mut hs = vec![0f32; ns * d];
        for (r, &t) in selected.iter().enumerate() {
            rms_norm(
                &x[t * d..(t + 1) * d],
                &w.output_norm,
                c.rms_eps,
                &mut hs[r * d..(r + 1) * d],
            );
        }
        // Every element is written by the matmul: a reused buffer needs no zeroing.
        let logits = &mut out.logits;
        logits.resize(ns * c.n_vocab, 0.0);
        if ns > 0 {
            let out_w = w.output.as_ref().unwrap_or(&w.token_embd);
            acts.set(&hs, ns, d);
            out_w.matmul(file, &mut acts, logits)?; // (ns, n_vocab)
            if w.output.is_none() {
                // Tied output: an adapter's embedding rows change those tokens' logits too.
                for (inp, rows) in inputs.iter().zip(&out.rows) {
                    let Some(tr) = inp.adapter.and_then(|a| a.tokens.as_ref()) else {
                        continue;
                    };
                    for r in rows.clone() {
                        let v = c.n_vocab;
                        tr.add_logits(&hs[r * d..(r + 1) * d], &mut logits[r * v..(r + 1) * v]);
                    }
                }
            }
            if let Some(cap) = c.final_logit_softcap {
                logits
                    .par_iter_mut()
                    .for_each(|l| *l = cap * (*l / cap).tanh());
            }
        }
        out.n_vocab = c.n_vocab;
        out.hidden = want_hidden.then_some(hs);
        Ok(())
    }
}
