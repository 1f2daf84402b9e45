//! Constrained decoding for JSON: a byte-level pushdown matcher for "any JSON object" or a JSON
//! Schema subset. The sampler only considers tokens whose bytes the matcher accepts, and the matcher
//! accepts a byte only when the value can still be finished validly, so a reply that ends with
//! `stop` always parses and validates against the schema (`max_tokens` can still cut it short).
//!
//! Enforced: `type` (one name), `properties` (generated in the schema's order, all of them, which
//! satisfies `required`), `additionalProperties`, `minProperties`/`maxProperties`, `items`,
//! `minItems`/`maxItems`, `minLength`/`maxLength`, `minimum`/`maximum`/`exclusiveMinimum`/
//! `exclusiveMaximum` (bounded numbers are written as plain decimals of at most 6 places), `enum`
//! and `const`. Annotations (`title`, `description`, `format`, …) are accepted; any other keyword
//! is refused by name rather than ignored. Whitespace between tokens is at most one space, or one
//! newline and a short indent, so a model cannot spend its tokens on blank lines.
mod matcher;
mod number;

pub use matcher::JsonMatcher;

use crate::EngineError;
use number::{Bounds, NumSpec};
use serde_json::{Map, Value};
use std::sync::Arc;

type Alts = Arc<Vec<Vec<u8>>>;

/// Limits on an object's members when its keys are free.
#[derive(Debug, Clone, Copy)]
struct FreeObject {
    /// The node every member's value must match.
    value: usize,
    min: usize,
    max: Option<usize>,
}

#[derive(Debug, Clone)]
enum Node {
    Any,
    /// Fixed properties: each `"key"` literal and its value node, in order.
    Fields(Arc<Vec<(Alts, usize)>>),
    Object(FreeObject),
    Array {
        item: usize,
        min: usize,
        max: Option<usize>,
    },
    /// Lengths in characters (Unicode code points), as JSON Schema counts them.
    String {
        min: usize,
        max: Option<usize>,
    },
    Number(NumSpec),
    /// Alternatives as exact JSON texts (true/false/null, enum, const); at most 64.
    Literal(Alts),
}

/// A compiled constraint, shared by every sequence that uses it.
#[derive(Debug, Clone)]
pub struct JsonGrammar {
    nodes: Vec<Node>,
    root: usize,
    words: Alts,
}

const ANY: usize = 0;
/// A node for `{}`-style free objects of any values.
const ANY_OBJECT: usize = 1;

/// Keywords that describe a schema without changing what validates.
const ANNOTATIONS: [&str; 14] = [
    "title",
    "description",
    "examples",
    "default",
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "deprecated",
    "readOnly",
    "writeOnly",
    "format",
    "contentMediaType",
];

/// Keywords enforced for values of each type.
const OBJECT_KEYS: [&str; 5] = [
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
];
const ARRAY_KEYS: [&str; 4] = ["items", "minItems", "maxItems", "uniqueItems"];
const STRING_KEYS: [&str; 2] = ["minLength", "maxLength"];
const NUMBER_KEYS: [&str; 4] = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

fn bad<T>(m: impl Into<String>) -> Result<T, EngineError> {
    Err(EngineError::BadParam(format!("json_schema: {}", m.into())))
}

/// A non-negative integer keyword, if present.
fn count(obj: &Map<String, Value>, key: &str) -> Result<Option<usize>, EngineError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) => Ok(Some(n.min(usize::MAX as u64) as usize)),
            None => bad(format!("`{key}` must be a non-negative integer")),
        },
    }
}

fn range(
    obj: &Map<String, Value>,
    lo: &str,
    hi: &str,
) -> Result<(usize, Option<usize>), EngineError> {
    let min = count(obj, lo)?.unwrap_or(0);
    let max = count(obj, hi)?;
    if max.is_some_and(|m| m < min) {
        return bad(format!("`{lo}` is larger than `{hi}`"));
    }
    Ok((min, max))
}

impl JsonGrammar {
    fn empty() -> JsonGrammar {
        JsonGrammar {
            nodes: vec![
                Node::Any,
                Node::Object(FreeObject {
                    value: ANY,
                    min: 0,
                    max: None,
                }),
            ],
            root: ANY,
            words: Arc::new(vec![b"true".to_vec(), b"false".to_vec(), b"null".to_vec()]),
        }
    }

    /// Any JSON object (OpenAI's `json_object` mode).
    pub fn object() -> Arc<JsonGrammar> {
        let mut g = JsonGrammar::empty();
        g.root = ANY_OBJECT;
        Arc::new(g)
    }

    /// A value valid against `schema` (the subset in the module docs); an error names the keyword
    /// that is not supported or the constraint no value can meet.
    pub fn from_schema(schema: &Value) -> Result<Arc<JsonGrammar>, EngineError> {
        let mut g = JsonGrammar::empty();
        g.root = g.compile(schema, 0)?;
        Ok(Arc::new(g))
    }

    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// Whether the text `json` is a whole value of `node`.
    fn accepts(&self, node: usize, json: &[u8]) -> bool {
        let g = Arc::new(JsonGrammar {
            nodes: self.nodes.clone(),
            root: node,
            words: self.words.clone(),
        });
        let mut m = JsonMatcher::new(g);
        m.feed(json) && m.is_complete()
    }

    /// `enum`/`const` values, keeping those the rest of the schema (`rest`) also accepts.
    fn literal(&mut self, values: &[Value], rest: usize) -> Result<usize, EngineError> {
        if values.is_empty() || values.len() > 64 {
            return bad("`enum` needs 1 to 64 values");
        }
        let alts: Vec<Vec<u8>> = values
            .iter()
            .map(|v| v.to_string().into_bytes())
            .filter(|t| self.accepts(rest, t))
            .collect();
        if alts.is_empty() {
            return bad("no value of `enum`/`const` satisfies the rest of its schema");
        }
        Ok(self.push(Node::Literal(Arc::new(alts))))
    }

    fn compile(&mut self, s: &Value, depth: usize) -> Result<usize, EngineError> {
        if depth > 32 {
            return bad("nesting deeper than 32");
        }
        let Some(obj) = s.as_object() else {
            return match s {
                Value::Bool(true) => Ok(ANY),
                _ => bad("a schema must be an object"),
            };
        };
        let ty = match obj.get("type") {
            None if obj.contains_key("properties") => Some("object"),
            None if obj.contains_key("items") => Some("array"),
            None => None,
            Some(Value::String(t)) => Some(t.as_str()),
            Some(_) => return bad("`type` must be a single type name"),
        };
        // Every keyword is enforced, describes, or belongs to another type (and so cannot apply
        // to the one value type generated); anything else would be silently ignored.
        for k in obj.keys() {
            let k = k.as_str();
            let known = ANNOTATIONS.contains(&k) || matches!(k, "type" | "enum" | "const");
            let typed = OBJECT_KEYS.contains(&k)
                || ARRAY_KEYS.contains(&k)
                || STRING_KEYS.contains(&k)
                || NUMBER_KEYS.contains(&k);
            if !(known || (typed && ty.is_some())) {
                return bad(format!("`{k}` is not supported"));
            }
        }
        if obj.contains_key("const") || obj.contains_key("enum") {
            let mut rest = obj.clone();
            let c = rest.remove("const");
            let e = rest.remove("enum");
            let rest = self.compile(&Value::Object(rest), depth + 1)?;
            let values = match (c, e) {
                (Some(c), _) => vec![c],
                (None, Some(Value::Array(list))) => list,
                _ => return bad("`enum` must be an array"),
            };
            return self.literal(&values, rest);
        }
        let Some(ty) = ty else { return Ok(ANY) };
        match ty {
            "object" => self.object_node(obj, depth),
            "array" => {
                let item = match obj.get("items") {
                    Some(Value::Array(_)) => return bad("`items` as a list is not supported"),
                    Some(i) => self.compile(i, depth + 1)?,
                    None => ANY,
                };
                let (min, max) = range(obj, "minItems", "maxItems")?;
                if obj.get("uniqueItems") == Some(&Value::Bool(true)) && max.is_none_or(|m| m > 1) {
                    return bad("`uniqueItems` is not supported");
                }
                Ok(self.push(Node::Array { item, min, max }))
            }
            "string" => {
                let (min, max) = range(obj, "minLength", "maxLength")?;
                Ok(self.push(Node::String { min, max }))
            }
            "number" | "integer" => {
                let integer = ty == "integer";
                let num = |k: &str| obj.get(k).and_then(Value::as_number);
                // Draft 4 wrote exclusiveness as booleans beside minimum/maximum.
                let flag = |k: &str| obj.get(k) == Some(&Value::Bool(true));
                let lower = match (num("minimum"), num("exclusiveMinimum")) {
                    (_, Some(x)) => Some((x, true)),
                    (Some(m), None) => Some((m, flag("exclusiveMinimum"))),
                    (None, None) => None,
                };
                let upper = match (num("maximum"), num("exclusiveMaximum")) {
                    (_, Some(x)) => Some((x, true)),
                    (Some(m), None) => Some((m, flag("exclusiveMaximum"))),
                    (None, None) => None,
                };
                for k in NUMBER_KEYS {
                    if obj
                        .get(k)
                        .is_some_and(|v| !v.is_number() && !v.is_boolean())
                    {
                        return bad(format!("`{k}` must be a number"));
                    }
                }
                let bounds = if lower.is_none() && upper.is_none() {
                    None
                } else {
                    Some(
                        Bounds::new(integer, lower, upper)
                            .map_err(|e| EngineError::BadParam(format!("json_schema: {e}")))?,
                    )
                };
                Ok(self.push(Node::Number(NumSpec { integer, bounds })))
            }
            "boolean" => Ok(self.push(Node::Literal(Arc::new(vec![
                b"true".to_vec(),
                b"false".to_vec(),
            ])))),
            "null" => Ok(self.push(Node::Literal(Arc::new(vec![b"null".to_vec()])))),
            other => bad(format!("unknown type `{other}`")),
        }
    }

    fn object_node(
        &mut self,
        obj: &Map<String, Value>,
        depth: usize,
    ) -> Result<usize, EngineError> {
        let (min, max) = range(obj, "minProperties", "maxProperties")?;
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            Some(_) => return bad("`required` must be a list of names"),
        };
        let Some(props) = obj.get("properties") else {
            if let Some(r) = required.first() {
                return bad(format!(
                    "`required` names `{r}`, which `properties` does not define"
                ));
            }
            let value = match obj.get("additionalProperties") {
                None | Some(Value::Bool(true)) => ANY,
                Some(Value::Bool(false)) if min > 0 => {
                    return bad("`minProperties` with no properties allowed")
                }
                Some(Value::Bool(false)) => {
                    return Ok(self.push(Node::Object(FreeObject {
                        value: ANY,
                        min: 0,
                        max: Some(0),
                    })))
                }
                Some(s) => self.compile(s, depth + 1)?,
            };
            return Ok(self.push(Node::Object(FreeObject { value, min, max })));
        };
        let Some(props) = props.as_object() else {
            return bad("`properties` must be an object");
        };
        if let Some(r) = required.iter().find(|r| !props.contains_key(**r)) {
            return bad(format!(
                "`required` names `{r}`, which `properties` does not define"
            ));
        }
        // Every listed property is generated, so their count must be allowed.
        if props.len() < min || max.is_some_and(|m| props.len() > m) {
            return bad("`minProperties`/`maxProperties` exclude the listed properties");
        }
        let mut fields = Vec::with_capacity(props.len());
        for (k, v) in props {
            let key = Value::String(k.clone()).to_string().into_bytes();
            fields.push((Arc::new(vec![key]), self.compile(v, depth + 1)?));
        }
        Ok(self.push(Node::Fields(Arc::new(fields))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepts(g: &Arc<JsonGrammar>, text: &str) -> bool {
        let mut m = JsonMatcher::new(g.clone());
        m.feed(text.as_bytes()) && m.is_complete()
    }

    fn refused(schema: Value) -> String {
        match JsonGrammar::from_schema(&schema) {
            Err(EngineError::BadParam(m)) => m,
            other => panic!("{schema} was not refused: {other:?}"),
        }
    }

    #[test]
    fn schema_shapes_the_value_in_its_order() {
        let g = JsonGrammar::from_schema(&json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
                "ok": {"type": "boolean"}
            },
            "required": ["name", "age"]
        }))
        .unwrap();
        assert!(accepts(
            &g,
            r#"{"name": "x", "age": 3, "tags": ["a","b"], "ok": false}"#
        ));
        assert!(!accepts(
            &g,
            r#"{"age": 3, "name": "x", "ok": false, "tags": ["a","b"]}"#
        ));
        assert!(!accepts(
            &g,
            r#"{"name": "x", "age": 3.5, "tags": [], "ok": false}"#
        ));
        assert!(!accepts(
            &g,
            r#"{"name": "x", "age": 3, "tags": ["c"], "ok": false}"#
        ));
        assert!(!accepts(&g, r#"{"name": "x", "age": 3}"#));
        let n = JsonGrammar::from_schema(&json!({"type": "number"})).unwrap();
        assert!(accepts(&n, "-12.5e3"));
        assert!(!accepts(&n, "-"));
    }

    #[test]
    fn keywords_it_cannot_enforce_are_refused_by_name() {
        for (schema, word) in [
            (json!({"anyOf": []}), "anyOf"),
            (json!({"$ref": "#/$defs/x"}), "$ref"),
            (json!({"type": "string", "pattern": "^a+$"}), "pattern"),
            (json!({"type": "number", "multipleOf": 3}), "multipleOf"),
            (json!({"type": "array", "uniqueItems": true}), "uniqueItems"),
            (json!({"type": "array", "prefixItems": []}), "prefixItems"),
            (
                json!({"type": "object", "propertyNames": {}}),
                "propertyNames",
            ),
            (json!({"minimum": 3}), "minimum"),
            (
                json!({"type": "object", "properties": {"a": {}}, "required": ["b"]}),
                "`b`",
            ),
            (
                json!({"type": "integer", "minimum": 5.5, "maximum": 5.9}),
                "minimum",
            ),
            (
                json!({"type": "string", "minLength": 3, "maxLength": 2}),
                "minLength",
            ),
            (json!({"enum": [1, 2], "type": "string"}), "enum"),
        ] {
            let m = refused(schema.clone());
            assert!(m.contains(word), "{schema}: {m}");
        }
        // Descriptions and keywords of other types change nothing.
        let g = JsonGrammar::from_schema(&json!({
            "title": "T", "description": "d", "type": "string", "minimum": 3, "format": "email"
        }))
        .unwrap();
        assert!(accepts(&g, r#""x""#));
    }

    #[test]
    fn lengths_counts_and_ranges_are_enforced() {
        let g =
            JsonGrammar::from_schema(&json!({"type": "string", "minLength": 2, "maxLength": 3}))
                .unwrap();
        for ok in [r#""ab""#, r#""é\n""#, r#""日本語""#] {
            assert!(accepts(&g, ok), "{ok}");
        }
        for bad in [r#""a""#, r#""abcd""#, r#""日本語x""#, "\"\\ud800x\""] {
            assert!(!accepts(&g, bad), "{bad}");
        }
        let g = JsonGrammar::from_schema(&json!({"type": "array", "items": {"type": "integer", "minimum": 5, "maximum": 6}, "minItems": 1, "maxItems": 2}))
            .unwrap();
        assert!(accepts(&g, "[5]") && accepts(&g, "[5, 6]"));
        for bad in ["[]", "[5,6,5]", "[-1]", "[7]"] {
            assert!(!accepts(&g, bad), "{bad}");
        }
        let g = JsonGrammar::from_schema(&json!({"type": "object", "additionalProperties": {"type": "integer"}, "maxProperties": 1}))
            .unwrap();
        assert!(accepts(&g, r#"{"a": 1}"#) && accepts(&g, "{}"));
        assert!(!accepts(&g, r#"{"a": "x"}"#) && !accepts(&g, r#"{"a": 1, "b": 2}"#));
        let e = JsonGrammar::from_schema(
            &json!({"enum": ["a", 1, "abc"], "type": "string", "maxLength": 2}),
        )
        .unwrap();
        assert!(accepts(&e, r#""a""#) && !accepts(&e, "1") && !accepts(&e, r#""abc""#));
    }
}
