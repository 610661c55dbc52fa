//! `mcp-hub tools refresh`: the hub lists an upstream's tools itself, with a stored secret, so an
//! operator can review (and approve) a pinned config's tools before any agent has listed them.
//!
//! A small MCP client over the gateway's own upstream client (same trust store, timeouts and `Host`):
//! `initialize` (legacy revisions; the session id it returns is used and ended), then `tools/list`
//! page by page. An upstream that refuses `initialize` is asked again as a 2026-07-28 server (no
//! handshake, the revision and method in headers).

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::Full;
use serde_json::{Value, json};

use super::body::read_bounded;
use super::gateway::MODERN_PROTOCOL;
use super::headers::SESSION_ID;
use crate::config::{GatewaySettings, McpConfig};
use crate::sse::{self, EventSplitter};
use crate::tls::client::ClientKey;
use crate::upstream::Upstream;

/// The legacy revision the hub asks for (the server answers with the one it speaks).
const LEGACY_PROTOCOL: &str = "2025-11-25";

/// At most this many pages: an upstream whose cursors never end is an error, not a hang.
const MAX_PAGES: usize = 1000;

struct Client<'a> {
    up: Upstream,
    gw: &'a GatewaySettings,
    cfg: &'a McpConfig,
    credential: HeaderValue,
    session: Option<HeaderValue>,
    protocol: String,
    modern: bool,
}

/// Every tool `cfg`'s upstream lists, all pages, asked with `credential` (the rendered header value).
///
/// # Errors
/// What went wrong, for the operator (never the credential nor the upstream's body text).
pub async fn list_tools(
    gw: &GatewaySettings,
    cfg: &McpConfig,
    credential: HeaderValue,
) -> Result<Vec<Value>, String> {
    let up = Upstream::new(&ClientKey::of(gw)).map_err(|e| e.to_string())?;
    let mut c = Client {
        up,
        gw,
        cfg,
        credential,
        session: None,
        protocol: LEGACY_PROTOCOL.into(),
        modern: false,
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY_PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "mcp-hub tools refresh", "version": env!("CARGO_PKG_VERSION")}}});
    match c.call(&init).await {
        Ok(r) => {
            if let Some(v) = r.get("protocolVersion").and_then(Value::as_str) {
                c.protocol = v.to_string();
            }
            c.notify(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await?;
        }
        // No handshake in 2026-07-28: ask that way.
        Err(_) => {
            c.modern = true;
            c.protocol = MODERN_PROTOCOL.into();
        }
    }
    let listed = c.pages().await;
    c.end().await;
    listed
}

impl Client<'_> {
    async fn pages(&mut self) -> Result<Vec<Value>, String> {
        let mut tools = Vec::new();
        let mut cursor: Option<Value> = None;
        for page in 0..MAX_PAGES {
            let mut req = json!({"jsonrpc": "2.0", "id": 2 + page, "method": "tools/list"});
            if let Some(c) = cursor.take() {
                req["params"] = json!({"cursor": c});
            }
            let mut r = self.call(&req).await?;
            match r.get_mut("tools").map(Value::take) {
                Some(Value::Array(t)) => tools.extend(t),
                _ => {
                    return Err(format!(
                        "upstream MCP server {:?} answered tools/list without a tools array",
                        self.cfg.name
                    ));
                }
            }
            match r.get("nextCursor") {
                None | Some(Value::Null) => return Ok(tools),
                Some(c) => cursor = Some(c.clone()),
            }
        }
        Err(format!(
            "upstream MCP server {:?} listed more than {MAX_PAGES} pages of tools",
            self.cfg.name
        ))
    }

    fn request(&self, method: Method, body: Bytes, rpc: Option<&str>) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = self.cfg.endpoint.clone();
        let h = req.headers_mut();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(&self.protocol) {
            h.insert(super::headers::PROTOCOL_VERSION, v);
        }
        if let (true, Some(m)) = (self.modern, rpc) {
            if let Ok(v) = HeaderValue::from_str(m) {
                h.insert(super::headers::METHOD, v);
            }
        }
        if let Some(s) = &self.session {
            h.insert(SESSION_ID, s.clone());
        }
        h.insert(self.cfg.credential.header.clone(), self.credential.clone());
        req
    }

    fn describe(&self, what: &str) -> String {
        format!("upstream MCP server {:?} {what}", self.cfg.name)
    }

    /// Send `msg`, return the raw response head and body.
    async fn send(
        &self,
        method: Method,
        msg: Option<&Value>,
    ) -> Result<(http::response::Parts, Bytes), String> {
        let body = msg.map_or_else(Bytes::new, |m| Bytes::from(m.to_string()));
        let rpc = msg.and_then(|m| m.get("method")).and_then(Value::as_str);
        let req = self.request(method, body, rpc);
        let resp = self
            .up
            .send(req, &self.cfg.origin, self.gw.upstream_response_timeout)
            .await
            .map_err(|e| e.describe(&self.cfg.name))?;
        let (parts, mut body) = resp.into_parts();
        let bytes = read_bounded(&mut body, self.gw.max_response_bytes)
            .await
            .map_err(|_| self.describe("broke off its response or sent too much"))?;
        Ok((parts, bytes))
    }

    /// A request: its `result`, from a JSON body or the SSE event that answers it.
    async fn call(&mut self, msg: &Value) -> Result<Value, String> {
        let (parts, bytes) = self.send(Method::POST, Some(msg)).await?;
        let method = msg["method"].as_str().unwrap_or("");
        if !parts.status.is_success() {
            return Err(self.describe(&format!(
                "answered {method} with HTTP {}{}",
                parts.status.as_u16(),
                if matches!(parts.status.as_u16(), 401 | 403) {
                    " (the secret was refused)"
                } else {
                    ""
                }
            )));
        }
        if let Some(s) = parts.headers.get(SESSION_ID) {
            self.session = Some(s.clone());
        }
        let event_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().contains("text/event-stream"));
        let messages: Vec<Value> = if event_stream {
            let mut split = EventSplitter::default();
            let mut events = split
                .push(&bytes, self.gw.max_response_bytes)
                .map_err(|_| self.describe("sent an event larger than the limit"))?;
            events.extend(split.finish());
            events
                .iter()
                .filter_map(|e| sse::data(e))
                .filter_map(|d| serde_json::from_slice(&d).ok())
                .collect()
        } else {
            serde_json::from_slice(&bytes)
                .map(|v| vec![v])
                .map_err(|_| {
                    self.describe(&format!("answered {method} with a body that is not JSON"))
                })?
        };
        let answer = messages
            .into_iter()
            .find(|m| m.get("id") == msg.get("id") && m.get("method").is_none())
            .ok_or_else(|| self.describe(&format!("did not answer {method}")))?;
        if let Some(e) = answer.get("error") {
            let text = e.get("message").and_then(Value::as_str).unwrap_or("");
            let text: String = text.chars().take(200).collect();
            return Err(self.describe(&format!("answered {method} with an error: {text}")));
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| self.describe(&format!("answered {method} without a result")))
    }

    async fn notify(&self, msg: &Value) -> Result<(), String> {
        let (parts, _) = self.send(Method::POST, Some(msg)).await?;
        if parts.status.is_success() {
            Ok(())
        } else {
            Err(self.describe(&format!(
                "refused notifications/initialized with HTTP {}",
                parts.status.as_u16()
            )))
        }
    }

    /// End the session, if the upstream opened one (best effort).
    async fn end(&self) {
        if self.session.is_some() {
            let _ = self.send(Method::DELETE, None).await;
        }
    }
}
