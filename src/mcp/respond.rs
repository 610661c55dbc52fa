//! The one place hub-made responses are built. Bodies are JSON-RPC errors with a clear message and a
//! stable `reason`; they never include internals or secrets.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use serde_json::{Value, json};

use super::jsonrpc;

pub use crate::body::{Body, BoxError, full};

/// A JSON response.
pub fn json(status: StatusCode, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON-RPC error response with an HTTP status and a stable reason code in `error.data.reason`.
pub fn error(
    status: StatusCode,
    id: Value,
    code: i64,
    message: impl Into<String>,
    reason: &str,
) -> Response<Body> {
    json(
        status,
        &jsonrpc::error(id, code, message, Some(json!({"reason": reason}))),
    )
}

/// 202 with no body.
pub fn accepted() -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}
