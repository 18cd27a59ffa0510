//! Errors as OpenAI clients expect them: a status code and
//! `{"error": {"message", "type", "param", "code"}}`. The message is one line.

use crate::error::Error;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let code = e.code();
        let status = match code {
            "node_not_found" => StatusCode::NOT_FOUND,
            "name_taken" | "ambiguous_name" => StatusCode::CONFLICT,
            "context_overflow" => return ApiError::bad_request("context_length_exceeded", one_line(&e.to_string())),
            "invalid"
            | "bad_sampling"
            | "bad_token"
            | "state_model_mismatch"
            | "chat_template"
            | "tokenizer"
            | "invalid_name"
            | "invalid_tag"
            | "bad_bundle"
            // Like a prompt past the context: this request cannot be served as it is, and a 5xx
            // would make OpenAI's clients retry it at once, to the same answer.
            | "out_of_memory" => StatusCode::BAD_REQUEST,
            "cancelled" => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "no_model" | "engine_stopped" => StatusCode::SERVICE_UNAVAILABLE,
            c if c.starts_with("state_") || c == "not_a_state_file" => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, code, one_line(&e.to_string()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.code,
            }
        });
        (self.status, Json(body)).into_response()
    }
}

/// Collapses line breaks and runs of spaces (library errors can quote SQL).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
