//! Stage headers: what crosses the agent gateway in each direction. Allowlists, not blocklists: a
//! header the hub does not know is dropped, so no new SDK header can carry a key (or a cookie, or a
//! forwarding hint) to the upstream, and no upstream header can set state in the devbox.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::runtime::credentials::{REDACTED, Redactor};

/// Whether a client request header is copied to the upstream. `Authorization`, `x-api-key`, `api-key`,
/// `x-goog-api-key`, `Cookie`, `Proxy-*`, `Host`, `Forwarded`/`X-Forwarded-*` and `Accept-Encoding`
/// are not (the hub reads response bodies to redact and meter them, so it asks for them unencoded).
fn forwarded_request_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "content-type"
            | "accept"
            | "user-agent"
            | "idempotency-key"
            | "traceparent"
            | "tracestate"
            | "x-request-id"
            | "x-goog-api-client"
    ) || n.starts_with("anthropic-")
        || n.starts_with("openai-")
        || n.starts_with("x-stainless-")
}

/// Whether an upstream response header is copied to the client. Framing (`content-length`,
/// `transfer-encoding`) is the hub's own: redaction can change a body's length.
fn forwarded_response_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "content-type" | "retry-after" | "request-id" | "x-request-id" | "cache-control"
    ) || n.starts_with("anthropic-")
        || n.starts_with("openai-")
        || n.starts_with("x-ratelimit-")
}

/// The request headers the upstream gets (the credential is added by the caller).
pub fn request(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (k, v) in from {
        if forwarded_request_header(k) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// The response headers the client gets, with any echo of the secret replaced.
pub fn response(from: &HeaderMap, redactor: &Redactor) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (k, v) in from {
        if !forwarded_response_header(k) {
            continue;
        }
        if redactor.contains(v.as_bytes()) {
            // SECURITY: an upstream echoing the key in a header (a debug header, an error id) must
            // not hand it to the devbox.
            out.append(k.clone(), HeaderValue::from_static(REDACTED));
        } else {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowlisted_headers_cross() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer gwh_x"),
            ("x-api-key", "gwh_x"),
            ("api-key", "gwh_x"),
            ("x-goog-api-key", "gwh_x"),
            ("cookie", "a=b"),
            ("proxy-authorization", "Basic x"),
            ("x-forwarded-for", "10.0.0.1"),
            ("accept-encoding", "gzip"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "tools-2024"),
            ("openai-organization", "org"),
            ("content-type", "application/json"),
            ("x-stainless-lang", "python"),
        ] {
            h.append(HeaderName::from_static(k), v.parse().unwrap());
        }
        let out = request(&h);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            [
                "anthropic-version",
                "anthropic-beta",
                "openai-organization",
                "content-type",
                "x-stainless-lang"
            ]
        );
    }
}
