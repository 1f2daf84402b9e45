//! Tiny random models of both architectures and every weight type (`autodidact_model::testing`),
//! run through the real forward pass and checked against a plain f32 reference forward.
use autodidact_kernels::quant::dequantize_to_vec;
use autodidact_kernels::GgmlType;
use autodidact_model::gguf::GgufFile;
pub use autodidact_model::testing::tiny_model;

const D: usize = 256;
const FF: usize = 512;
const HD: usize = 64;
const NH: usize = 4;
const NKV: usize = 2;
const VOCAB: usize = 300;
const LAYERS: usize = 6;
use autodidact_model::{Arch, Logits, Model, SeqInput};

fn deq(g: &GgufFile, name: &str) -> Vec<f32> {
    let (info, data) = g.tensor_data(name).unwrap();
    dequantize_to_vec(info.ty, data, info.n_elements() as usize).unwrap()
}

fn rms(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * s * g).collect()
}

fn matvec(w: &[f32], x: &[f32], rows: usize) -> Vec<f32> {
    let cols = x.len();
    (0..rows)
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

/// Straightforward f32 forward over a whole sequence: logits of every position.
fn reference_forward(m: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    let c = &m.config;
    let g = &m.gguf;
    let gemma = c.arch == Arch::Gemma3;
    let emb = deq(g, "token_embd.weight");
    let mut xs: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&t| {
            emb[t as usize * D..(t as usize + 1) * D]
                .iter()
                .map(|v| v * c.embed_scale)
                .collect()
        })
        .collect();
    let n = tokens.len();
    for il in 0..LAYERS {
        let p = |x: &str| format!("blk.{il}.{x}.weight");
        let (wq, wk, wv, wo) = (
            deq(g, &p("attn_q")),
            deq(g, &p("attn_k")),
            deq(g, &p("attn_v")),
            deq(g, &p("attn_output")),
        );
        let swa = c.swa_layers[il];
        let base = if swa { c.rope_base_swa } else { c.rope_base };
        let rope = |v: &mut [f32], pos: usize| {
            for i in 0..HD / 2 {
                let ang = pos as f32 * base.powf(-2.0 * i as f32 / HD as f32);
                let (a, b) = if gemma {
                    (i, i + HD / 2)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (x0, x1) = (v[a], v[b]);
                v[a] = x0 * ang.cos() - x1 * ang.sin();
                v[b] = x0 * ang.sin() + x1 * ang.cos();
            }
        };
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let h = rms(x, &deq(g, &p("attn_norm")), c.rms_eps);
            let mut q = matvec(&wq, &h, NH * HD);
            let mut k = matvec(&wk, &h, NKV * HD);
            for (v, hd) in q
                .chunks_mut(HD)
                .map(|v| (v, 0))
                .chain(k.chunks_mut(HD).map(|v| (v, 1)))
            {
                if gemma {
                    let w = deq(
                        g,
                        &p(if hd == 0 {
                            "attn_q_norm"
                        } else {
                            "attn_k_norm"
                        }),
                    );
                    let normed = rms(v, &w, c.rms_eps);
                    v.copy_from_slice(&normed);
                }
                rope(v, pos);
            }
            qs.push(q);
            ks.push(k);
            vs.push(matvec(&wv, &h, NKV * HD));
        }
        for pos in 0..n {
            let mut att = vec![0f32; NH * HD];
            for h in 0..NH {
                let kv = h / (NH / NKV);
                let lo = match c.sliding_window {
                    Some(w) if swa => (pos + 1).saturating_sub(w),
                    _ => 0,
                };
                let q = &qs[pos][h * HD..(h + 1) * HD];
                let sc: Vec<f32> = (lo..=pos)
                    .map(|j| {
                        q.iter()
                            .zip(&ks[j][kv * HD..(kv + 1) * HD])
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            * c.attn_scale
                    })
                    .collect();
                let mx = sc.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = sc.iter().map(|s| (s - mx).exp()).collect();
                let tot: f32 = e.iter().sum();
                for (i, j) in (lo..=pos).enumerate() {
                    for d in 0..HD {
                        att[h * HD + d] += e[i] / tot * vs[j][kv * HD + d];
                    }
                }
            }
            let mut o = matvec(&wo, &att, D);
            if gemma {
                o = rms(&o, &deq(g, &p("post_attention_norm")), c.rms_eps);
            }
            xs[pos].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let h = rms(&xs[pos], &deq(g, &p("ffn_norm")), c.rms_eps);
            let gate = matvec(&deq(g, &p("ffn_gate")), &h, FF);
            let up = matvec(&deq(g, &p("ffn_up")), &h, FF);
            let act: Vec<f32> = gate
                .iter()
                .zip(&up)
                .map(|(&a, &u)| {
                    let f = if gemma {
                        0.5 * a * (1.0 + (0.797_884_6 * a * (1.0 + 0.044715 * a * a)).tanh())
                    } else {
                        a / (1.0 + (-a).exp())
                    };
                    f * u
                })
                .collect();
            let mut f = matvec(&deq(g, &p("ffn_down")), &act, D);
            if gemma {
                f = rms(&f, &deq(g, &p("post_ffw_norm")), c.rms_eps);
            }
            xs[pos].iter_mut().zip(&f).for_each(|(a, b)| *a += b);
        }
    }
    xs.iter()
        .map(|x| {
            matvec(
                &emb,
                &rms(x, &deq(g, "output_norm.weight"), c.rms_eps),
                VOCAB,
            )
        })
        .collect()
}

fn check(arch: Arch, ty: GgmlType) {
    let bytes = tiny_model(arch, ty, 42 + ty.id() as u64);
    let m = Model::from_gguf(GgufFile::from_bytes("tiny", &bytes).unwrap()).unwrap();
    let tokens: Vec<u32> = (0..70).map(|i| (2 + i * 23 % 290) as u32).collect();
    let want = reference_forward(&m, &tokens);
    // Short chunks and single tokens take attention's per-key path; the two long chunks its
    // matrix-product path, over several query tiles and, in the last, a sliding ring (window 8,
    // 48 rows) that has wrapped around.
    let mut cache = m.new_cache(80, 40);
    let mut got = Vec::new();
    for part in [
        &tokens[..7],
        &tokens[7..11],
        &tokens[11..12],
        &tokens[12..30],
        &tokens[30..],
    ] {
        let out = m
            .forward(
                &mut [SeqInput {
                    cache: &mut cache,
                    tokens: part,
                    logits: Logits::All,
                    adapter: None,
                }],
                false,
            )
            .unwrap();
        got.extend((0..part.len()).map(|r| out.row(r).to_vec()));
    }
    // Quantized activations and f16 caches put errors at the percent level of the logits' spread.
    let tol = match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 0.03,
        _ => 0.12,
    };
    for (pos, (g, w)) in got.iter().zip(&want).enumerate() {
        let spread = w.iter().map(|v| v.abs()).fold(0.0, f32::max);
        let err = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            err <= tol * spread,
            "{arch:?} {ty:?} pos {pos}: max error {err} of spread {spread}"
        );
    }
}

#[test]
fn every_architecture_and_tensor_type_matches_the_f32_reference() {
    for arch in [Arch::Llama, Arch::Gemma3] {
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4K,
            GgmlType::Q5K,
            GgmlType::Q6K,
        ] {
            check(arch, ty);
        }
    }
}

#[test]
fn batched_sequences_match_separate_runs() {
    let bytes = tiny_model(Arch::Gemma3, GgmlType::Q8_0, 7);
    let m = Model::from_gguf(GgufFile::from_bytes("tiny", &bytes).unwrap()).unwrap();
    let a: Vec<u32> = (3..13).collect();
    let b: Vec<u32> = (40..45).collect();
    let alone = |t: &[u32]| {
        let mut c = m.new_cache(32, 16);
        m.forward(
            &mut [SeqInput {
                cache: &mut c,
                tokens: t,
                logits: Logits::Last,
                adapter: None,
            }],
            false,
        )
        .unwrap()
        .row(0)
        .to_vec()
    };
    let (mut ca, mut cb) = (m.new_cache(32, 16), m.new_cache(32, 16));
    let out = m
        .forward(
            &mut [
                SeqInput {
                    cache: &mut ca,
                    tokens: &a,
                    logits: Logits::Last,
                    adapter: None,
                },
                SeqInput {
                    cache: &mut cb,
                    tokens: &b,
                    logits: Logits::Last,
                    adapter: None,
                },
            ],
            false,
        )
        .unwrap();
    assert_eq!(out.row(0), alone(&a).as_slice());
    assert_eq!(out.row(1), alone(&b).as_slice());
}

/// A copied prompt prefix is the donor's keys and values: continuing from the copy gives the
/// same logits, bit for bit, as continuing the donor itself. A sliding ring that has already
/// overwritten what the copy's next query needs refuses (window 8, ring of 48 rows).
#[test]
fn a_copied_prefix_continues_like_the_original() {
    let bytes = tiny_model(Arch::Gemma3, GgmlType::Q8_0, 5);
    let m = Model::from_gguf(GgufFile::from_bytes("tiny", &bytes).unwrap()).unwrap();
    let tokens: Vec<u32> = (0..70).map(|i| (2 + i * 31 % 290) as u32).collect();
    let feed = |cache: &mut autodidact_model::SeqCache, part: &[u32]| {
        let out = m
            .forward(
                &mut [SeqInput {
                    cache,
                    tokens: part,
                    logits: Logits::All,
                    adapter: None,
                }],
                false,
            )
            .unwrap();
        (0..part.len())
            .flat_map(|r| out.row(r).iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            .collect::<Vec<u32>>()
    };
    let mut donor = m.new_cache(80, 40);
    feed(&mut donor, &tokens[..30]);
    let mut copy = m.new_cache(80, 40);
    assert!(copy.copy_prefix_from(&donor, 20));
    assert_eq!(copy.len(), 20);
    assert!(donor.truncate(20));
    assert_eq!(
        feed(&mut copy, &tokens[20..30]),
        feed(&mut donor, &tokens[20..30])
    );

    let mut long = m.new_cache(80, 40);
    feed(&mut long, &tokens[..40]);
    feed(&mut long, &tokens[40..]);
    let mut early = m.new_cache(80, 40);
    assert!(
        !early.copy_prefix_from(&long, 20),
        "positions 13..20 are overwritten"
    );
    assert!(early.is_empty());
    assert!(
        !early.copy_prefix_from(&long, 71),
        "more than the donor holds"
    );
    let mut late = m.new_cache(80, 40);
    assert!(late.copy_prefix_from(&long, 65));
    assert!(long.truncate(65));
    assert_eq!(
        feed(&mut late, &tokens[65..]),
        feed(&mut long, &tokens[65..])
    );

    // A copy's ring holds only what was copied (positions 22..61 of a donor at 70), and a
    // truncated ring only what survived: neither may later be cut back to positions whose
    // rows were never written or were overwritten (the query at 25 needs 18..24).
    let mut donor = m.new_cache(80, 40);
    feed(&mut donor, &tokens[..40]);
    feed(&mut donor, &tokens[40..]);
    let mut copy = m.new_cache(80, 40);
    assert!(copy.copy_prefix_from(&donor, 61));
    feed(&mut copy, &tokens[61..63]);
    assert!(!copy.truncate(25), "rows of 13..21 were never written");
    assert!(copy.truncate(58));
    assert!(donor.truncate(65));
    assert!(
        !donor.truncate(25),
        "rows of 18..21 were overwritten by 66..69"
    );
    let mut again = m.new_cache(80, 40);
    assert!(
        !again.copy_prefix_from(&donor, 25),
        "nor copied from such a ring"
    );
}
