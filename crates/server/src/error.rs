//! The server's one error type, answered in OpenAI's JSON error shape. Messages say what to change
//! in the request; engine internals (paths, library wording) never reach the client, they go to the
//! log instead.
use autodidact_engine::EngineError;
use autodidact_store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`, …
    pub kind: &'static str,
    /// The request field at fault, as a path (`messages[2].content`).
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    pub fn param(mut self, p: impl Into<String>) -> Self {
        self.param = Some(p.into());
        self
    }

    pub fn code(mut self, c: &'static str) -> Self {
        self.code = Some(c);
        self
    }

    pub fn status(mut self, s: StatusCode) -> Self {
        self.status = s;
        self
    }

    pub fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong API key: send `Authorization: Bearer <key>`".into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// A request refused for where it came from (Host, Origin), not for what it asks.
    pub fn forbidden(message: impl Into<String>, code: &'static str) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
            kind: "permission_error",
            param: None,
            code: Some(code),
        }
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::bad_request(format!(
            "the request body is larger than the {limit} bytes this server accepts; send less"
        ))
        .status(StatusCode::PAYLOAD_TOO_LARGE)
        .code("request_too_large")
    }

    /// A failure on the server's side; `detail` goes to the log, never to the client.
    pub fn internal(detail: &str) -> Self {
        log::error!("request failed: {detail}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "the server failed while generating; try again".into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The OpenAI error body, also sent as the last event of a failed stream.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::PromptTooLong { prompt, n_ctx } => ApiError::bad_request(format!(
                "the prompt is {prompt} tokens but the context holds {n_ctx}; shorten the messages"
            ))
            .param("messages")
            .code("context_length_exceeded"),
            EngineError::EmptyPrompt => {
                ApiError::bad_request("the prompt is empty").param("prompt")
            }
            // Sampling and schema checks word their messages for the request's fields.
            EngineError::BadParam(m) => ApiError::bad_request(m),
            EngineError::Store(StoreError::UnknownAdapter(name)) => {
                ApiError::bad_request(format!("no adapter named `{name}` (see GET /v1/models)"))
                    .status(StatusCode::NOT_FOUND)
                    .param("model")
                    .code("model_not_found")
            }
            EngineError::Busy => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the server is at capacity; retry after a moment".into(),
                kind: "server_error",
                param: None,
                code: Some("server_overloaded"),
            },
            e @ (EngineError::Stopped
            | EngineError::Spawn(_)
            | EngineError::Model(_)
            | EngineError::Store(_)) => ApiError::internal(&e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}
