use autodidact_kernels::vec::log_softmax_at;
use autodidact_model::{Logits, Model, SeqInput};
fn run(model: &Model, label: &str) {
    let prompt = [2u32, 818, 5279, 529, 7001, 563];
    let mut cache = model.new_cache(512, 512);
    let out = model
        .forward(
            &mut [SeqInput {
                cache: &mut cache,
                tokens: &prompt,
                logits: Logits::Last,
            }],
            false,
        )
        .unwrap();
    let l = out.row(0);
    let v: Vec<String> = [506usize, 496, 9079, 886, 3224]
        .iter()
        .map(|&i| format!("{:.4}", log_softmax_at(l, i)))
        .collect();
    println!("{label:12} {}", v.join(" "));
}
fn main() {
    let mut model = Model::load("/tmp/gemma.gguf").unwrap();
    println!("reference    -1.5439 -2.0632 -2.5152 -2.7198 -3.0607");
    run(&model, "base");
    let c0 = model.config.clone();
    model.config.rope_base = 10000.0;
    model.config.rope_base_swa = 1e6;
    run(&model, "swap-rope");
    model.config = c0.clone();
    model.config.rope_base_swa = 1e6;
    run(&model, "all-1e6");
    model.config = c0.clone();
    model.config.rope_base = 1e4;
    run(&model, "all-1e4");
    model.config = c0.clone();
    model.config.rope_style = autodidact_model::config::RopeStyle::Norm;
    run(&model, "rope-norm");
    model.config = c0.clone();
    model.config.attn_scale = 1.0 / (160f32).sqrt();
    run(&model, "scale160");
    model.config = c0.clone();
    model.config.rms_eps = 1e-5;
    run(&model, "eps1e-5");
    model.config = c0.clone();
    model.config.final_logit_softcap = Some(30.0);
    run(&model, "softcap30");
}
