//! Every way the agent gateway refuses a request, and how each is answered: in the error shape of the
//! provider the client speaks, because SDKs and Claude Code show those errors to their user (and retry
//! a 429 by its `retry-after`).

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::body::{Body, full};
use crate::runtime::snapshot::AuthFailure;

/// Whose error shape a client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"type":"error","error":{"type":…,"message":…}}`.
    Anthropic,
    /// `{"error":{"message":…,"type":…,"code":…}}` (also Azure OpenAI and most others).
    OpenAi,
    /// `{"error":{"code":…,"message":…,"status":…}}`.
    Google,
}

/// A refusal by the hub; nothing of the request reached the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No valid token (401).
    Auth(AuthFailure),
    /// The devbox's network policy does not allow the agent gateway (403).
    PolicyForbids,
    /// A path with dot segments or encoded slashes, which an upstream could resolve outside the
    /// configured base path (400).
    InvalidPath,
    /// Not in the config's `allowed_paths` (403).
    PathNotAllowed,
    /// The body's `model` is not in `allowed_models` (403).
    ModelNotAllowed(String),
    /// `allowed_models` is set and the body's `model` cannot be read unambiguously (400).
    UnreadableModel,
    /// The body exceeds `agent_gateway.max_body_bytes` (413).
    BodyTooLarge(usize),
    /// The client stopped sending its body, or broke it off (400).
    BodyFailed,
    /// `max_requests_per_minute` reached (429).
    RateLimited {
        /// Seconds until a request will be admitted again.
        retry_after: u64,
    },
    /// `max_tokens_per_day` reached (429).
    TokenBudget {
        /// Seconds until the budget resets (UTC midnight).
        retry_after: u64,
    },
    /// The upstream could not be reached or broke the exchange before its response head (502).
    UpstreamFailed(&'static str),
    /// No response head within `idle_timeout_ms` (504).
    UpstreamTimeout,
}

impl Refusal {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::PolicyForbids | Self::PathNotAllowed | Self::ModelNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            Self::InvalidPath | Self::UnreadableModel | Self::BodyFailed => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } | Self::TokenBudget { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Stable snake_case reason for audit lines, metrics and the error body.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Auth(f) => f.as_str(),
            Self::PolicyForbids => "agent_gateway_not_allowed",
            Self::InvalidPath => "invalid_path",
            Self::PathNotAllowed => "path_not_allowed",
            Self::ModelNotAllowed(_) => "model_not_allowed",
            Self::UnreadableModel => "unreadable_model",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::BodyFailed => "body_incomplete",
            Self::RateLimited { .. } => "rate_limited",
            Self::TokenBudget { .. } => "token_budget_exhausted",
            Self::UpstreamFailed(r) => r,
            Self::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// What the client is told. Never a secret, a token or an upstream's internals.
    fn message(&self, config: Option<&str>) -> String {
        let api = config.map_or_else(|| "the upstream API".to_string(), |c| format!("{c:?}"));
        match self {
            Self::Auth(AuthFailure::InQuery) => "mcp-hub: credentials in the URL are refused; send the token from ENV (e.g. $ANTHROPIC) as x-api-key or Authorization: Bearer".into(),
            Self::Auth(AuthFailure::Missing) => "mcp-hub: no API key; send the token from the devbox's gateway binding (e.g. $ANTHROPIC) as x-api-key or Authorization: Bearer".into(),
            Self::Auth(_) => "mcp-hub: invalid API key for the agent gateway (unknown, revoked or rotated token, or used from another devbox)".into(),
            Self::PolicyForbids => "mcp-hub: this devbox's network policy does not allow the agent gateway (allow_agent_gateway)".into(),
            Self::InvalidPath => "mcp-hub: the path has dot segments or encoded slashes".into(),
            Self::PathNotAllowed => format!("mcp-hub: this method and path are not in {api}'s allowed_paths"),
            Self::ModelNotAllowed(m) => format!("mcp-hub: model {m:?} is not in {api}'s allowed_models"),
            Self::UnreadableModel => format!("mcp-hub: {api} allows only some models, and this body's \"model\" cannot be read (not a JSON object, or \"model\" given twice)"),
            Self::BodyTooLarge(n) => format!("mcp-hub: request body larger than {n} bytes (agent_gateway.max_body_bytes)"),
            Self::BodyFailed => "mcp-hub: the request body was not received completely".into(),
            Self::RateLimited { retry_after } => format!("mcp-hub: this binding's max_requests_per_minute is reached; retry in {retry_after} s"),
            Self::TokenBudget { retry_after } => format!("mcp-hub: this binding's max_tokens_per_day is used up; it resets in {retry_after} s (UTC midnight)"),
            Self::UpstreamFailed(_) => format!("mcp-hub: {api} could not be reached or broke the exchange"),
            Self::UpstreamTimeout => format!("mcp-hub: {api} sent no response within agent_gateway.idle_timeout_ms"),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } | Self::TokenBudget { retry_after } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The response, in `dialect`'s error shape.
    pub fn respond(&self, dialect: Dialect, config: Option<&str>) -> Response<Body> {
        let status = self.status();
        let message = self.message(config);
        let reason = self.reason();
        let body = match dialect {
            Dialect::Anthropic => json!({
                "type": "error",
                "error": {"type": anthropic_type(status), "message": message},
                "reason": reason,
            }),
            Dialect::OpenAi => json!({
                "error": {"message": message, "type": openai_type(status), "param": null, "code": reason},
            }),
            Dialect::Google => json!({
                "error": {"code": status.as_u16(), "message": message, "status": google_status(status), "reason": reason},
            }),
        };
        let mut r = Response::new(full(serde_json::to_vec(&body).unwrap_or_default()));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-hub-reason", HeaderValue::from_static(reason));
        if let Some(s) = self.retry_after() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s.max(1)));
        }
        if status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn anthropic_type(s: StatusCode) -> &'static str {
    match s.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

fn openai_type(s: StatusCode) -> &'static str {
    match s.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn google_status(s: StatusCode) -> &'static str {
    match s.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        429 => "RESOURCE_EXHAUSTED",
        504 => "DEADLINE_EXCEEDED",
        400..=499 => "INVALID_ARGUMENT",
        _ => "UNAVAILABLE",
    }
}
