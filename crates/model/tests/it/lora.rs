//! LoRA adapters at inference: GGUF-LoRA round trips, shape checks, and a forward pass with an
//! adapter equal to the forward pass of the base with the adapter merged in.
use crate::tiny::tiny_model;
use autodidact_kernels::GgmlType;
use autodidact_model::gguf::GgufFile;
use autodidact_model::testing::Rng;
use autodidact_model::{Arch, Logits, LoraAdapter, Model, SeqInput, Target, TokenRows};

fn tiny(arch: Arch, ty: GgmlType, seed: u64) -> Model {
    let bytes = tiny_model(arch, ty, seed);
    Model::from_gguf(GgufFile::from_bytes("tiny", &bytes).unwrap()).unwrap()
}

fn random_adapter(m: &Model, rank: usize, seed: u64) -> LoraAdapter {
    let mut ad = LoraAdapter::zeros(&m.config, rank, 2.0 * rank as f32, &Target::ALL);
    let mut rng = Rng(seed);
    for l in &mut ad.layers {
        for p in l.pairs.iter_mut().flatten() {
            p.a.iter_mut().for_each(|v| *v = 0.1 * rng.f());
            p.b.iter_mut().for_each(|v| *v = 0.1 * rng.f());
        }
    }
    // Embedding rows of tokens the tests feed (20, 54, 38) and one they never do (7): in a tied
    // model each changes its token's input and its logit.
    let mut rows = TokenRows::zeros(vec![20, 54, 38, 7], m.config.n_embd);
    rows.delta.iter_mut().for_each(|v| *v = 0.2 * rng.f());
    ad.tokens = Some(rows);
    ad
}

fn logits(m: &Model, tokens: &[u32], ad: Option<&LoraAdapter>) -> Vec<f32> {
    let mut cache = m.new_cache(64, 64);
    m.forward(
        &mut [SeqInput {
            cache: &mut cache,
            tokens,
            logits: Logits::All,
            adapter: ad,
        }],
        false,
    )
    .unwrap()
    .logits
}

#[test]
fn an_adapter_in_the_forward_pass_equals_merging_it_into_the_weights() {
    for arch in [Arch::Gemma3, Arch::Llama] {
        let m = tiny(arch, GgmlType::F32, 5);
        let ad = random_adapter(&m, 4, 9);
        let merged = ad.merged_gguf(&m, None).unwrap().to_bytes().unwrap();
        let mm = Model::from_gguf(GgufFile::from_bytes("merged", &merged).unwrap()).unwrap();
        let tokens: Vec<u32> = (0..10).map(|i| 3 + i * 17 % 280).collect();
        let with = logits(&m, &tokens, Some(&ad));
        let base = logits(&m, &tokens, None);
        let want = logits(&mm, &tokens, None);
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        assert!(
            diff(&with, &want) < 1e-3,
            "{arch:?}: {}",
            diff(&with, &want)
        );
        assert!(
            diff(&base, &want) > 1e-2,
            "{arch:?}: the adapter changed nothing"
        );
    }
}

#[test]
fn gguf_lora_round_trips_and_rejects_the_wrong_base() {
    let m = tiny(Arch::Gemma3, GgmlType::Q8_0, 6);
    let mut ad = random_adapter(&m, 8, 3);
    // Only some targets in some layers, as PEFT adapters often are.
    ad.layers[1].set(Target::Down, None);
    let file = ad.to_gguf("t").to_bytes().unwrap();
    let g = GgufFile::from_bytes("ad", &file).unwrap();
    assert_eq!(g.get_str("general.type").unwrap(), Some("adapter"));
    assert_eq!(g.get_str("adapter.type").unwrap(), Some("lora"));
    let info = g.tensor_info("blk.0.attn_q.weight.lora_a").unwrap();
    assert_eq!(info.dims, vec![256, 8]);
    let info = g.tensor_info("blk.0.attn_q.weight.lora_b").unwrap();
    assert_eq!(info.dims, vec![8, 256]);
    let back = LoraAdapter::from_gguf(&g, &m.config).unwrap();
    assert_eq!(back, ad);
    // Token rows alone make an adapter too.
    let rows_only = LoraAdapter {
        layers: vec![Default::default(); m.config.n_layer],
        ..ad.clone()
    };
    let g2 = GgufFile::from_bytes("rows", &rows_only.to_gguf("r").to_bytes().unwrap()).unwrap();
    assert_eq!(LoraAdapter::from_gguf(&g2, &m.config).unwrap(), rows_only);

    // An adapter for another architecture, and a base model passed as an adapter.
    let lm = tiny(Arch::Llama, GgmlType::Q8_0, 6);
    let err = LoraAdapter::from_gguf(&g, &lm.config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("gemma3") && err.contains("llama"), "{err}");
    let err = LoraAdapter::from_gguf(&m.gguf, &m.config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("general.type"), "{err}");
}

#[test]
fn an_f32_merge_holds_the_dequantized_base_plus_the_adapter_exactly() {
    use autodidact_kernels::quant::dequantize_to_vec;
    let m = tiny(Arch::Gemma3, GgmlType::Q4K, 7);
    let mut ad = random_adapter(&m, 4, 11);
    ad.layers[0].set(Target::Up, None);
    let merged = ad
        .merged_gguf(&m, Some(GgmlType::F32))
        .unwrap()
        .to_bytes()
        .unwrap();
    let g = GgufFile::from_bytes("merged", &merged).unwrap();
    let f32s = |g: &GgufFile, name: &str| {
        let (info, data) = g.tensor_data(name).unwrap();
        dequantize_to_vec(info.ty, data, info.n_elements() as usize).unwrap()
    };
    for (name, adapted) in [
        ("blk.0.attn_q.weight", Some((0, Target::Q))),
        ("blk.1.ffn_down.weight", Some((1, Target::Down))),
        ("blk.0.ffn_up.weight", None),
        ("token_embd.weight", None),
    ] {
        assert_eq!(g.tensor_info(name).unwrap().ty, GgmlType::F32, "{name}");
        let mut want = f32s(&m.gguf, name);
        if let Some((il, t)) = adapted {
            ad.merge_into(il, t, &mut want);
        }
        if name == "token_embd.weight" {
            let rows = ad.tokens.as_ref().unwrap();
            let d = m.config.n_embd;
            for (j, &id) in rows.ids.iter().enumerate() {
                for k in 0..d {
                    want[id as usize * d + k] += rows.delta[j * d + k];
                }
            }
        }
        assert_eq!(f32s(&g, name), want, "{name}");
    }
    // The merged file runs, and differs from the base only by the adapter and exact f32 maths.
    let mm = Model::from_gguf(g).unwrap();
    let tokens: Vec<u32> = (0..8).map(|i| 5 + i * 31 % 250).collect();
    let (with, want) = (logits(&m, &tokens, Some(&ad)), logits(&mm, &tokens, None));
    let rel = with
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / want.iter().map(|b| b.abs()).sum::<f32>();
    assert!(rel < 0.05, "relative difference {rel}");
}
