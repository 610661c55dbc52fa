//! A small but real MCP server (streamable HTTP, revisions 2025-03-26 to 2025-11-25) used by `mcp-hub demo`
//! as the upstream behind the hub. It keeps an in-memory issue tracker and searches the hub's own bundled
//! documentation, and it insists on its bearer credential, so the demo shows injection end to end.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const SUPPORTED: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25"];
const LATEST: &str = "2025-11-25";
const CORPUS: &[(&str, &str)] = &[
    ("README.md", include_str!("../../README.md")),
    ("conf/hub.toml", include_str!("../../conf/hub.toml")),
];

#[derive(Debug, Clone)]
struct Issue {
    number: u64,
    title: String,
    body: String,
}

/// The sample server's state.
pub struct SampleServer {
    expected_auth: String,
    issues: Mutex<Vec<Issue>>,
    sessions: Mutex<HashSet<String>>,
}

impl SampleServer {
    /// A server accepting `Authorization: Bearer <secret>`.
    pub fn new(secret: &str) -> Arc<Self> {
        Arc::new(Self {
            expected_auth: format!("Bearer {secret}"),
            issues: Mutex::new(vec![Issue {
                number: 1,
                title: "Welcome to the mcp-hub demo".into(),
                body: "This issue lives in the demo upstream. The hub injected the real credential for you.".into(),
            }]),
            sessions: Mutex::new(HashSet::new()),
        })
    }

    fn tools() -> Value {
        json!([
            {"name": "github.search_code", "description": "Search the bundled mcp-hub documentation for a string",
             "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
            {"name": "github.get_issue", "description": "Get an issue by number",
             "inputSchema": {"type": "object", "properties": {"number": {"type": "integer"}}, "required": ["number"]}},
            {"name": "github.create_issue", "description": "Create an issue",
             "inputSchema": {"type": "object", "properties": {"title": {"type": "string"}, "body": {"type": "string"}}, "required": ["title"]}},
            {"name": "github.delete_repo", "description": "Delete the repository (destructive)",
             "inputSchema": {"type": "object", "properties": {}}},
        ])
    }

    fn call(&self, name: &str, args: &Value) -> Result<String, (i64, String)> {
        let mut issues = self
            .issues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match name {
            "github.search_code" => {
                let q = args
                    .get("query")
                    .and_then(Value::as_str)
                    .ok_or((-32602, "query is required".to_string()))?;
                let hits: Vec<String> = CORPUS
                    .iter()
                    .flat_map(|(path, text)| {
                        text.lines()
                            .enumerate()
                            .filter(|(_, l)| l.contains(q))
                            .map(move |(n, l)| format!("{path}:{}: {}", n + 1, l.trim()))
                    })
                    .take(20)
                    .collect();
                Ok(if hits.is_empty() {
                    format!("no matches for {q:?}")
                } else {
                    hits.join("\n")
                })
            }
            "github.get_issue" => {
                let n = args
                    .get("number")
                    .and_then(Value::as_u64)
                    .ok_or((-32602, "number is required".to_string()))?;
                issues
                    .iter()
                    .find(|i| i.number == n)
                    .map(|i| format!("#{} {}\n\n{}", i.number, i.title, i.body))
                    .ok_or((-32602, format!("issue #{n} not found")))
            }
            "github.create_issue" => {
                let title = args
                    .get("title")
                    .and_then(Value::as_str)
                    .ok_or((-32602, "title is required".to_string()))?;
                let body = args.get("body").and_then(Value::as_str).unwrap_or("");
                let number = issues.iter().map(|i| i.number).max().unwrap_or(0) + 1;
                issues.push(Issue {
                    number,
                    title: title.into(),
                    body: body.into(),
                });
                Ok(format!("created issue #{number}"))
            }
            "github.delete_repo" => {
                issues.clear();
                Ok("repository deleted".into())
            }
            other => Err((-32602, format!("Unknown tool: {other}"))),
        }
    }

    fn handle_message(&self, m: &Value, session: &mut Option<String>) -> Option<Value> {
        let id = m.get("id").cloned();
        let method = m.get("method").and_then(Value::as_str)?;
        let id = id?; // notifications: no answer
        let result = match method {
            "initialize" => {
                let asked = m
                    .pointer("/params/protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(LATEST);
                let v = if SUPPORTED.contains(&asked) {
                    asked
                } else {
                    LATEST
                };
                let mut sid = [0u8; 16];
                let _ = getrandom::fill(&mut sid);
                let sid: String = sid.iter().map(|b| format!("{b:02x}")).collect();
                self.sessions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(sid.clone());
                *session = Some(sid);
                Ok(
                    json!({"protocolVersion": v, "capabilities": {"tools": {"listChanged": false}},
                          "serverInfo": {"name": "mcp-hub-demo-github", "version": env!("CARGO_PKG_VERSION")}}),
                )
            }
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": Self::tools()})),
            "tools/call" => {
                let name = m
                    .pointer("/params/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let args = m.pointer("/params/arguments").cloned().unwrap_or(json!({}));
                self.call(name, &args)
                    .map(|t| json!({"content": [{"type": "text", "text": t}], "isError": false}))
            }
            _ => Err((-32601, format!("Method not found: {method}"))),
        };
        Some(match result {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err((code, msg)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": msg}})
            }
        })
    }

    async fn handle(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, body: Value| {
            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            r
        };
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        if !bool::from(auth.ct_eq(self.expected_auth.as_bytes())) {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid credential"}),
            );
        }
        let sid = req
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(s) = &sid {
            if !self
                .sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(s)
            {
                return reply(
                    StatusCode::NOT_FOUND,
                    json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": "Session not found"}}),
                );
            }
        }
        match *req.method() {
            Method::POST => {}
            Method::DELETE => {
                if let Some(s) = sid {
                    self.sessions
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&s);
                }
                return reply(StatusCode::OK, json!({}));
            }
            _ => {
                return reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    json!({"error": "this server has no GET stream"}),
                );
            }
        }
        let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": "body too large"}),
                );
            }
        };
        let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}}),
            );
        };
        if msg.get("method").and_then(Value::as_str) == Some("server/discover") {
            // Legacy-only server: the answer that makes modern clients fall back to `initialize`.
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"jsonrpc": "2.0", "id": msg.get("id"), "error": {"code": -32000, "message": "Bad Request: Server not initialized"}}),
            );
        }
        let mut new_session = None;
        let out = match &msg {
            Value::Array(items) => {
                let rs: Vec<Value> = items
                    .iter()
                    .filter_map(|m| self.handle_message(m, &mut new_session))
                    .collect();
                (!rs.is_empty()).then_some(Value::Array(rs))
            }
            m => self.handle_message(m, &mut new_session),
        };
        let mut r = match out {
            None => {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::ACCEPTED;
                r
            }
            Some(v) => reply(StatusCode::OK, v),
        };
        if let Some(s) = new_session.and_then(|s| header::HeaderValue::from_str(&s).ok()) {
            r.headers_mut().insert("mcp-session-id", s);
        }
        r
    }

    /// Serve on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        super::serve_http(listener, move |req| self.clone().handle(req)).await;
    }
}

/// Bind on loopback and serve in the background; returns the address.
///
/// # Errors
/// If binding fails.
pub async fn spawn(secret: &str) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = l.local_addr()?;
    tokio::spawn(SampleServer::new(secret).serve(l));
    Ok(addr)
}
