//! Constrained decoding for JSON: a byte-level pushdown matcher for "any JSON object" or a JSON Schema
//! subset (object properties, arrays, strings, numbers, integers, booleans, null, enum, const). The
//! sampler only considers tokens whose bytes the matcher accepts, so the output always parses and
//! fits the schema (unless `max_tokens` cuts it short). Object properties are generated in the order
//! the schema lists them, all of them, which satisfies `required`.
use crate::EngineError;
use serde_json::Value;
use std::sync::Arc;

type Alts = Arc<Vec<Vec<u8>>>;

#[derive(Debug, Clone)]
enum Node {
    Any,
    /// Fixed properties (their `"key"` literal and value node), or `None` for any keys.
    Object(Option<Arc<Vec<(Alts, usize)>>>),
    Array(usize),
    String,
    Number {
        integer: bool,
    },
    /// Alternatives as exact JSON texts (true/false/null, enum, const); at most 64.
    Literal(Alts),
}

/// A compiled constraint, shared by every sequence that uses it.
#[derive(Debug)]
pub struct JsonGrammar {
    nodes: Vec<Node>,
    root: usize,
    words: Alts,
}

const ANY: usize = 0;
/// Consecutive whitespace bytes allowed: enough to pretty-print, not enough to stall forever.
const MAX_WS: u8 = 12;

impl JsonGrammar {
    fn empty() -> JsonGrammar {
        JsonGrammar {
            nodes: vec![Node::Any],
            root: ANY,
            words: Arc::new(vec![b"true".to_vec(), b"false".to_vec(), b"null".to_vec()]),
        }
    }

    /// Any JSON object (OpenAI's `json_object` mode).
    pub fn object() -> Arc<JsonGrammar> {
        let mut g = JsonGrammar::empty();
        g.root = g.push(Node::Object(None));
        Arc::new(g)
    }

    /// A value valid against `schema` (the subset in the module docs).
    pub fn from_schema(schema: &Value) -> Result<Arc<JsonGrammar>, EngineError> {
        let mut g = JsonGrammar::empty();
        g.root = g.compile(schema, 0)?;
        Ok(Arc::new(g))
    }

    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn literal(&mut self, alts: Vec<Vec<u8>>) -> Result<usize, EngineError> {
        if alts.is_empty() || alts.len() > 64 {
            return Err(EngineError::BadParam(
                "json_schema: `enum` needs 1 to 64 values".into(),
            ));
        }
        Ok(self.push(Node::Literal(Arc::new(alts))))
    }

    fn compile(&mut self, s: &Value, depth: usize) -> Result<usize, EngineError> {
        let bad = |m: String| Err(EngineError::BadParam(format!("json_schema: {m}")));
        if depth > 32 {
            return bad("nesting deeper than 32".into());
        }
        let Some(obj) = s.as_object() else {
            return match s {
                Value::Bool(true) => Ok(ANY),
                _ => bad("a schema must be an object".into()),
            };
        };
        for k in [
            "anyOf",
            "oneOf",
            "allOf",
            "$ref",
            "not",
            "if",
            "patternProperties",
        ] {
            if obj.contains_key(k) {
                return bad(format!("`{k}` is not supported"));
            }
        }
        if let Some(c) = obj.get("const") {
            return self.literal(vec![c.to_string().into_bytes()]);
        }
        if let Some(e) = obj.get("enum") {
            let Some(list) = e.as_array() else {
                return bad("`enum` must be an array".into());
            };
            return self.literal(list.iter().map(|v| v.to_string().into_bytes()).collect());
        }
        let ty = match obj.get("type") {
            None if obj.contains_key("properties") => "object",
            None if obj.contains_key("items") => "array",
            None => return Ok(ANY),
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return bad("`type` must be a single type name".into()),
        };
        match ty {
            "object" => match obj.get("properties").and_then(|p| p.as_object()) {
                Some(props) => {
                    let mut fields = Vec::with_capacity(props.len());
                    for (k, v) in props {
                        let key = Value::String(k.clone()).to_string().into_bytes();
                        fields.push((Arc::new(vec![key]), self.compile(v, depth + 1)?));
                    }
                    Ok(self.push(Node::Object(Some(Arc::new(fields)))))
                }
                None => Ok(self.push(Node::Object(None))),
            },
            "array" => {
                let item = match obj.get("items") {
                    Some(i) => self.compile(i, depth + 1)?,
                    None => ANY,
                };
                Ok(self.push(Node::Array(item)))
            }
            "string" => Ok(self.push(Node::String)),
            "number" => Ok(self.push(Node::Number { integer: false })),
            "integer" => Ok(self.push(Node::Number { integer: true })),
            "boolean" => self.literal(vec![b"true".to_vec(), b"false".to_vec()]),
            "null" => self.literal(vec![b"null".to_vec()]),
            other => bad(format!("unknown type `{other}`")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }

    fn next(self, b: u8, integer: bool) -> Option<Num> {
        Some(match (self, b) {
            (Num::Start, b'-') => Num::Minus,
            (Num::Start | Num::Minus, b'0') => Num::Zero,
            (Num::Start | Num::Minus, b'1'..=b'9') => Num::Int,
            (Num::Int, b'0'..=b'9') => Num::Int,
            (Num::Zero | Num::Int, b'.') if !integer => Num::Dot,
            (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') if !integer => Num::Exp,
            (Num::Exp, b'+' | b'-') => Num::ExpSign,
            (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Num::ExpDigits,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Just opened: a member/element or the closing bracket.
    Start,
    /// Object only: after a key, `:`.
    Colon,
    /// After a member/element: `,` or the closing bracket.
    AfterValue,
    /// After `,`: a member/element.
    AfterComma,
}

#[derive(Debug, Clone)]
enum Frame {
    Value(usize),
    /// `live`: bit i set while alternative i matches every byte so far.
    Lit {
        alts: Alts,
        live: u64,
        pos: usize,
    },
    /// 0: plain, 1: after `\`, 2..=5: inside `\uXXXX`.
    Str {
        escape: u8,
    },
    Num {
        state: Num,
        integer: bool,
    },
    Obj {
        fields: Option<Arc<Vec<(Alts, usize)>>>,
        prop: usize,
        phase: Phase,
    },
    Arr {
        item: usize,
        phase: Phase,
    },
}

/// Matching state of one sequence.
#[derive(Debug, Clone)]
pub struct JsonMatcher {
    g: Arc<JsonGrammar>,
    stack: Vec<Frame>,
    ws: u8,
    started: bool,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

fn all_live(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

impl JsonMatcher {
    pub fn new(g: Arc<JsonGrammar>) -> Self {
        let root = g.root;
        JsonMatcher {
            g,
            stack: vec![Frame::Value(root)],
            ws: 0,
            started: false,
        }
    }

    /// The top-level value is finished; only end of generation may follow.
    pub fn is_complete(&self) -> bool {
        if !self.started {
            return false;
        }
        match self.stack.as_slice() {
            [] => true,
            [Frame::Num { state, .. }] => state.complete(),
            [Frame::Lit { alts, live, pos }] => Self::lit_complete(alts, *live, *pos),
            _ => false,
        }
    }

    fn lit_complete(alts: &[Vec<u8>], live: u64, pos: usize) -> bool {
        alts.iter()
            .enumerate()
            .any(|(i, a)| live >> i & 1 == 1 && a.len() == pos)
    }

    /// Feeds `bytes`; `false` (the state is then unusable) when they cannot continue a valid value.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.byte(b))
    }

    /// The frame that a value of `node` starting with byte `b` opens, or `None` if `b` cannot start it.
    fn open(&self, node: usize, b: u8) -> Option<Frame> {
        let lit = |alts: &Alts| Frame::Lit {
            alts: alts.clone(),
            live: all_live(alts.len()),
            pos: 0,
        };
        Some(match (&self.g.nodes[node], b) {
            (Node::Any | Node::Object(None), b'{') => Frame::Obj {
                fields: None,
                prop: 0,
                phase: Phase::Start,
            },
            (Node::Object(Some(f)), b'{') => Frame::Obj {
                fields: Some(f.clone()),
                prop: 0,
                phase: Phase::Start,
            },
            (Node::Any, b'[') => Frame::Arr {
                item: ANY,
                phase: Phase::Start,
            },
            (Node::Array(item), b'[') => Frame::Arr {
                item: *item,
                phase: Phase::Start,
            },
            (Node::Any | Node::String, b'"') => Frame::Str { escape: 0 },
            (Node::Any, b'-' | b'0'..=b'9') => Frame::Num {
                state: Num::Start,
                integer: false,
            },
            (Node::Number { integer }, b'-' | b'0'..=b'9') => Frame::Num {
                state: Num::Start,
                integer: *integer,
            },
            (Node::Any, b't' | b'f' | b'n') => lit(&self.g.words),
            (Node::Literal(alts), _) => lit(alts),
            _ => return None,
        })
    }

    fn byte(&mut self, b: u8) -> bool {
        let ws = is_ws(b);
        if !ws {
            self.ws = 0;
        }
        // A frame that ends without consuming `b` pops and lets its parent see `b`.
        loop {
            let Some(top) = self.stack.last_mut() else {
                return false;
            };
            match top {
                Frame::Value(node) => {
                    let node = *node;
                    if ws {
                        // No whitespace before the top-level value: the model would pad forever.
                        return self.started && self.space();
                    }
                    let Some(frame) = self.open(node, b) else {
                        return false;
                    };
                    self.started = true;
                    self.stack.pop();
                    let reparse = matches!(frame, Frame::Num { .. } | Frame::Lit { .. });
                    self.stack.push(frame);
                    if !reparse {
                        return true;
                    }
                }
                Frame::Lit { alts, live, pos } => {
                    let p = *pos;
                    let mut next = 0u64;
                    for (i, a) in alts.iter().enumerate() {
                        if *live >> i & 1 == 1 && a.get(p) == Some(&b) {
                            next |= 1 << i;
                        }
                    }
                    if next != 0 {
                        *live = next;
                        *pos += 1;
                        return true;
                    }
                    if !Self::lit_complete(alts, *live, p) {
                        return false;
                    }
                    self.stack.pop();
                }
                Frame::Str { escape } => {
                    *escape = match (*escape, b) {
                        (0, b'"') => {
                            self.stack.pop();
                            return true;
                        }
                        (0, b'\\') => 1,
                        (0, c) if c < 0x20 => return false,
                        (0, _) => 0,
                        (1, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 0,
                        (1, b'u') => 2,
                        (5, c) if c.is_ascii_hexdigit() => 0,
                        (e @ 2..=4, c) if c.is_ascii_hexdigit() => e + 1,
                        _ => return false,
                    };
                    return true;
                }
                Frame::Num { state, integer } => match state.next(b, *integer) {
                    Some(s) => {
                        *state = s;
                        return true;
                    }
                    None if state.complete() => {
                        self.stack.pop();
                    }
                    None => return false,
                },
                Frame::Obj {
                    fields,
                    prop,
                    phase,
                } => {
                    if ws {
                        return self.space();
                    }
                    let n = fields.as_ref().map(|f| f.len());
                    let more = n.is_none_or(|n| *prop < n);
                    match (*phase, b) {
                        (Phase::Start, b'}') if n.is_none_or(|n| n == 0) => {
                            self.stack.pop();
                        }
                        (Phase::AfterValue, b'}') if !more || n.is_none() => {
                            self.stack.pop();
                        }
                        (Phase::AfterValue, b',') if more => *phase = Phase::AfterComma,
                        (Phase::Start | Phase::AfterComma, _) if more => {
                            *phase = Phase::Colon;
                            let key = match fields {
                                Some(f) => {
                                    let alts = f[*prop].0.clone();
                                    Frame::Lit {
                                        live: 1,
                                        pos: 0,
                                        alts,
                                    }
                                }
                                None if b == b'"' => Frame::Value(ANY),
                                None => return false,
                            };
                            let key = match key {
                                Frame::Value(_) => Frame::Str { escape: 0 },
                                k => k,
                            };
                            let reparse = matches!(key, Frame::Lit { .. });
                            self.stack.push(key);
                            if reparse {
                                continue;
                            }
                        }
                        (Phase::Colon, b':') => {
                            *phase = Phase::AfterValue;
                            let value = match fields {
                                Some(f) => f[*prop].1,
                                None => ANY,
                            };
                            *prop += 1;
                            self.stack.push(Frame::Value(value));
                        }
                        _ => return false,
                    }
                    return true;
                }
                Frame::Arr { item, phase } => {
                    if ws {
                        return self.space();
                    }
                    match (*phase, b) {
                        (Phase::Start | Phase::AfterValue, b']') => {
                            self.stack.pop();
                            return true;
                        }
                        (Phase::AfterValue, b',') => {
                            *phase = Phase::AfterComma;
                            return true;
                        }
                        (Phase::Start | Phase::AfterComma, _) => {
                            *phase = Phase::AfterValue;
                            let item = *item;
                            self.stack.push(Frame::Value(item));
                        }
                        _ => return false,
                    }
                }
            }
        }
    }

    fn space(&mut self) -> bool {
        if self.ws >= MAX_WS {
            return false;
        }
        self.ws += 1;
        true
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

    #[test]
    fn any_object() {
        let g = JsonGrammar::object();
        for ok in [
            r#"{}"#,
            r#"{"a": 1, "b": [true, null, -2.5e3, "x\"y\u00e9"], "c": {"d": {}}}"#,
            "{ \"k\" : [ ] }",
        ] {
            assert!(accepts(&g, ok), "{ok}");
        }
        for bad in [
            r#"[]"#,
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":tru}"#,
            r#"{"a":01}"#,
            "{\"a\":\"\n\"}",
            r#"{} x"#,
        ] {
            assert!(!accepts(&g, bad), "{bad}");
        }
        // Prefixes are alive but not complete.
        let mut m = JsonMatcher::new(g.clone());
        assert!(m.feed(br#"{"a": [1, fa"#) && !m.is_complete());
    }

    #[test]
    fn schema_shapes_the_value() {
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
        // serde_json orders keys; every property is produced in that order.
        assert!(accepts(
            &g,
            r#"{"age": 3, "name": "x", "ok": false, "tags": ["a","b"]}"#
        ));
        assert!(!accepts(
            &g,
            r#"{"age": 3.5, "name": "x", "ok": false, "tags": []}"#
        ));
        assert!(!accepts(
            &g,
            r#"{"age": 3, "name": "x", "ok": false, "tags": ["c"]}"#
        ));
        assert!(!accepts(&g, r#"{"age": 3, "name": "x"}"#));
        assert!(!accepts(
            &g,
            r#"{"name": "x", "age": 3, "ok": true, "tags": []}"#
        ));
        assert!(JsonGrammar::from_schema(&json!({"anyOf": []})).is_err());
        let n = JsonGrammar::from_schema(&json!({"type": "number"})).unwrap();
        assert!(accepts(&n, "-12.5"));
        assert!(!accepts(&n, "-"));
    }
}
