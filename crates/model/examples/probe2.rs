use autodidact_kernels::vec::log_softmax_at;
use autodidact_model::{Logits, Model, SeqInput};
fn main() {
    let model = Model::load("/tmp/gemma.gguf").unwrap();
    let text = std::fs::read_to_string("/work/shared/reference/gemma3-270m/greedy.jsonl").unwrap();
    let (mut ident, mut all_diffs) = (0, Vec::new());
    for line in text.lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let ids = |v: &serde_json::Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect::<Vec<_>>()
        };
        let (prompt, want) = (ids(&c["prompt_ids"]), ids(&c["ids"]));
        let mut cache = model.new_cache(512, 512);
        let mut feed = prompt.clone();
        let (mut agree, mut n_agree, mut worst) = (true, 0, 0f32);
        for (i, &w) in want.iter().enumerate() {
            let out = model
                .forward(
                    &mut [SeqInput {
                        cache: &mut cache,
                        tokens: &feed,
                        logits: Logits::Last,
                    }],
                    false,
                )
                .unwrap();
            let l = out.row(0);
            if agree {
                for e in c["top_logprobs"][i].as_array().unwrap() {
                    let d = (log_softmax_at(l, e["id"].as_u64().unwrap() as usize)
                        - e["logprob"].as_f64().unwrap() as f32)
                        .abs();
                    worst = worst.max(d);
                    all_diffs.push(d);
                }
            }
            let next = (0..l.len())
                .max_by(|&a, &b| l[a].partial_cmp(&l[b]).unwrap())
                .unwrap() as u32;
            if next != w {
                agree = false
            } else if agree {
                n_agree += 1
            }
            feed = vec![next];
        }
        if n_agree == want.len() {
            ident += 1
        }
        println!(
            "agree {n_agree:2}/32 worst {worst:.4}  {:?}",
            c["prompt"].as_str().unwrap()
        );
    }
    all_diffs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = all_diffs.len();
    println!(
        "identical {ident}/10; diffs median {:.4} p90 {:.4} max {:.4}",
        all_diffs[n / 2],
        all_diffs[n * 9 / 10],
        all_diffs[n - 1]
    );
}
