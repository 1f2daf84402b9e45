//! Constrained JSON decoding through the engine on tiny random models: random weights wander into
//! odd corners of the grammar, so every finished reply is parsed and validated against its schema.
use autodidact_engine::json_grammar::JsonGrammar;
use autodidact_engine::{generate, FinishReason, GenConfig, Request, SamplingParams};
use autodidact_kernels::GgmlType;
use autodidact_model::gguf::GgufFile;
use autodidact_model::testing::tiny_model;
use autodidact_model::{Arch, Model};
use serde_json::{json, Value};

fn tiny() -> Model {
    let bytes = tiny_model(Arch::Gemma3, GgmlType::Q8_0, 5);
    Model::from_gguf(GgufFile::from_bytes("tiny", &bytes).unwrap()).unwrap()
}

fn run(model: &Model, schema: &Value, seeds: std::ops::Range<u64>, max_tokens: usize) -> Vec<(String, FinishReason)> {
    let g = JsonGrammar::from_schema(schema).unwrap();
    let prompt = model.tokenizer.encode("Answer in JSON:", true, false);
    let reqs = seeds
        .map(|seed| Request {
            prompt: prompt.clone(),
            params: SamplingParams {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed,
                max_tokens,
                ..SamplingParams::default()
            },
            json: Some(g.clone()),
            adapter: None,
        })
        .collect();
    generate(model, GenConfig::default(), reqs, |_| true)
        .unwrap()
        .into_iter()
        .map(|c| (c.text, c.finish))
        .collect()
}

#[test]
fn properties_come_in_schema_order() {
    let model = tiny();
    let schema = json!({
        "type": "object",
        "properties": {"reasoning": {"type": "string", "maxLength": 20}, "answer": {"type": "integer"}},
        "required": ["reasoning", "answer"]
    });
    for (text, finish) in run(&model, &schema, 0..4, 200) {
        let r = text.find("\"reasoning\"").unwrap_or_else(|| panic!("no reasoning key: {text:?}"));
        if let Some(a) = text.find("\"answer\"") {
            assert!(r < a, "answer before reasoning: {text:?}");
        } else {
            assert_ne!(finish, FinishReason::Stop, "stopped without an answer: {text:?}");
        }
    }
}
