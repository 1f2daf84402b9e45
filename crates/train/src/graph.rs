//! The training forward and backward pass of a whole model over a pack of sequences, with the
//! base frozen and LoRA trainable. The forward saves what the backward needs (a [`Tape`]); the
//! backward walks the layers in reverse and accumulates LoRA gradients.
use crate::attention::{attention_backward, attention_forward, AttnGrads, AttnShape};
use crate::distill::{soft_cross_entropy_row, top_k_row, SoftTarget};
use crate::linear::{base_backward, Dropout, LoraBackward, LoraCtx};
use crate::ops::{
    cross_entropy_row, gated_backward, gated_forward, rms_norm_backward, rope_backward,
};
use crate::output_t::TransposedOutput;
use crate::TrainError;
use autodidact_kernels::vec::rms_norm;
use autodidact_kernels::QuantizedActs;
use autodidact_model::{apply_rope, LoraAdapter, Matrix, Model, RopeTable, Target, TokenRows};
use rayon::prelude::*;
use std::ops::Range;

/// One training sequence: `labels[t]` is the token position `t` should predict, if it is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub labels: Vec<Option<u32>>,
    /// Weight of each of its labelled tokens in a step's mean loss (1 for ordinary examples).
    pub weight: f32,
    /// A reference distribution for each labelled token, in order, trained toward instead of
    /// the label (replayed text distilled from the base; see [`crate::distill`]).
    pub soft: Option<Vec<SoftTarget>>,
}

impl Sequence {
    /// A sequence of weight 1.
    pub fn new(tokens: Vec<u32>, labels: Vec<Option<u32>>) -> Self {
        Sequence {
            tokens,
            labels,
            weight: 1.0,
            soft: None,
        }
    }

    pub fn n_labels(&self) -> usize {
        self.labels.iter().filter(|l| l.is_some()).count()
    }
}

/// Several sequences run as one activation matrix; each attends only to itself.
#[derive(Debug, Clone)]
pub struct Pack {
    pub tokens: Vec<u32>,
    /// Position of each row within its sequence.
    pub positions: Vec<usize>,
    pub seqs: Vec<Range<usize>>,
    /// Rows that take a loss, their labels and the sequence each belongs to.
    pub loss_rows: Vec<usize>,
    pub labels: Vec<u32>,
    pub loss_seq: Vec<usize>,
    /// Each loss row's soft target, where its sequence has them.
    pub soft: Vec<Option<SoftTarget>>,
}

impl Pack {
    pub fn new(seqs: &[&Sequence]) -> Self {
        let mut p = Pack {
            tokens: Vec::new(),
            positions: Vec::new(),
            seqs: Vec::new(),
            loss_rows: Vec::new(),
            labels: Vec::new(),
            loss_seq: Vec::new(),
            soft: Vec::new(),
        };
        for (si, s) in seqs.iter().enumerate() {
            let start = p.tokens.len();
            let mut soft = s.soft.iter().flatten();
            for (i, (&t, l)) in s.tokens.iter().zip(&s.labels).enumerate() {
                if let Some(l) = l {
                    p.loss_rows.push(start + i);
                    p.labels.push(*l);
                    p.loss_seq.push(si);
                    p.soft.push(soft.next().cloned());
                }
                p.tokens.push(t);
                p.positions.push(i);
            }
            p.seqs.push(start..p.tokens.len());
        }
        p
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// When the output layer's gradient is taken.
#[derive(Debug, Clone)]
pub enum OutputGrad {
    /// Only log-probabilities (reference model, evaluation): nothing is kept for a backward.
    None,
    /// During the forward, with a known coefficient per loss row (SFT: `1 / tokens in the step`):
    /// the logits never outlive their chunk.
    Now(Vec<f32>),
    /// In the backward, with coefficients known only after the forward (DPO).
    Later,
}

/// What one layer's backward needs, saved by the forward. Shapes are per pack of `n` rows.
struct LayerTape {
    x_in: Vec<f32>,  // (n, d)
    q_raw: Vec<f32>, // (n, n_head · hd), before QK-norm and RoPE
    k_raw: Vec<f32>, // (n, n_kv · hd)
    v: Vec<f32>,     // (n, n_kv · hd)
    attn: Vec<f32>,  // (n, n_head · hd)
    o_raw: Vec<f32>, // (n, d), before the post-attention norm
    x_mid: Vec<f32>, // (n, d)
    g: Vec<f32>,     // (n, n_ff)
    u: Vec<f32>,     // (n, n_ff)
    f_raw: Vec<f32>, // (n, d), before the post-FFN norm
    lora_u: [Vec<f32>; 7],
}

/// What the layers give the output pass: the residual stream after the last layer `(n, d)`,
/// each layer's tape (empty unless kept for backward), and the final-normed hidden state of
/// the loss rows `(loss rows, d)`.
struct Trunk {
    x: Vec<f32>,
    layers: Vec<LayerTape>,
    hs: Vec<f32>,
}

/// The saved forward of one pack.
pub struct Tape {
    pack: Pack,
    dropout: Option<Dropout>,
    layers: Vec<LayerTape>,
    x_final: Vec<f32>, // (n, d)
    /// `(loss rows, d)`: d(loss)/d(final-normed hidden) when taken during the forward, else the
    /// final-normed hidden itself for a later output pass.
    out: Vec<f32>,
    out_is_grad: bool,
    /// log p(label) of every loss row.
    pub logp: Vec<f32>,
    /// `(token rows, d)`: the loss's gradient with respect to the adapter's token rows through
    /// the output (tied embeddings), when taken during the forward.
    dtok_out: Vec<f32>,
}

impl Tape {
    /// Sum of log-probabilities of each sequence's labels.
    pub fn seq_logp(&self) -> Vec<f64> {
        let mut s = vec![0f64; self.pack.seqs.len()];
        for (&lp, &si) in self.logp.iter().zip(&self.pack.loss_seq) {
            s[si] += lp as f64;
        }
        s
    }

    pub fn pack(&self) -> &Pack {
        &self.pack
    }
}

/// What the output projection gives back: log p(label) per loss row and, when gradients were
/// asked for, those with respect to the final-normed hidden states `(rows, d)` and to the
/// adapter's token rows `(token rows, d)` (empty where they do not reach the output).
struct OutputPass {
    logp: Vec<f32>,
    dhs: Vec<f32>,
    dtok: Vec<f32>,
}

/// Rows of the output projection computed at once: bounds the `(rows, n_vocab)` logits buffer.
const OUT_CHUNK: usize = 256;

/// A model with an optional trainable adapter.
pub struct Trainer<'a> {
    pub model: &'a Model,
    pub adapter: Option<&'a LoraAdapter>,
    /// The int8 output backward; `None` runs it in f32 on dequantized tiles.
    pub output_t: Option<&'a TransposedOutput>,
}

fn norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(w.len())
        .zip(x.par_chunks(w.len()))
        .for_each(|(o, x)| rms_norm(x, w, eps, o));
    out
}

fn add(x: &mut [f32], y: &[f32]) {
    x.par_iter_mut()
        .zip(y.par_iter())
        .for_each(|(a, b)| *a += b);
}

impl Trainer<'_> {
    fn attn_shape(&self, il: usize) -> AttnShape {
        let c = &self.model.config;
        AttnShape {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: c.head_dim,
            window: if c.swa_layers[il] {
                c.sliding_window
            } else {
                None
            },
        }
    }

    /// QK-norm, RoPE and the query scale: raw projections to the vectors attention uses.
    fn rotate(
        &self,
        il: usize,
        tables: &[RopeTable; 2],
        q_raw: &[f32],
        k_raw: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let c = &self.model.config;
        let lw = &self.model.weights.layers[il];
        let (mut q, mut k) = match (&lw.attn_q_norm, &lw.attn_k_norm) {
            (Some(qn), Some(kn)) => (
                norm_rows(q_raw, qn, c.rms_eps),
                norm_rows(k_raw, kn, c.rms_eps),
            ),
            _ => (q_raw.to_vec(), k_raw.to_vec()),
        };
        let table = &tables[c.swa_layers[il] as usize];
        apply_rope(c.rope_style, &mut q, c.n_head, c.head_dim, table);
        apply_rope(c.rope_style, &mut k, c.n_head_kv, c.head_dim, table);
        q.par_iter_mut().for_each(|v| *v *= c.attn_scale);
        (q, k)
    }

    /// Runs `pack` forward, saving a tape for [`Trainer::backward`] unless `grad` is `None`.
    pub fn forward(
        &self,
        pack: Pack,
        grad: OutputGrad,
        dropout: Option<Dropout>,
    ) -> Result<Tape, TrainError> {
        let keep = !matches!(grad, OutputGrad::None);
        let Trunk { x, layers, hs } = self.trunk(&pack, keep, dropout)?;
        let coefs = match &grad {
            OutputGrad::Now(cf) => Some(cf.as_slice()),
            _ => None,
        };
        let OutputPass {
            logp,
            dhs,
            dtok: dtok_out,
        } = self.output_pass(&hs, &pack.labels, &pack.soft, coefs)?;
        let (out, out_is_grad) = match grad {
            OutputGrad::Now(_) => (dhs, true),
            OutputGrad::Later => (hs, false),
            OutputGrad::None => (Vec::new(), false),
        };
        Ok(Tape {
            pack,
            dropout,
            layers,
            x_final: if keep { x } else { Vec::new() },
            out,
            out_is_grad,
            logp,
            dtok_out,
        })
    }

    /// The adapter's token rows, where they reach the logits (an output tied to the embedding).
    fn output_rows(&self) -> Option<&TokenRows> {
        let m = self.model;
        self.adapter
            .and_then(|a| a.tokens.as_ref())
            .filter(|_| m.weights.output.is_none())
    }

    /// `logits (rows, n_vocab) += hs (rows, d) · deltaᵀ` on the token rows' columns.
    fn add_row_logits(&self, hs: &[f32], logits: &mut [f32]) {
        let Some(tr) = self.output_rows() else {
            return;
        };
        let (d, v) = (self.model.config.n_embd, self.model.config.n_vocab);
        logits
            .par_chunks_mut(v)
            .zip(hs.par_chunks(d))
            .for_each(|(row, h)| tr.add_logits(h, row));
    }

    /// The model's own distribution at each loss row of `pack`, as its `k` likeliest tokens
    /// (no tape is kept): the soft targets that distil this model into an adapter.
    pub fn distributions(&self, pack: &Pack, k: usize) -> Result<Vec<SoftTarget>, TrainError> {
        let hs = self.trunk(pack, false, None)?.hs;
        let m = self.model;
        let c = &m.config;
        let (d, v) = (c.n_embd, c.n_vocab);
        let file = m.gguf.bytes();
        let out_w = m.weights.output.as_ref().unwrap_or(&m.weights.token_embd);
        let rows = pack.loss_rows.len();
        let mut acts = QuantizedActs::default();
        let mut logits = Vec::new();
        let mut out = Vec::with_capacity(rows);
        for r0 in (0..rows).step_by(OUT_CHUNK) {
            let r1 = (r0 + OUT_CHUNK).min(rows);
            acts.set(&hs[r0 * d..r1 * d], r1 - r0, d);
            logits.resize((r1 - r0) * v, 0.0);
            out_w.matmul(file, &mut acts, &mut logits)?; // (rows in chunk, n_vocab)
            self.add_row_logits(&hs[r0 * d..r1 * d], &mut logits);
            let part: Vec<SoftTarget> = logits
                .par_chunks_mut(v)
                .map(|row| top_k_row(row, c.final_logit_softcap, k))
                .collect();
            out.extend(part);
        }
        Ok(out)
    }

    /// The layers over `pack` (see [`Trunk`]): the residual stream after the last layer `(n, d)`, each layer's
    /// tape when `keep`, and the final-normed hidden state of the loss rows `(loss rows, d)`.
    fn trunk(
        &self,
        pack: &Pack,
        keep: bool,
        dropout: Option<Dropout>,
    ) -> Result<Trunk, TrainError> {
        let m = self.model;
        let c = &m.config;
        let w = &m.weights;
        let file = m.gguf.bytes();
        let n = pack.len();
        let d = c.n_embd;
        if let Some(ad) = self.adapter {
            ad.check(c)?;
        }
        for r in &pack.seqs {
            if r.len() > c.ctx_train {
                return Err(TrainError::Config(format!(
                    "a sequence of {} tokens exceeds the model's context of {}",
                    r.len(),
                    c.ctx_train
                )));
            }
        }
        if let Some(&t) = pack
            .tokens
            .iter()
            .chain(&pack.labels)
            .find(|&&t| t as usize >= c.n_vocab)
        {
            return Err(TrainError::Config(format!(
                "token id {t} outside the vocabulary of {}",
                c.n_vocab
            )));
        }
        let lora = LoraCtx {
            adapter: self.adapter,
            dropout,
        };
        let tables = [
            m.rope_table(&pack.positions, false),
            m.rope_table(&pack.positions, true),
        ];

        // (n, d) scaled embeddings, with the adapter's token rows
        let rows = self.adapter.and_then(|a| a.tokens.as_ref());
        let mut x = vec![0f32; n * d];
        x.par_chunks_mut(d)
            .zip(pack.tokens.par_iter())
            .try_for_each(|(row, &t)| {
                w.token_embd.dequantize_row(file, t as usize, row)?;
                if let Some(r) = rows {
                    r.add_to_embedding(t, row);
                }
                row.iter_mut().for_each(|v| *v *= c.embed_scale);
                Ok::<(), TrainError>(())
            })?;
        let mut acts = QuantizedActs::default();
        let mut layers = Vec::new();
        let lin =
            |mtx: &Matrix, acts: &mut QuantizedActs, rows: usize| -> Result<Vec<f32>, TrainError> {
                let mut y = vec![0f32; n * rows];
                mtx.matmul(file, acts, &mut y)?;
                Ok(y)
            };
        for (il, lw) in w.layers.iter().enumerate() {
            let mut lu: [Vec<f32>; 7] = Default::default();
            let h1 = norm_rows(&x, &lw.attn_norm, c.rms_eps);
            acts.set(&h1, n, d);
            let mut q_raw = lin(&lw.attn_q, &mut acts, c.q_dim())?;
            let mut k_raw = lin(&lw.attn_k, &mut acts, c.kv_dim())?;
            let mut v = lin(&lw.attn_v, &mut acts, c.kv_dim())?;
            lu[Target::Q as usize] = lora.forward(il, Target::Q, &h1, n, &mut q_raw);
            lu[Target::K as usize] = lora.forward(il, Target::K, &h1, n, &mut k_raw);
            lu[Target::V as usize] = lora.forward(il, Target::V, &h1, n, &mut v);
            let (q, k) = self.rotate(il, &tables, &q_raw, &k_raw);
            let mut attn = vec![0f32; n * c.q_dim()];
            attention_forward(&self.attn_shape(il), &pack.seqs, &q, &k, &v, &mut attn);
            acts.set(&attn, n, c.q_dim());
            let mut o_raw = lin(&lw.attn_output, &mut acts, d)?;
            lu[Target::O as usize] = lora.forward(il, Target::O, &attn, n, &mut o_raw);
            let o = match &lw.post_attention_norm {
                Some(pn) => norm_rows(&o_raw, pn, c.rms_eps),
                None => o_raw.clone(),
            };
            let x_in = x.clone();
            add(&mut x, &o);
            let x_mid = x.clone();
            let h2 = norm_rows(&x, &lw.ffn_norm, c.rms_eps);
            acts.set(&h2, n, d);
            let mut g = lin(&lw.ffn_gate, &mut acts, c.n_ff)?;
            let mut u = lin(&lw.ffn_up, &mut acts, c.n_ff)?;
            lu[Target::Gate as usize] = lora.forward(il, Target::Gate, &h2, n, &mut g);
            lu[Target::Up as usize] = lora.forward(il, Target::Up, &h2, n, &mut u);
            let mut a = vec![0f32; n * c.n_ff];
            gated_forward(c.activation, &g, &u, &mut a);
            acts.set(&a, n, c.n_ff);
            let mut f_raw = lin(&lw.ffn_down, &mut acts, d)?;
            lu[Target::Down as usize] = lora.forward(il, Target::Down, &a, n, &mut f_raw);
            match &lw.post_ffw_norm {
                Some(pn) => add(&mut x, &norm_rows(&f_raw, pn, c.rms_eps)),
                None => add(&mut x, &f_raw),
            }
            if keep {
                layers.push(LayerTape {
                    x_in,
                    q_raw,
                    k_raw,
                    v,
                    attn,
                    o_raw,
                    x_mid,
                    g,
                    u,
                    f_raw,
                    lora_u: lu,
                });
            }
        }

        // Final norm of the loss rows only; the output projection runs nowhere else.
        let nl = pack.loss_rows.len();
        let mut hs = vec![0f32; nl * d];
        hs.par_chunks_mut(d)
            .zip(pack.loss_rows.par_iter())
            .for_each(|(o, &r)| rms_norm(&x[r * d..(r + 1) * d], &w.output_norm, c.rms_eps, o));
        Ok(Trunk { x, layers, hs })
    }

    /// Logits of `hs (rows, d)` in chunks, log p(label) per row and, with `coefs`, the gradient of
    /// `Σ coef · (−log p)` with respect to `hs` and to the adapter's token rows `(rows, d)` (empty
    /// where they do not reach the output).
    fn output_pass(
        &self,
        hs: &[f32],
        labels: &[u32],
        soft: &[Option<SoftTarget>],
        coefs: Option<&[f32]>,
    ) -> Result<OutputPass, TrainError> {
        let m = self.model;
        let c = &m.config;
        let file = m.gguf.bytes();
        let d = c.n_embd;
        let v = c.n_vocab;
        let out_w = m.weights.output.as_ref().unwrap_or(&m.weights.token_embd);
        let rows = labels.len();
        let mut logp = vec![0f32; rows];
        let mut dhs = if coefs.is_some() {
            vec![0f32; rows * d]
        } else {
            Vec::new()
        };
        let tok_rows = self.output_rows().filter(|_| coefs.is_some());
        let mut dtok = vec![0f32; tok_rows.map_or(0, |t| t.delta.len())];
        let mut acts = QuantizedActs::default();
        let mut logits = Vec::new();
        let mut buf = Vec::new();
        for r0 in (0..rows).step_by(OUT_CHUNK) {
            let r1 = (r0 + OUT_CHUNK).min(rows);
            let nr = r1 - r0;
            acts.set(&hs[r0 * d..r1 * d], nr, d);
            logits.resize(nr * v, 0.0);
            out_w.matmul(file, &mut acts, &mut logits)?; // (nr, n_vocab)
            self.add_row_logits(&hs[r0 * d..r1 * d], &mut logits);
            logp[r0..r1]
                .par_iter_mut()
                .zip(logits.par_chunks_mut(v))
                .enumerate()
                .for_each(|(i, (lp, row))| {
                    let coef = coefs.map(|cf| cf[r0 + i]);
                    let cap = c.final_logit_softcap;
                    *lp = match soft.get(r0 + i).and_then(Option::as_ref) {
                        Some(t) => soft_cross_entropy_row(row, cap, t, coef),
                        None => cross_entropy_row(row, cap, labels[r0 + i] as usize, coef),
                    };
                });
            if coefs.is_some() {
                let dh = &mut dhs[r0 * d..r1 * d];
                match self.output_t {
                    Some(t) => t.backward(&logits, nr, dh)?,
                    None => base_backward(out_w, file, &logits, nr, dh, &mut buf)?,
                }
                // logit_id = h · (e_id + delta_id): dh += dlogit · delta, ddelta += dlogit · h.
                if let Some(tr) = tok_rows {
                    for (i, dlog) in logits.chunks(v).enumerate() {
                        let h = &hs[(r0 + i) * d..(r0 + i + 1) * d];
                        let dh = &mut dh[i * d..(i + 1) * d];
                        for (j, &id) in tr.ids.iter().enumerate() {
                            let g = dlog[id as usize];
                            if g == 0.0 {
                                continue;
                            }
                            let delta = &tr.delta[j * d..(j + 1) * d];
                            dh.iter_mut().zip(delta).for_each(|(a, b)| *a += g * b);
                            dtok[j * d..(j + 1) * d]
                                .iter_mut()
                                .zip(h)
                                .for_each(|(a, b)| *a += g * b);
                        }
                    }
                }
            }
        }
        Ok(OutputPass { logp, dhs, dtok })
    }

    /// Accumulates into `grads` the gradient of `Σ coef · (−log p(label))` over the loss rows.
    /// `coefs` must be given for a tape made with [`OutputGrad::Later`] and is ignored otherwise.
    pub fn backward(
        &self,
        tape: Tape,
        coefs: Option<&[f32]>,
        grads: &mut LoraAdapter,
    ) -> Result<(), TrainError> {
        let m = self.model;
        let c = &m.config;
        let w = &m.weights;
        let file = m.gguf.bytes();
        let d = c.n_embd;
        let Tape {
            pack,
            dropout,
            layers,
            x_final,
            out,
            out_is_grad,
            dtok_out,
            ..
        } = tape;
        if layers.len() != c.n_layer {
            return Err(TrainError::Config(
                "backward of a forward run without a tape".into(),
            ));
        }
        let n = pack.len();
        let (dhs, dtok_out) = if out_is_grad {
            (out, dtok_out)
        } else {
            let cf = coefs
                .ok_or_else(|| TrainError::Config("backward needs the loss coefficients".into()))?;
            let p = self.output_pass(&out, &pack.labels, &pack.soft, Some(cf))?;
            (p.dhs, p.dtok)
        };
        if let Some(g) = grads.tokens.as_mut() {
            g.delta.iter_mut().zip(&dtok_out).for_each(|(a, b)| *a += b);
        }
        let lora = LoraCtx {
            adapter: self.adapter,
            dropout,
        };
        let tables = [
            m.rope_table(&pack.positions, false),
            m.rope_table(&pack.positions, true),
        ];

        // d(loss)/d(x after the last layer): only loss rows pass through the final norm.
        let mut dx = vec![0f32; n * d];
        for (i, &r) in pack.loss_rows.iter().enumerate() {
            rms_norm_backward(
                &x_final[r * d..(r + 1) * d],
                &w.output_norm,
                c.rms_eps,
                &dhs[i * d..(i + 1) * d],
                &mut dx[r * d..(r + 1) * d],
            );
        }
        let mut buf = Vec::new();
        for (il, t) in layers.iter().enumerate().rev() {
            let lw = &w.layers[il];
            // Feed-forward block, last line first: x_out = x_mid + norm(f_raw).
            let df_raw = match &lw.post_ffw_norm {
                Some(pn) => {
                    let mut g = vec![0f32; n * d];
                    rms_norm_backward(&t.f_raw, pn, c.rms_eps, &dx, &mut g);
                    g
                }
                None => dx.clone(),
            };
            let mut a = vec![0f32; n * c.n_ff];
            gated_forward(c.activation, &t.g, &t.u, &mut a);
            // f_raw = a · W_downᵀ + lora
            let mut da = vec![0f32; n * c.n_ff];
            base_backward(&lw.ffn_down, file, &df_raw, n, &mut da, &mut buf)?;
            lora.backward(
                LoraBackward {
                    il,
                    t: Target::Down,
                    x: &a,
                    u: &t.lora_u[Target::Down as usize],
                    dy: &df_raw,
                    n,
                    dx: &mut da,
                },
                grads,
            );
            drop(a);
            // a = act(g) ∘ u
            let mut dg = vec![0f32; n * c.n_ff];
            let mut du = vec![0f32; n * c.n_ff];
            gated_backward(c.activation, &t.g, &t.u, &da, &mut dg, &mut du);
            drop(da);
            // g, u = h2 · W_gate/upᵀ + lora, h2 = norm(x_mid)
            let h2 = norm_rows(&t.x_mid, &lw.ffn_norm, c.rms_eps);
            let mut dh2 = vec![0f32; n * d];
            base_backward(&lw.ffn_gate, file, &dg, n, &mut dh2, &mut buf)?;
            base_backward(&lw.ffn_up, file, &du, n, &mut dh2, &mut buf)?;
            lora.backward(
                LoraBackward {
                    il,
                    t: Target::Gate,
                    x: &h2,
                    u: &t.lora_u[Target::Gate as usize],
                    dy: &dg,
                    n,
                    dx: &mut dh2,
                },
                grads,
            );
            lora.backward(
                LoraBackward {
                    il,
                    t: Target::Up,
                    x: &h2,
                    u: &t.lora_u[Target::Up as usize],
                    dy: &du,
                    n,
                    dx: &mut dh2,
                },
                grads,
            );
            // x_mid feeds both the residual and h2: dx becomes d(loss)/d(x_mid).
            rms_norm_backward(&t.x_mid, &lw.ffn_norm, c.rms_eps, &dh2, &mut dx);

            // Attention block: x_mid = x_in + norm(o_raw).
            let do_raw = match &lw.post_attention_norm {
                Some(pn) => {
                    let mut g = vec![0f32; n * d];
                    rms_norm_backward(&t.o_raw, pn, c.rms_eps, &dx, &mut g);
                    g
                }
                None => dx.clone(),
            };
            // o_raw = attn · W_oᵀ + lora
            let mut dattn = vec![0f32; n * c.q_dim()];
            base_backward(&lw.attn_output, file, &do_raw, n, &mut dattn, &mut buf)?;
            lora.backward(
                LoraBackward {
                    il,
                    t: Target::O,
                    x: &t.attn,
                    u: &t.lora_u[Target::O as usize],
                    dy: &do_raw,
                    n,
                    dx: &mut dattn,
                },
                grads,
            );
            // attn = attention(q, k, v)
            let (q, k) = self.rotate(il, &tables, &t.q_raw, &t.k_raw);
            let mut dq = vec![0f32; n * c.q_dim()];
            let mut dk = vec![0f32; n * c.kv_dim()];
            let mut dv = vec![0f32; n * c.kv_dim()];
            attention_backward(
                &self.attn_shape(il),
                &pack.seqs,
                (&q, &k, &t.v),
                &dattn,
                AttnGrads {
                    dq: &mut dq,
                    dk: &mut dk,
                    dv: &mut dv,
                },
            );
            // q = scale · rope(norm(q_raw)), k = rope(norm(k_raw))
            dq.par_iter_mut().for_each(|v| *v *= c.attn_scale);
            let table = &tables[c.swa_layers[il] as usize];
            rope_backward(c.rope_style, &mut dq, c.n_head, c.head_dim, table);
            rope_backward(c.rope_style, &mut dk, c.n_head_kv, c.head_dim, table);
            if let (Some(qn), Some(kn)) = (&lw.attn_q_norm, &lw.attn_k_norm) {
                let mut g = vec![0f32; dq.len()];
                rms_norm_backward(&t.q_raw, qn, c.rms_eps, &dq, &mut g);
                dq = g;
                let mut g = vec![0f32; dk.len()];
                rms_norm_backward(&t.k_raw, kn, c.rms_eps, &dk, &mut g);
                dk = g;
            }
            // q_raw, k_raw, v = h1 · Wᵀ + lora, h1 = norm(x_in)
            let h1 = norm_rows(&t.x_in, &lw.attn_norm, c.rms_eps);
            let mut dh1 = vec![0f32; n * d];
            base_backward(&lw.attn_q, file, &dq, n, &mut dh1, &mut buf)?;
            base_backward(&lw.attn_k, file, &dk, n, &mut dh1, &mut buf)?;
            base_backward(&lw.attn_v, file, &dv, n, &mut dh1, &mut buf)?;
            for (tg, dy) in [(Target::Q, &dq), (Target::K, &dk), (Target::V, &dv)] {
                lora.backward(
                    LoraBackward {
                        il,
                        t: tg,
                        x: &h1,
                        u: &t.lora_u[tg as usize],
                        dy,
                        n,
                        dx: &mut dh1,
                    },
                    grads,
                );
            }
            rms_norm_backward(&t.x_in, &lw.attn_norm, c.rms_eps, &dh1, &mut dx);
        }
        // x0 = scale · (e_t + delta_t): each row's gradient reaches its token's delta.
        if let Some(g) = grads.tokens.as_mut() {
            for (r, &t) in pack.tokens.iter().enumerate() {
                if let Some(j) = g.index(t) {
                    g.delta[j * d..(j + 1) * d]
                        .iter_mut()
                        .zip(&dx[r * d..(r + 1) * d])
                        .for_each(|(a, b)| *a += c.embed_scale * b);
                }
            }
        }
        Ok(())
    }
}
