//! Teacher-forced log-probabilities, for comparing this forward pass with another implementation
//! (see `scripts/llamacpp_compare.py`).
//!
//! `logprobs MODEL.gguf [ADAPTER.gguf]` reads one JSON object per stdin line, `{"ids": [...], "at": [[pos, id], ...]}`,
//! runs the whole sequence in one forward pass and prints `{"argmax": [...], "lp": [...]}`: the
//! greedy choice after every position, and the log-probability of token `id` after position `pos`
//! for each requested pair. With a GGUF-LoRA adapter every sequence runs with it applied.
use autodidact_model::{Logits, LoraAdapter, Model, SeqInput};
use serde_json::{json, Value};
use std::io::BufRead;

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
    let lse = max
        + row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln();
    row.iter().map(|&x| x as f64 - lse).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: logprobs MODEL.gguf [ADAPTER.gguf] < requests.jsonl")?;
    let model = Model::load(path)?;
    let adapter = match std::env::args().nth(2) {
        Some(a) => Some(LoraAdapter::load_gguf(a.as_ref(), &model.config)?),
        None => None,
    };
    for line in std::io::stdin().lock().lines() {
        let req: Value = serde_json::from_str(&line?)?;
        let ids: Vec<u32> = serde_json::from_value(req["ids"].clone())?;
        let at: Vec<(usize, usize)> = serde_json::from_value(req["at"].clone())?;
        let mut cache = model.new_cache(ids.len(), ids.len());
        let out = model.forward(
            &mut [SeqInput {
                cache: &mut cache,
                tokens: &ids,
                logits: Logits::All,
                adapter: adapter.as_ref(),
            }],
            false,
        )?;
        let rows: Vec<Vec<f64>> = (0..ids.len()).map(|r| log_softmax(out.row(r))).collect();
        let argmax: Vec<usize> = rows
            .iter()
            .map(|r| (0..r.len()).fold(0, |b, i| if r[i] > r[b] { i } else { b }))
            .collect();
        let lp: Vec<f64> = at.iter().map(|&(p, id)| rows[p][id]).collect();
        println!("{}", json!({ "argmax": argmax, "lp": lp }));
    }
    Ok(())
}
