//! Reading request bodies: `Content-Type: application/json` required (a cross-site page can send
//! `text/plain` without asking the browser first), the size limit enforced from `Content-Length`
//! before any byte is read, then the JSON read field by field so that every error names the field
//! and what it must hold, in the API's words rather than a parser's.
use crate::error::ApiError;
use crate::types::{ChatMessage, ChatRequest, CompletionRequest, ResponseFormat, SamplingFields};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde_json::{Map, Value};

/// Most stop sequences, and bytes in each (a stop longer than a reply is never met).
pub const MAX_STOPS: usize = 4;
pub const MAX_STOP_BYTES: usize = 512;

/// A POST body that is a JSON object.
pub struct JsonBody(pub Map<String, Value>);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::bad_request(format!(
                "send the body as JSON with `Content-Type: application/json` (got `{}`)",
                if ct.is_empty() { "none" } else { ct }
            ))
            .status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .code("unsupported_media_type"));
        }
        // Refuse a declared size at once instead of waiting for bytes that may never come.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.body_limit as u64) {
            return Err(ApiError::too_large(state.body_limit));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(state.body_limit)
            } else {
                ApiError::bad_request("could not read the whole request body; send it again")
                    .status(r.status())
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(JsonBody(m)),
            Ok(_) => Err(ApiError::bad_request(
                "the body must be a JSON object such as {\"model\": …, \"messages\": […]}",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "the body is not valid JSON (line {}, column {}){}",
                e.line(),
                e.column(),
                if e.is_eof() { ": it ends early" } else { "" }
            ))),
        }
    }
}

/// One JSON object being read, with its path for error messages (`messages[2]`).
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

fn wrong(path: &str, what: &str) -> ApiError {
    ApiError::bad_request(format!("`{path}` must be {what}")).param(path)
}

impl<'a> Obj<'a> {
    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A field's value; `null` counts as absent, as in OpenAI's API.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required<T>(&self, key: &str, v: Option<T>) -> Result<T, ApiError> {
        v.ok_or_else(|| {
            let p = self.at(key);
            ApiError::bad_request(format!("`{p}` is required")).param(p)
        })
    }

    fn string(&self, key: &str) -> Result<Option<String>, ApiError> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong(&self.at(key), "a string"))
            })
            .transpose()
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        self.get(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| wrong(&self.at(key), "true or false"))
            })
            .transpose()
    }

    fn number(&self, key: &str) -> Result<Option<f32>, ApiError> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| wrong(&self.at(key), "a number"))
            })
            .transpose()
    }

    fn count(&self, key: &str) -> Result<Option<u32>, ApiError> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| wrong(&self.at(key), "a whole number from 0 to 4294967295"))
            })
            .transpose()
    }

    fn object(&self, key: &str) -> Result<Option<Obj<'a>>, ApiError> {
        self.get(key)
            .map(|v| {
                v.as_object()
                    .map(|map| Obj {
                        map,
                        path: self.at(key),
                    })
                    .ok_or_else(|| wrong(&self.at(key), "an object"))
            })
            .transpose()
    }

    /// A string or a list of strings.
    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let what = "a string or a list of strings";
        self.get(key)
            .map(|v| match v {
                Value::String(s) => Ok(vec![s.clone()]),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| wrong(&self.at(key), what)),
                _ => Err(wrong(&self.at(key), what)),
            })
            .transpose()
    }
}

fn sampling(o: &Obj) -> Result<SamplingFields, ApiError> {
    let stop = o.strings("stop")?.unwrap_or_default();
    if stop.len() > MAX_STOPS {
        return Err(ApiError::bad_request(format!(
            "`stop` may hold at most {MAX_STOPS} sequences"
        ))
        .param("stop"));
    }
    if let Some(i) = stop.iter().position(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::bad_request(format!(
            "each stop sequence must be at most {MAX_STOP_BYTES} bytes"
        ))
        .param(format!("stop[{i}]")));
    }
    let seed = match o.get("seed") {
        None => None,
        // Negative seeds are common in clients; any 64-bit integer picks a stream.
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_i64().map(|x| x as u64))
                .ok_or_else(|| wrong("seed", "a whole number"))?,
        ),
    };
    let include_usage = match o.object("stream_options")? {
        Some(so) => so.boolean("include_usage")?.unwrap_or(false),
        None => false,
    };
    Ok(SamplingFields {
        max_tokens: match o.count("max_completion_tokens")? {
            Some(m) => Some(m),
            None => o.count("max_tokens")?,
        },
        temperature: o.number("temperature")?,
        top_p: o.number("top_p")?,
        top_k: o.count("top_k")?,
        min_p: o.number("min_p")?,
        repeat_penalty: o.number("repeat_penalty")?,
        frequency_penalty: o.number("frequency_penalty")?,
        presence_penalty: o.number("presence_penalty")?,
        seed,
        stop,
        n: o.count("n")?,
        ignore_eos: o.boolean("ignore_eos")?.unwrap_or(false),
        stream: o.boolean("stream")?.unwrap_or(false),
        include_usage,
        adapter: o.string("adapter")?,
    })
}

/// A message's content: a string, or a list of parts of which the text ones count.
fn content(m: &Obj) -> Result<String, ApiError> {
    let path = m.at("content");
    match m.get("content") {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let Some(map) = p.as_object() else {
                    return Err(wrong(&format!("{path}[{j}]"), "an object with `type`"));
                };
                let part = Obj {
                    map,
                    path: format!("{path}[{j}]"),
                };
                let kind = part.string("type")?;
                if part.required("type", kind)? == "text" {
                    text.push_str(&part.string("text")?.unwrap_or_default());
                }
            }
            Ok(text)
        }
        Some(_) => Err(wrong(&path, "a string or a list of content parts")),
    }
}

impl ChatRequest {
    pub fn from_json(map: &Map<String, Value>) -> Result<Self, ApiError> {
        let o = Obj {
            map,
            path: String::new(),
        };
        let model = o.string("model")?;
        let model = o.required("model", model)?;
        let list = o
            .get("messages")
            .map(|v| {
                v.as_array()
                    .ok_or_else(|| wrong("messages", "a list of messages"))
            })
            .transpose()?;
        let list = o.required("messages", list)?;
        let mut messages = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let path = format!("messages[{i}]");
            let Some(map) = m.as_object() else {
                return Err(wrong(&path, "an object with `role` and `content`"));
            };
            let m = Obj { map, path };
            let role = m.string("role")?;
            messages.push(ChatMessage {
                role: m.required("role", role)?,
                content: content(&m)?,
            });
        }
        let response_format = match o.object("response_format")? {
            None => None,
            Some(rf) => {
                let kind = rf.string("type")?;
                let schema = match rf.object("json_schema")? {
                    Some(js) => js.get("schema").cloned(),
                    None => None,
                };
                Some(ResponseFormat {
                    kind: rf.required("type", kind)?,
                    schema,
                })
            }
        };
        let truncate = match o.string("truncation")?.as_deref() {
            None => None,
            Some("auto") => Some(true),
            Some("disabled") => Some(false),
            Some(_) => return Err(wrong("truncation", "`auto` or `disabled`")),
        };
        Ok(ChatRequest {
            model,
            messages,
            logprobs: o.boolean("logprobs")?.unwrap_or(false),
            top_logprobs: o.count("top_logprobs")?,
            response_format,
            truncate,
            user: o.string("user")?,
            memory: o.boolean("memory")?,
            conversation: o.string("conversation_id")?,
            sampling: sampling(&o)?,
        })
    }
}

impl CompletionRequest {
    pub fn from_json(map: &Map<String, Value>) -> Result<Self, ApiError> {
        let o = Obj {
            map,
            path: String::new(),
        };
        let model = o.string("model")?;
        let prompts = o.strings("prompt")?;
        let logprobs = match o.get("logprobs") {
            // Some clients send the chat endpoint's boolean here.
            Some(Value::Bool(false)) => None,
            _ => o.count("logprobs")?,
        };
        Ok(CompletionRequest {
            model: o.required("model", model)?,
            prompts: o.required("prompt", prompts)?,
            logprobs,
            echo: o.boolean("echo")?.unwrap_or(false),
            sampling: sampling(&o)?,
        })
    }
}
