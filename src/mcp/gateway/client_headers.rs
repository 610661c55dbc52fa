//! The client request headers the gateway's stages read, found in one pass.

use http::{HeaderMap, HeaderValue};

/// The request headers the gateway's stages decide on. A lookup by name hashes the name every time and
/// about ten stages ask, while a request carries a handful of headers: one pass over them, matching
/// each name by its text, finds every value at once.
///
/// A repeated header keeps its first value, as `HeaderMap::get` would return; `Authorization` also
/// counts its values, since a repeated one is refused.
/// SECURITY: no `Debug`: it holds the agent's token, which must never reach a log line.
#[derive(Default, Clone, Copy)]
pub(super) struct ClientHeaders<'h> {
    pub(super) authorization: Option<&'h HeaderValue>,
    pub(super) authorizations: usize,
    pub(super) host: Option<&'h HeaderValue>,
    pub(super) origin: Option<&'h HeaderValue>,
    pub(super) content_type: Option<&'h HeaderValue>,
    pub(super) protocol_version: Option<&'h HeaderValue>,
    pub(super) mcp_method: Option<&'h HeaderValue>,
    pub(super) mcp_name: Option<&'h HeaderValue>,
    pub(super) session_id: Option<&'h HeaderValue>,
}

impl<'h> ClientHeaders<'h> {
    /// Read `h` once.
    pub(super) fn of(h: &'h HeaderMap) -> Self {
        let mut s = Self::default();
        for (name, v) in h {
            let slot = match name.as_str() {
                "authorization" => {
                    s.authorizations += 1;
                    &mut s.authorization
                }
                "host" => &mut s.host,
                "origin" => &mut s.origin,
                "content-type" => &mut s.content_type,
                "mcp-protocol-version" => &mut s.protocol_version,
                "mcp-method" => &mut s.mcp_method,
                "mcp-name" => &mut s.mcp_name,
                "mcp-session-id" => &mut s.session_id,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::headers as mcp_headers;
    use http::header;

    /// Every field agrees with a lookup by name, repeated headers included.
    #[test]
    fn one_pass_agrees_with_lookups() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "mcp.hub.internal"),
            ("authorization", "Bearer a"),
            ("authorization", "Bearer b"),
            ("origin", "https://x"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "one"),
            ("mcp-name", "two"),
            ("mcp-session-id", "s"),
            ("user-agent", "test"),
        ] {
            h.append(
                http::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            );
        }
        let s = ClientHeaders::of(&h);
        assert_eq!(s.authorization, h.get(header::AUTHORIZATION));
        assert_eq!(s.authorizations, 2);
        assert_eq!(s.host, h.get(header::HOST));
        assert_eq!(s.origin, h.get(header::ORIGIN));
        assert_eq!(s.content_type, h.get(header::CONTENT_TYPE));
        // Against the project's header-name constants, so a misspelt name in `of` cannot pass.
        assert_eq!(s.protocol_version, h.get(mcp_headers::PROTOCOL_VERSION));
        assert_eq!(s.mcp_method, h.get(mcp_headers::METHOD));
        assert_eq!(s.mcp_name, h.get(mcp_headers::NAME));
        assert_eq!(s.mcp_name.map(HeaderValue::as_bytes), Some(&b"one"[..]));
        assert_eq!(s.session_id, h.get(mcp_headers::SESSION_ID));
        let empty = HeaderMap::new();
        let none = ClientHeaders::of(&empty);
        assert!(none.authorization.is_none() && none.authorizations == 0 && none.host.is_none());
    }
}
