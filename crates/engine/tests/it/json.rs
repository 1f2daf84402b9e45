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

fn run(
    model: &Model,
    schema: &Value,
    seeds: std::ops::Range<u64>,
    max_tokens: usize,
) -> Vec<(String, FinishReason)> {
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

/// Why `v` does not validate against `s` (the subset the grammar enforces), if it does not.
fn invalid(v: &Value, s: &Value) -> Option<String> {
    let fail = |why: &str| Some(format!("{v} fails {why} of {s}"));
    if let Some(c) = s.get("const") {
        return (v != c).then(|| format!("{v} is not {c}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return fail("enum");
        }
    }
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let n = |k: &str| s.get(k).and_then(Value::as_u64).map(|x| x as usize);
    match s.get("type").and_then(Value::as_str) {
        Some("object") => {
            let o = v.as_object()?;
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !o.contains_key(r.as_str().unwrap()) {
                    return fail("required");
                }
            }
            if n("minProperties").is_some_and(|m| o.len() < m)
                || n("maxProperties").is_some_and(|m| o.len() > m)
            {
                return fail("min/maxProperties");
            }
            for (k, x) in o {
                let sub = match props.and_then(|p| p.get(k)) {
                    Some(sub) => sub,
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => return fail("additionalProperties"),
                        Some(a @ Value::Object(_)) => a,
                        _ => continue,
                    },
                };
                if let Some(why) = invalid(x, sub) {
                    return Some(why);
                }
            }
        }
        Some("array") => {
            let Some(a) = v.as_array() else {
                return fail("type");
            };
            if n("minItems").is_some_and(|m| a.len() < m)
                || n("maxItems").is_some_and(|m| a.len() > m)
            {
                return fail("min/maxItems");
            }
            if let Some(items) = s.get("items") {
                return a.iter().find_map(|x| invalid(x, items));
            }
        }
        Some("string") => {
            let Some(t) = v.as_str() else {
                return fail("type");
            };
            let len = t.chars().count();
            if n("minLength").is_some_and(|m| len < m) || n("maxLength").is_some_and(|m| len > m) {
                return fail("min/maxLength");
            }
        }
        Some(ty @ ("number" | "integer")) => {
            let Some(x) = v.as_f64() else {
                return fail("type");
            };
            if ty == "integer" && !(v.is_i64() || v.is_u64()) {
                return fail("type");
            }
            if num("minimum").is_some_and(|m| x < m)
                || num("maximum").is_some_and(|m| x > m)
                || num("exclusiveMinimum").is_some_and(|m| x <= m)
                || num("exclusiveMaximum").is_some_and(|m| x >= m)
            {
                return fail("range");
            }
        }
        Some("boolean") if !v.is_boolean() => return fail("type"),
        Some("null") if !v.is_null() => return fail("type"),
        _ => {}
    }
    None
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
        let r = text
            .find("\"reasoning\"")
            .unwrap_or_else(|| panic!("no reasoning key: {text:?}"));
        if let Some(a) = text.find("\"answer\"") {
            assert!(r < a, "answer before reasoning: {text:?}");
        } else {
            assert_ne!(
                finish,
                FinishReason::Stop,
                "stopped without an answer: {text:?}"
            );
        }
    }
}

/// The README's promise: a reply that finishes with `stop` parses and validates, whatever path
/// the sampler takes through the grammar.
#[test]
fn every_stopped_reply_parses_and_validates() {
    let model = tiny();
    let schemas = [
        json!({"type": "integer", "minimum": 5, "maximum": 6}),
        json!({"type": "number", "exclusiveMinimum": -1.5, "maximum": 2.25}),
        json!({
            "type": "object",
            "properties": {
                "reasoning": {"type": "string", "minLength": 2, "maxLength": 12},
                "answer": {"type": "integer", "minimum": -3, "exclusiveMaximum": 40}
            },
            "required": ["reasoning", "answer"]
        }),
        json!({
            "type": "array",
            "items": {"type": "number", "minimum": 0, "maximum": 1},
            "minItems": 2,
            "maxItems": 4
        }),
        json!({
            "type": "object",
            "properties": {
                "kind": {"enum": ["cat", "dog", 3]},
                "ok": {"type": "boolean"},
                "none": {"type": "null"},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
                "name": {"type": "string", "minLength": 3, "maxLength": 5}
            }
        }),
        json!({"type": "object", "additionalProperties": {"type": "integer", "maximum": 9}, "minProperties": 1, "maxProperties": 2}),
    ];
    for schema in &schemas {
        let outs = run(&model, schema, 0..16, 128);
        let mut stopped = 0;
        for (text, finish) in outs {
            assert!(!text.contains("\n\n") && !text.contains("  \n"), "{text:?}");
            if finish != FinishReason::Stop {
                continue;
            }
            stopped += 1;
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
            if let Some(why) = invalid(&v, schema) {
                panic!("{why}");
            }
        }
        // Random weights write long strings; some replies still finish within the budget.
        assert!(stopped >= 1, "{schema}: none of 16 finished");
    }
}
