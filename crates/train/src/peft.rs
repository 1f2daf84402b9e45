//! PEFT's LoRA format: `adapter_model.safetensors` with Hugging Face module names and
//! `adapter_config.json`. Export for use with `transformers`/`peft`; import adapters trained there.
//!
//! llama.cpp stores Llama's Q and K rows permuted for its RoPE layout (pairs `(2i, 2i+1)` instead
//! of Hugging Face's `(i, i + d/2)`), so the `B` of those two targets is permuted on the way out
//! and back on the way in. Gemma's RoPE layout is the same in both, so its tensors pass unchanged.
use crate::TrainError;
use autodidact_model::gguf::write_atomic;
use autodidact_model::{Arch, Config, LayerLora, LoraAdapter, LoraPair, Target};
use half::{bf16, f16};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde_json::{json, Value};
use std::path::Path;

pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
pub const CONFIG_FILE: &str = "adapter_config.json";

fn tensor_name(il: usize, t: Target, ab: &str) -> String {
    format!(
        "base_model.model.model.layers.{il}.{}.{}.lora_{ab}.weight",
        t.peft_parent(),
        t.peft_name()
    )
}

/// Heads whose rows llama.cpp permutes, for target `t` of an architecture.
fn permuted_heads(c: &Config, t: Target) -> Option<usize> {
    match (c.arch, t) {
        (Arch::Llama, Target::Q) => Some(c.n_head),
        (Arch::Llama, Target::K) => Some(c.n_head_kv),
        _ => None,
    }
}

/// Reorders the rows of `b (out, rank)` between llama.cpp's and Hugging Face's Q/K layouts.
/// Within each head, HF row `s·(hd/2) + i` is llama.cpp row `2i + s`.
fn permute_rows(b: &[f32], rank: usize, heads: usize, to_hf: bool) -> Vec<f32> {
    let out = b.len() / rank;
    let hd = out / heads;
    let half = hd / 2;
    let mut res = vec![0f32; b.len()];
    for h in 0..heads {
        for s in 0..2 {
            for i in 0..half {
                let hf = h * hd + s * half + i;
                let gg = h * hd + 2 * i + s;
                let (dst, src) = if to_hf { (hf, gg) } else { (gg, hf) };
                res[dst * rank..(dst + 1) * rank].copy_from_slice(&b[src * rank..(src + 1) * rank]);
            }
        }
    }
    res
}

/// Settings PEFT records that the adapter itself does not carry.
pub struct PeftInfo<'a> {
    pub base_model: &'a str,
    pub dropout: f32,
}

/// Writes `dir/adapter_model.safetensors` and `dir/adapter_config.json` (each atomically).
pub fn export_peft(
    ad: &LoraAdapter,
    c: &Config,
    dir: &Path,
    info: &PeftInfo,
) -> Result<(), TrainError> {
    ad.check(c)?;
    if let Some(t) = &ad.tokens {
        return Err(TrainError::Format {
            path: dir.display().to_string(),
            what: format!(
                "the adapter also trains the embedding rows of {} tokens, which this PEFT export \
                 does not write; merge the adapter into the model instead",
                t.ids.len()
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut named: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    for (il, t, p) in ad.pairs() {
        let b = match permuted_heads(c, t) {
            Some(h) => permute_rows(&p.b, p.rank, h, true),
            None => p.b.clone(),
        };
        named.push((tensor_name(il, t, "A"), bytes(&p.a), vec![p.rank, p.n_in]));
        named.push((tensor_name(il, t, "B"), bytes(&b), vec![p.n_out, p.rank]));
    }
    let views: Vec<(String, TensorView)> = named
        .iter()
        .map(|(n, b, shape)| {
            let v = TensorView::new(Dtype::F32, shape.clone(), b)
                .expect("byte length matches the shape by construction");
            (n.clone(), v)
        })
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let wpath = dir.join(WEIGHTS_FILE);
    let st = safetensors::serialize(views, Some(meta)).map_err(|e| TrainError::Format {
        path: wpath.display().to_string(),
        what: e.to_string(),
    })?;
    write_atomic(&wpath, &st)?;
    let targets: Vec<&str> = ad.targets().iter().map(|t| t.peft_name()).collect();
    let cfg = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": info.base_model,
        "r": ad.rank(),
        "lora_alpha": ad.alpha,
        "lora_dropout": info.dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "rank_pattern": {},
        "alpha_pattern": {},
    });
    let text = serde_json::to_vec_pretty(&cfg).expect("JSON values serialize");
    write_atomic(&dir.join(CONFIG_FILE), &text)?;
    Ok(())
}

/// `…layers.N.<parent>.<proj>.lora_A[.default].weight` → `(N, target, is_a)`.
fn parse_name(name: &str) -> Option<(usize, Target, bool)> {
    let rest = &name[name.find("layers.")? + "layers.".len()..];
    let (n, rest) = rest.split_once('.')?;
    let il = n.parse().ok()?;
    let mut parts = rest.split('.');
    let _parent = parts.next()?;
    let t = Target::parse(parts.next()?)?;
    let is_a = match parts.next()? {
        "lora_A" => true,
        "lora_B" => false,
        _ => return None,
    };
    Some((il, t, is_a))
}

fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Reads a PEFT LoRA directory for a model of config `c`; returns the adapter and its dropout.
pub fn import_peft(dir: &Path, c: &Config) -> Result<(LoraAdapter, f32), TrainError> {
    let cpath = dir.join(CONFIG_FILE);
    let bad = |p: &Path, what: String| TrainError::Format {
        path: p.display().to_string(),
        what,
    };
    let text = std::fs::read_to_string(&cpath).map_err(|e| TrainError::io(&cpath, e))?;
    let cfg: Value = serde_json::from_str(&text).map_err(|e| bad(&cpath, e.to_string()))?;
    if cfg["peft_type"].as_str().is_some_and(|t| t != "LORA") {
        return Err(bad(
            &cpath,
            format!("peft_type {} is not LORA", cfg["peft_type"]),
        ));
    }
    for (key, what) in [("use_dora", "DoRA"), ("bias", "trained biases")] {
        let on = match &cfg[key] {
            Value::Bool(b) => *b,
            Value::String(s) => s != "none",
            _ => false,
        };
        if on {
            return Err(bad(&cpath, format!("{what} ({key}) are not supported")));
        }
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if cfg[key].as_object().is_some_and(|o| !o.is_empty()) {
            return Err(bad(&cpath, format!("per-module {key} is not supported")));
        }
    }
    if cfg["modules_to_save"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Err(bad(
            &cpath,
            "fully trained modules (modules_to_save) are not supported".into(),
        ));
    }
    let r = cfg["r"]
        .as_f64()
        .ok_or_else(|| bad(&cpath, "missing r".into()))? as f32;
    let mut alpha = cfg["lora_alpha"].as_f64().map_or(r, |a| a as f32);
    if cfg["use_rslora"].as_bool() == Some(true) {
        // rsLoRA scales by alpha/√r; alpha' = alpha·√r gives the same alpha'/r.
        alpha *= r.sqrt();
    }
    let dropout = cfg["lora_dropout"].as_f64().unwrap_or(0.0) as f32;

    let wpath = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| TrainError::io(&wpath, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(&wpath, e.to_string()))?;
    let mut ad = LoraAdapter {
        arch: c.arch,
        alpha,
        layers: vec![LayerLora::default(); c.n_layer],
        tokens: None,
    };
    for (name, view) in st.tensors() {
        let (il, t, is_a) = parse_name(&name).ok_or_else(|| {
            bad(
                &wpath,
                format!("tensor {name} is not a LoRA weight of a linear layer"),
            )
        })?;
        if il >= c.n_layer {
            return Err(bad(
                &wpath,
                format!("{name}: layer {il}, but the model has {}", c.n_layer),
            ));
        }
        let shape = view.shape();
        if shape.len() != 2 {
            return Err(bad(&wpath, format!("{name} is not 2-D")));
        }
        let vals = to_f32(view.dtype(), view.data()).ok_or_else(|| {
            bad(
                &wpath,
                format!("{name}: dtype {:?} is not supported", view.dtype()),
            )
        })?;
        let (out, inn) = t.shape(c);
        let pair = ad.layers[il].pairs[t as usize].get_or_insert_with(|| LoraPair {
            rank: 0,
            n_in: inn,
            n_out: out,
            a: Vec::new(),
            b: Vec::new(),
        });
        let wrong = |what: &str| {
            bad(
                &wpath,
                format!("{name} has shape {shape:?}: {what} (adapter for another model?)"),
            )
        };
        if is_a {
            if shape[1] != inn {
                return Err(wrong(&format!(
                    "the model's {} takes {inn} inputs",
                    t.peft_name()
                )));
            }
            pair.rank = shape[0];
            pair.a = vals;
        } else {
            if shape[0] != out {
                return Err(wrong(&format!(
                    "the model's {} has {out} outputs",
                    t.peft_name()
                )));
            }
            pair.b = match permuted_heads(c, t) {
                Some(h) => permute_rows(&vals, shape[1], h, false),
                None => vals,
            };
            if pair.rank != 0 && pair.rank != shape[1] {
                return Err(wrong("its rank differs from lora_A's"));
            }
            pair.rank = shape[1];
        }
    }
    for (il, t, p) in ad.pairs() {
        if p.a.is_empty() || p.b.is_empty() {
            return Err(bad(
                &wpath,
                format!(
                    "layer {il} {} has only one of lora_A and lora_B",
                    t.peft_name()
                ),
            ));
        }
    }
    if ad.pairs().next().is_none() {
        return Err(bad(&wpath, "no LoRA tensors".into()));
    }
    ad.check(c)?;
    Ok((ad, dropout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_row_permutation_round_trips_and_interleaves() {
        // 2 heads of 4 rows, rank 1: HF rows (h, s, i) → llama.cpp rows (h, i, s).
        let hf: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let gg = permute_rows(&hf, 1, 2, false);
        assert_eq!(gg, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(permute_rows(&gg, 1, 2, true), hf);
    }

    #[test]
    fn names_parse_with_and_without_the_adapter_name() {
        assert_eq!(
            parse_name("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"),
            Some((3, Target::Q, true))
        );
        assert_eq!(
            parse_name("base_model.model.model.language_model.layers.0.mlp.down_proj.lora_B.default.weight"),
            Some((0, Target::Down, false))
        );
        assert_eq!(parse_name("base_model.model.lm_head.weight"), None);
    }
}
