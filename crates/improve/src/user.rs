//! User skills: a TOML or JSON file in the skills directory — a prompt template, example inputs
//! and a verifier (exact, contains, regex, JSON schema, or an external command) — through which
//! a person teaches their assistant something new. Bad files are errors that name the field.
use crate::task::{degenerate, Check, Task, Verdict};
use crate::ImproveError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum UserVerifier {
    /// The reply, trimmed, equals the template filled in (case-insensitive unless asked).
    Exact {
        expect: String,
        case_sensitive: bool,
    },
    Contains {
        expect: String,
        case_sensitive: bool,
    },
    Regex {
        pattern: String,
    },
    JsonSchema {
        schema: Value,
    },
    /// The reply on stdin, the example's fields as JSON in `AUTODIDACT_FIELDS`; exit 0 passes.
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserSkill {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    pub prompt: String,
    pub max_tokens: usize,
    /// Whether the examples' answers may serve as few-shot demonstrations.
    pub scaffold_from_examples: bool,
    pub verifier: UserVerifier,
    pub examples: Vec<BTreeMap<String, String>>,
}

fn bad(path: &Path, field: &str, reason: impl Into<String>) -> ImproveError {
    ImproveError::BadSkill {
        path: path.to_path_buf(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// `{field}` placeholders of a template.
fn placeholders(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        match rest[i + 1..].find('}') {
            Some(j) => {
                let name = &rest[i + 1..i + 1 + j];
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    out.push(name.to_string());
                }
                rest = &rest[i + 1 + j..];
            }
            None => break,
        }
    }
    out
}

pub fn fill(t: &str, fields: &BTreeMap<String, String>) -> String {
    let mut s = t.to_string();
    for (k, v) in fields {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

impl UserSkill {
    /// Reads a skill file (`.toml` or `.json`).
    pub fn load(path: &Path) -> Result<UserSkill, ImproveError> {
        let text = std::fs::read_to_string(path).map_err(|e| ImproveError::io(path, e))?;
        let v: Value = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| bad(path, "(file)", e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| bad(path, "(file)", e.message().to_string()))?
        };
        Self::from_value(path, &v)
    }

    pub fn from_value(path: &Path, v: &Value) -> Result<UserSkill, ImproveError> {
        let obj = v
            .as_object()
            .ok_or_else(|| bad(path, "(file)", "must be a table of fields"))?;
        const KNOWN: &[&str] = &[
            "name",
            "description",
            "prompt",
            "max_tokens",
            "scaffold",
            "verifier",
            "examples",
        ];
        if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(bad(
                path,
                k,
                format!("unknown field (known: {})", KNOWN.join(", ")),
            ));
        }
        let string =
            |field: &str, o: &serde_json::Map<String, Value>, full: &str| match o.get(field) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(_) => Err(bad(path, full, "must be a non-empty string")),
                None => Err(bad(path, full, "is missing")),
            };
        let name = string("name", obj, "name")?;
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || ["arithmetic", "instructions", "extract", "recall"].contains(&name.as_str())
        {
            return Err(bad(
                path,
                "name",
                "use letters, digits, '-' or '_', and not a built-in skill's name",
            ));
        }
        let description = match obj.get("description") {
            None => String::new(),
            Some(_) => string("description", obj, "description")?,
        };
        let prompt = string("prompt", obj, "prompt")?;
        let max_tokens = match obj.get("max_tokens") {
            None => 64,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(n @ 1..=2048) => n as usize,
                _ => return Err(bad(path, "max_tokens", "must be an integer in 1..=2048")),
            },
            Some(_) => return Err(bad(path, "max_tokens", "must be an integer")),
        };
        let scaffold_from_examples = match obj.get("scaffold").and_then(Value::as_str) {
            None if obj.get("scaffold").is_none() => true,
            Some("examples") => true,
            Some("none") => false,
            _ => return Err(bad(path, "scaffold", "must be \"examples\" or \"none\"")),
        };
        let vo = match obj.get("verifier") {
            Some(Value::Object(o)) => o,
            Some(_) => return Err(bad(path, "verifier", "must be a table")),
            None => return Err(bad(path, "verifier", "is missing")),
        };
        let case_sensitive = match vo.get("case_sensitive") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(bad(
                    path,
                    "verifier.case_sensitive",
                    "must be true or false",
                ))
            }
        };
        let kind = string("kind", vo, "verifier.kind")?;
        let verifier = match kind.as_str() {
            "exact" => UserVerifier::Exact {
                expect: string("expect", vo, "verifier.expect")?,
                case_sensitive,
            },
            "contains" => UserVerifier::Contains {
                expect: string("expect", vo, "verifier.expect")?,
                case_sensitive,
            },
            "regex" => {
                let pattern = string("pattern", vo, "verifier.pattern")?;
                fancy_regex::Regex::new(&pattern)
                    .map_err(|e| bad(path, "verifier.pattern", e.to_string()))?;
                UserVerifier::Regex { pattern }
            }
            "json_schema" => match vo.get("schema") {
                Some(s @ Value::Object(_)) => UserVerifier::JsonSchema { schema: s.clone() },
                _ => {
                    return Err(bad(
                        path,
                        "verifier.schema",
                        "must be a table (a JSON schema)",
                    ))
                }
            },
            "command" => {
                let argv: Vec<String> = match vo.get("command") {
                    Some(Value::Array(a)) if !a.is_empty() => a
                        .iter()
                        .map(|x| x.as_str().map(String::from))
                        .collect::<Option<_>>()
                        .ok_or_else(|| {
                            bad(path, "verifier.command", "must be a list of strings")
                        })?,
                    _ => {
                        return Err(bad(
                            path,
                            "verifier.command",
                            "must be a non-empty list of strings (program and arguments)",
                        ))
                    }
                };
                let timeout = match vo.get("timeout_s") {
                    None => 10.0,
                    Some(Value::Number(n)) => match n.as_f64() {
                        Some(t) if t > 0.0 && t <= 600.0 => t,
                        _ => return Err(bad(path, "verifier.timeout_s", "must be in (0, 600]")),
                    },
                    Some(_) => return Err(bad(path, "verifier.timeout_s", "must be a number")),
                };
                UserVerifier::Command {
                    argv,
                    timeout: Duration::from_secs_f64(timeout),
                }
            }
            other => {
                return Err(bad(
                    path,
                    "verifier.kind",
                    format!("{other:?} is not one of exact, contains, regex, json_schema, command"),
                ))
            }
        };
        let examples = match obj.get("examples") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            _ => return Err(bad(path, "examples", "must be a non-empty list of tables")),
        };
        let mut ex = Vec::new();
        for (i, e) in examples.iter().enumerate() {
            let o = e
                .as_object()
                .ok_or_else(|| bad(path, &format!("examples[{i}]"), "must be a table"))?;
            let mut m = BTreeMap::new();
            for (k, v) in o {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(bad(
                            path,
                            &format!("examples[{i}].{k}"),
                            "must be a string, number or boolean",
                        ))
                    }
                };
                m.insert(k.clone(), s);
            }
            let mut needed = placeholders(&prompt);
            if let UserVerifier::Exact { expect, .. } | UserVerifier::Contains { expect, .. } =
                &verifier
            {
                needed.extend(placeholders(expect));
            }
            if let Some(f) = needed.iter().find(|f| !m.contains_key(*f)) {
                return Err(bad(
                    path,
                    &format!("examples[{i}].{f}"),
                    "is missing (the prompt or verifier uses it)",
                ));
            }
            ex.push(m);
        }
        Ok(UserSkill {
            name,
            description,
            path: path.to_path_buf(),
            prompt,
            max_tokens,
            scaffold_from_examples,
            verifier,
            examples: ex,
        })
    }

    /// Examples held out for evaluation: every fourth (none with fewer than four examples).
    pub fn is_eval_example(&self, i: usize) -> bool {
        self.examples.len() >= 4 && i % 4 == 3
    }

    pub fn task(&self, i: usize) -> Task {
        let fields = self.examples[i].clone();
        Task {
            skill: self.name.clone(),
            level: 0,
            sub: "default".into(),
            key: serde_json::to_string(&fields).expect("string maps serialize"),
            prompt: fill(&self.prompt, &fields),
            check: Check::User { fields },
        }
    }

    /// The answer a demonstration may show, when the example gives one.
    pub fn reference_answer(&self, fields: &BTreeMap<String, String>) -> Option<String> {
        if !self.scaffold_from_examples {
            return None;
        }
        fields.get("answer").cloned()
    }

    pub fn verify(
        &self,
        task: &Task,
        fields: &BTreeMap<String, String>,
        reply: &str,
        cut: bool,
    ) -> Verdict {
        if let Some(d) = degenerate(&task.prompt, reply, cut, false) {
            return Verdict::degenerate(d);
        }
        let r = reply.trim();
        let fold = |s: &str, cs: bool| if cs { s.to_string() } else { s.to_lowercase() };
        let (pass, format_ok) = match &self.verifier {
            UserVerifier::Exact {
                expect,
                case_sensitive,
            } => {
                let e = fill(expect, fields);
                let p = fold(r, *case_sensitive) == fold(e.trim(), *case_sensitive);
                (p, true)
            }
            UserVerifier::Contains {
                expect,
                case_sensitive,
            } => {
                let e = fill(expect, fields);
                (
                    fold(r, *case_sensitive).contains(&fold(&e, *case_sensitive)),
                    true,
                )
            }
            UserVerifier::Regex { pattern } => {
                // The pattern with the example's fields filled in, else as written.
                let re = fancy_regex::Regex::new(&fill(pattern, fields))
                    .ok()
                    .or_else(|| fancy_regex::Regex::new(pattern).ok());
                (re.is_some_and(|re| re.is_match(r).unwrap_or(false)), true)
            }
            UserVerifier::JsonSchema { schema } => {
                match crate::extract::find_object(r).map(Value::Object) {
                    Some(v) => (schema_ok(schema, &v), true),
                    None => match serde_json::from_str::<Value>(r) {
                        Ok(v) => (schema_ok(schema, &v), true),
                        Err(_) => (false, false),
                    },
                }
            }
            UserVerifier::Command { argv, timeout } => {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                (run_command(argv, *timeout, dir, fields, r), true)
            }
        };
        Verdict {
            pass,
            score: pass as u8 as f32,
            format_ok,
            degenerate: None,
        }
    }
}

/// Runs an external verifier; a failure to start, a non-zero exit or a timeout fails the reply.
pub fn run_command(
    argv: &[String],
    timeout: Duration,
    dir: &Path,
    fields: &BTreeMap<String, String>,
    reply: &str,
) -> bool {
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .env(
            "AUTODIDACT_FIELDS",
            serde_json::to_string(fields).expect("string maps serialize"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A verifier that exits without reading its input is judged by its exit code alone.
        let _ = stdin.write_all(reply.as_bytes());
    }
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// The JSON Schema keywords a skill file needs: type, properties, required, items, enum,
/// minimum/maximum, minLength/maxLength, pattern, minItems/maxItems.
pub fn schema_ok(s: &Value, v: &Value) -> bool {
    let Some(s) = s.as_object() else {
        return true;
    };
    if let Some(t) = s.get("type") {
        let ok = |t: &str| match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.as_f64().is_some_and(|x| x.fract() == 0.0),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        };
        let any = match t {
            Value::String(t) => ok(t),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(ok),
            _ => false,
        };
        if !any {
            return false;
        }
    }
    if let Some(Value::Array(e)) = s.get("enum") {
        if !e.contains(v) {
            return false;
        }
    }
    if let Some(x) = v.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| x < m)
            || s.get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x > m)
        {
            return false;
        }
    }
    if let Some(st) = v.as_str() {
        let n = st.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            return false;
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            if !fancy_regex::Regex::new(p).is_ok_and(|re| re.is_match(st).unwrap_or(false)) {
                return false;
            }
        }
    }
    if let Some(o) = v.as_object() {
        if let Some(Value::Array(req)) = s.get("required") {
            if req
                .iter()
                .filter_map(Value::as_str)
                .any(|k| !o.contains_key(k))
            {
                return false;
            }
        }
        if let Some(Value::Object(props)) = s.get("properties") {
            for (k, sub) in props {
                if o.get(k).is_some_and(|x| !schema_ok(sub, x)) {
                    return false;
                }
            }
        }
    }
    if let Some(a) = v.as_array() {
        let n = a.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            return false;
        }
        if let Some(items) = s.get("items") {
            if a.iter().any(|x| !schema_ok(items, x)) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<UserSkill, ImproveError> {
        let v: Value = toml::from_str(toml).unwrap();
        UserSkill::from_value(Path::new("s.toml"), &v)
    }

    const GOOD: &str = r#"
name = "capitals"
prompt = "What is the capital of {country}?"
[verifier]
kind = "contains"
expect = "{answer}"
[[examples]]
country = "France"
answer = "Paris"
"#;

    #[test]
    fn a_good_file_loads_and_verifies() {
        let s = parse(GOOD).unwrap();
        let t = s.task(0);
        assert_eq!(t.prompt, "What is the capital of France?");
        let Check::User { fields } = &t.check else {
            panic!("user check")
        };
        assert!(s.verify(&t, fields, "It is paris.", false).pass);
        assert!(!s.verify(&t, fields, "Lyon", false).pass);
    }

    #[test]
    fn bad_files_name_the_field() {
        let field = |toml: &str| match parse(toml) {
            Err(ImproveError::BadSkill { field, .. }) => field,
            other => panic!("expected a bad-skill error, got {other:?}"),
        };
        assert_eq!(
            field(&GOOD.replace("kind = \"contains\"", "kind = \"magic\"")),
            "verifier.kind"
        );
        assert_eq!(
            field(&GOOD.replace("country = \"France\"", "land = \"France\"")),
            "examples[0].country"
        );
        assert_eq!(field(&GOOD.replace("prompt =", "promt =")), "promt");
        assert_eq!(
            field(&GOOD.replace("expect = \"{answer}\"", "")),
            "verifier.expect"
        );
        assert_eq!(field(&format!("max_tokens = -1\n{GOOD}")), "max_tokens");
    }

    #[test]
    fn schema_subset() {
        let s: Value = serde_json::json!({"type": "object", "required": ["a"],
            "properties": {"a": {"type": "integer", "minimum": 1}}});
        assert!(schema_ok(&s, &serde_json::json!({"a": 2})));
        assert!(!schema_ok(&s, &serde_json::json!({"a": 0})));
        assert!(!schema_ok(&s, &serde_json::json!({"b": 2})));
    }

    #[test]
    fn hanging_and_failing_commands_fail() {
        let f = BTreeMap::new();
        let sh = |c: &str| vec!["sh".to_string(), "-c".to_string(), c.to_string()];
        let t = Duration::from_millis(300);
        assert!(run_command(
            &sh("grep -q yes"),
            t,
            Path::new("."),
            &f,
            "yes"
        ));
        assert!(!run_command(
            &sh("grep -q yes"),
            t,
            Path::new("."),
            &f,
            "no"
        ));
        let start = Instant::now();
        assert!(!run_command(&sh("sleep 30"), t, Path::new("."), &f, ""));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(!run_command(
            &["/no/such/program".into()],
            t,
            Path::new("."),
            &f,
            ""
        ));
    }
}
