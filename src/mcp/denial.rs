//! Why the gateway refused a request, as one value: the HTTP status the client sees, the JSON-RPC
//! error code, the stable reason (in `error.data.reason`, in the audit line and as the metric label)
//! and the message all come from a [`Denial`], so they cannot drift apart. `Gateway::refuse` is the
//! one place a denial is audited, counted and answered.

use std::borrow::Cow;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use super::jsonrpc::code;
use super::respond::{self, Body};
use crate::runtime::snapshot::AuthFailure;

/// A request the hub answers itself, before (or instead of) any upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No, a bad, a revoked or a misplaced token.
    Auth(AuthFailure),
    /// The request names another host than the gateway's.
    HostMismatch,
    /// A browser origin not in `gateway.allowed_origins`.
    OriginNotAllowed,
    /// Not the MCP endpoint's path.
    WrongPath,
    /// Not POST, GET or DELETE.
    MethodNotAllowed,
    /// A POST that is not `application/json`.
    UnsupportedMediaType,
    /// The body did not arrive within `gateway.client_timeout_ms`.
    ClientTimeout,
    /// The body is larger than `gateway.max_body_bytes`.
    BodyTooLarge,
    /// The body broke off.
    BodyReadError,
    /// The body is not JSON.
    ParseError(String),
    /// The body is JSON but not JSON-RPC.
    InvalidRequest(String),
    /// The MCP metadata headers disagree with the body.
    HeaderMismatch(String),
    /// A session id not sealed for this token (another token's, forged, or expired).
    SessionNotFound,
    /// A header the upstream request cannot carry.
    BadHeader(String),
}

impl Denial {
    /// This denial, answering the request with `id`.
    pub fn to(self, id: Value) -> Refused {
        Refused { denial: self, id }
    }

    /// Stable reason code: `error.data.reason`, the audit line's `reason` and the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Auth(f) => f.as_str(),
            Self::HostMismatch => "host_mismatch",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::WrongPath => "wrong_path",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ClientTimeout => "client_timeout",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyReadError => "body_read_error",
            Self::ParseError(_) => "parse_error",
            Self::InvalidRequest(_) => "invalid_request",
            Self::HeaderMismatch(_) => "header_mismatch",
            Self::SessionNotFound => "session_not_found",
            Self::BadHeader(_) => "bad_header",
        }
    }

    /// The HTTP status. Every authentication failure is 401, never 404/405, which make clients fall
    /// back to the old transport instead of reporting the bad token.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::HostMismatch => StatusCode::MISDIRECTED_REQUEST,
            Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::WrongPath | Self::SessionNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyReadError
            | Self::ParseError(_)
            | Self::InvalidRequest(_)
            | Self::HeaderMismatch(_)
            | Self::BadHeader(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            Self::Auth(_) => code::UNAUTHORIZED,
            Self::ParseError(_) => code::PARSE_ERROR,
            Self::HeaderMismatch(_) => code::HEADER_MISMATCH,
            Self::SessionNotFound => code::SESSION_NOT_FOUND,
            _ => code::INVALID_REQUEST,
        }
    }

    /// What the agent is told. Never internals or secrets.
    fn message(&self, gw: &crate::config::GatewaySettings) -> Cow<'static, str> {
        match self {
            Self::Auth(AuthFailure::Missing) => {
                "missing bearer token; send Authorization: Bearer $YOUR_MCP_SECRET".into()
            }
            Self::Auth(AuthFailure::InQuery) => {
                "tokens are not accepted in the URL; send Authorization: Bearer".into()
            }
            Self::Auth(_) => "invalid, revoked or misplaced token".into(),
            Self::HostMismatch => format!("this connection serves {} only", gw.host).into(),
            Self::OriginNotAllowed => {
                "Origin not allowed; add it to gateway.allowed_origins if a browser must call the hub"
                    .into()
            }
            Self::WrongPath => format!("no MCP endpoint here; use {}", gw.url).into(),
            Self::MethodNotAllowed => {
                "method not allowed; the MCP endpoint accepts POST, GET and DELETE".into()
            }
            Self::UnsupportedMediaType => {
                "POST bodies must be Content-Type: application/json".into()
            }
            Self::ClientTimeout => "request body not received in time".into(),
            Self::BodyTooLarge => {
                format!("request body larger than {} bytes", gw.max_body_bytes).into()
            }
            Self::BodyReadError => "request body could not be read".into(),
            Self::SessionNotFound => "Session not found".into(),
            Self::ParseError(m)
            | Self::InvalidRequest(m)
            | Self::HeaderMismatch(m)
            | Self::BadHeader(m) => m.clone().into(),
        }
    }

    /// The response: a JSON-RPC error for `id`, with the headers the status calls for.
    pub fn render(&self, id: Value, gw: &crate::config::GatewaySettings) -> Response<Body> {
        let mut r = respond::error(
            self.status(),
            id,
            self.code(),
            self.message(gw),
            self.reason(),
        );
        let h = r.headers_mut();
        match self {
            Self::Auth(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Self::MethodNotAllowed => {
                h.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            }
            _ => {}
        }
        r
    }
}

/// A denial and the JSON-RPC id it answers (`null` when it is not about one request).
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub denial: Denial,
    /// The id of the request refused, or `null`.
    pub id: Value,
}

impl From<Denial> for Refused {
    fn from(denial: Denial) -> Self {
        Self {
            denial,
            id: Value::Null,
        }
    }
}
