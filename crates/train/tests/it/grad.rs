//! Gradients of the LoRA parameters through every layer of tiny models, against central finite
//! differences of the loss, and the training forward's log-probabilities against inference.
use autodidact_kernels::vec::log_softmax_at;
use autodidact_kernels::GgmlType;
use autodidact_model::gguf::GgufFile;
use autodidact_model::testing::{tiny_model_with, Rng, TinySpec};
use autodidact_model::{Arch, Logits, LoraAdapter, Model, SeqInput, Target, TokenRows};
use autodidact_train::{Dropout, OutputGrad, Pack, Sequence, Trainer};

fn small(arch: Arch) -> Model {
    let spec = TinySpec {
        d: 32,
        ff: 48,
        head_dim: 8,
        n_head: 4,
        n_head_kv: 2,
        layers: 2,
        window: 3,
        ..TinySpec::new(arch, GgmlType::F32, 11)
    };
    let bytes = tiny_model_with(&spec);
    Model::from_gguf(GgufFile::from_bytes("small", &bytes).unwrap()).unwrap()
}

fn adapter(m: &Model, seed: u64) -> LoraAdapter {
    let mut ad = LoraAdapter::zeros(&m.config, 3, 6.0, &Target::ALL);
    let mut rng = Rng(seed);
    for p in ad
        .layers
        .iter_mut()
        .flat_map(|l| l.pairs.iter_mut().flatten())
    {
        p.a.iter_mut().for_each(|v| *v = 0.5 * rng.f());
        p.b.iter_mut().for_each(|v| *v = 0.5 * rng.f());
    }
    // Token rows: 77 is only an input, 114 and 63 inputs and labels, 5 neither (it still
    // moves every row's softmax through the tied output).
    let mut rows = TokenRows::zeros(vec![77, 114, 63, 5], m.config.n_embd);
    rows.delta.iter_mut().for_each(|v| *v = 0.3 * rng.f());
    ad.tokens = Some(rows);
    ad
}

fn sequences() -> Vec<Sequence> {
    let a: Vec<u32> = (0..7).map(|i| 3 + (i * 37) % 290).collect();
    let b: Vec<u32> = (0..5).map(|i| 10 + (i * 53) % 280).collect();
    let lab = |t: &[u32], from: usize| -> Vec<Option<u32>> {
        (0..t.len())
            .map(|i| (i >= from && i + 1 < t.len()).then(|| t[i + 1]))
            .collect()
    };
    vec![
        Sequence::new(a.clone(), lab(&a, 2)),
        Sequence::new(b.clone(), lab(&b, 0)),
    ]
}

fn mean_loss(m: &Model, ad: &LoraAdapter, seqs: &[Sequence], drop: Option<Dropout>) -> f64 {
    let tr = Trainer {
        model: m,
        adapter: Some(ad),
        output_t: None,
    };
    let refs: Vec<&Sequence> = seqs.iter().collect();
    let tape = tr
        .forward(Pack::new(&refs), OutputGrad::None, drop)
        .unwrap();
    -tape.logp.iter().map(|&v| v as f64).sum::<f64>() / tape.logp.len() as f64
}

/// The analytic gradient of the mean loss over `seqs` with respect to every tensor of `ad`.
fn analytic(m: &Model, ad: &LoraAdapter, seqs: &[Sequence], drop: Option<Dropout>) -> LoraAdapter {
    let refs: Vec<&Sequence> = seqs.iter().collect();
    let pack = Pack::new(&refs);
    let nl = pack.loss_rows.len();
    let tr = Trainer {
        model: m,
        adapter: Some(ad),
        output_t: None,
    };
    let mut grads = ad.clone();
    autodidact_train::optim::zero(&mut grads);
    let tape = tr
        .forward(pack, OutputGrad::Now(vec![1.0 / nl as f32; nl]), drop)
        .unwrap();
    tr.backward(tape, None, &mut grads).unwrap();
    grads
}

fn check_gradients(arch: Arch, drop: Option<Dropout>) {
    let m = small(arch);
    let ad = adapter(&m, 5);
    let seqs = sequences();
    let grads = analytic(&m, &ad, &seqs, drop);

    let mut checked = 0;
    let mut largest = 0f64;
    for il in 0..m.config.n_layer {
        for t in Target::ALL {
            for is_a in [true, false] {
                let g = grads.layers[il].get(t).unwrap();
                let gv = if is_a { &g.a } else { &g.b };
                for &i in &[0, gv.len() / 2, gv.len() - 1] {
                    let h = 3e-3f32;
                    let mut p = ad.clone();
                    let bump = |p: &mut LoraAdapter, by: f32| {
                        let q = p.layers[il].get_mut(t).unwrap();
                        if is_a {
                            q.a[i] += by
                        } else {
                            q.b[i] += by
                        }
                    };
                    bump(&mut p, h);
                    let up = mean_loss(&m, &p, &seqs, drop);
                    bump(&mut p, -2.0 * h);
                    let down = mean_loss(&m, &p, &seqs, drop);
                    let num = (up - down) / (2.0 * h as f64);
                    let tol = 3e-4 + 2e-2 * num.abs();
                    assert!(
                        (gv[i] as f64 - num).abs() <= tol,
                        "{arch:?} layer {il} {t:?} {} [{i}]: analytic {} vs numeric {num}",
                        if is_a { "A" } else { "B" },
                        gv[i]
                    );
                    checked += 1;
                    largest = largest.max(num.abs());
                }
            }
        }
    }
    assert_eq!(checked, m.config.n_layer * 7 * 2 * 3);
    // The comparison means something only if the loss does move.
    assert!(largest > 0.02, "largest gradient {largest}");
}

#[test]
fn lora_gradients_match_finite_differences_gemma3() {
    check_gradients(Arch::Gemma3, None);
}

#[test]
fn lora_gradients_match_finite_differences_llama() {
    check_gradients(Arch::Llama, None);
}

#[test]
fn lora_gradients_match_finite_differences_with_dropout() {
    check_gradients(Arch::Gemma3, Some(Dropout { p: 0.2, seed: 77 }));
}

/// The token rows' gradient, through the input embedding and the tied output, against central
/// finite differences.
#[test]
fn token_row_gradients_match_finite_differences() {
    for arch in [Arch::Gemma3, Arch::Llama] {
        let m = small(arch);
        let ad = adapter(&m, 6);
        let seqs = sequences();
        let grads = analytic(&m, &ad, &seqs, None);
        let g = grads.tokens.as_ref().unwrap();
        let d = m.config.n_embd;
        let mut largest = 0f64;
        for j in 0..g.ids.len() {
            for i in [j * d, j * d + d / 2, (j + 1) * d - 1] {
                let h = 3e-3f32;
                let mut p = ad.clone();
                p.tokens.as_mut().unwrap().delta[i] += h;
                let up = mean_loss(&m, &p, &seqs, None);
                p.tokens.as_mut().unwrap().delta[i] -= 2.0 * h;
                let down = mean_loss(&m, &p, &seqs, None);
                let num = (up - down) / (2.0 * h as f64);
                let tol = 3e-4 + 2e-2 * num.abs();
                assert!(
                    (g.delta[i] as f64 - num).abs() <= tol,
                    "{arch:?} token {} [{i}]: analytic {} vs numeric {num}",
                    g.ids[j],
                    g.delta[i]
                );
                largest = largest.max(num.abs());
            }
        }
        assert!(largest > 0.02, "largest gradient {largest}");
    }
}

#[test]
fn training_forward_agrees_with_inference() {
    for arch in [Arch::Gemma3, Arch::Llama] {
        let m = small(arch);
        let ad = adapter(&m, 8);
        let seqs = sequences();
        let tr = Trainer {
            model: &m,
            adapter: Some(&ad),
            output_t: None,
        };
        let tape = tr
            .forward(Pack::new(&[&seqs[0], &seqs[1]]), OutputGrad::None, None)
            .unwrap();
        let mut want = Vec::new();
        for s in &seqs {
            let mut cache = m.new_cache(32, 32);
            let out = m
                .forward(
                    &mut [SeqInput {
                        cache: &mut cache,
                        tokens: &s.tokens,
                        logits: Logits::All,
                        adapter: Some(&ad),
                    }],
                    false,
                )
                .unwrap();
            for (i, l) in s.labels.iter().enumerate() {
                if let Some(l) = l {
                    want.push(log_softmax_at(out.row(i), *l as usize));
                }
            }
        }
        assert_eq!(tape.logp.len(), want.len());
        for (g, w) in tape.logp.iter().zip(&want) {
            // Inference rounds keys, values and attention weights to f16; training stays in f32.
            assert!((g - w).abs() < 2e-2, "{arch:?}: {g} vs {w}");
        }
    }
}

#[test]
fn int8_output_backward_stays_close_to_the_f32_one() {
    use autodidact_train::optim::tensors;
    use autodidact_train::output_t::TransposedOutput;
    let spec = TinySpec {
        vocab: 320,
        ..TinySpec::small(Arch::Gemma3, GgmlType::Q8_0, 4)
    };
    let m = Model::from_gguf(GgufFile::from_bytes("q8", &tiny_model_with(&spec)).unwrap()).unwrap();
    let Some(out_t) = TransposedOutput::build(&m).unwrap() else {
        // No packed int8 kernels on this CPU: training uses the f32 path only.
        return;
    };
    let ad = adapter(&m, 3);
    let seqs = sequences();
    let grads = |o: Option<&TransposedOutput>| {
        let tr = Trainer {
            model: &m,
            adapter: Some(&ad),
            output_t: o,
        };
        let pack = Pack::new(&[&seqs[0], &seqs[1]]);
        let nl = pack.loss_rows.len();
        let mut g = LoraAdapter::zeros(&m.config, 3, 6.0, &Target::ALL);
        let tape = tr
            .forward(pack, OutputGrad::Now(vec![1.0 / nl as f32; nl]), None)
            .unwrap();
        tr.backward(tape, None, &mut g).unwrap();
        tensors(&g).concat()
    };
    let exact = grads(None);
    let int8 = grads(Some(&out_t));
    let dot: f64 = exact
        .iter()
        .zip(&int8)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    let na: f64 = exact
        .iter()
        .map(|a| (*a as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let nb: f64 = int8.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let cos = dot / (na * nb);
    assert!(cos > 0.999, "cosine {cos}");
    assert!((na - nb).abs() / na < 0.02, "norms {na} vs {nb}");
}
