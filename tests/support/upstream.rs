//! A recording MCP upstream. It serves a paginated tool list (2 per page), tools that echo, stream
//! progress over SSE, leak their credential, or sleep; a GET stream that announces list changes; and it
//! remembers every request it received so tests can assert on what reached it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;

type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// One request the upstream received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) version: http::Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

/// Raw SSE of the `progress` tool: priming event, comment, retry, two progress notifications, result.
pub(crate) const PROGRESS_SSE_HEAD: &str =
    "id: ev-0\ndata:\n\n: keep-alive comment\n\nretry: 1500\n\n";

#[derive(Clone)]
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
    /// Answer every request with an SSE stream instead of JSON.
    pub(crate) force_sse: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub(crate) accepted: Arc<AtomicUsize>,
    /// Closes every open connection when sent to (as a server's idle timeout or restart would).
    drop_all: tokio::sync::watch::Sender<u64>,
    https: bool,
}

impl Upstream {
    pub(crate) fn url(&self) -> String {
        if self.https {
            format!("https://localhost:{}/mcp", self.addr.port())
        } else {
            format!("http://{}/mcp", self.addr)
        }
    }

    /// Close every connection the upstream has open, from the server side.
    pub(crate) fn drop_connections(&self) {
        self.drop_all.send_modify(|n| *n += 1);
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn tool_calls(&self) -> Vec<String> {
        self.seen()
            .iter()
            .flat_map(|s| match &s.body {
                Value::Array(a) => a.clone(),
                v => vec![v.clone()],
            })
            .filter(|m| m["method"] == "tools/call")
            .map(|m| m["params"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Start with the given tool names, accepting `Authorization: <credential>`.
    pub(crate) async fn start(tools: &[&str], credential: &str) -> Self {
        Self::start_with(tools, credential, None).await
    }

    /// Like `start`, over TLS with `tls` (ALPN as the config offers) when given.
    pub(crate) async fn start_with(
        tools: &[&str],
        credential: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tools: Arc<Vec<String>> = Arc::new(tools.iter().map(|s| s.to_string()).collect());
        let cred = credential.to_string();
        let s2 = seen.clone();
        let force_sse = Arc::new(AtomicBool::new(false));
        let f2 = force_sse.clone();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a2 = accepted.clone();
        let (drop_all, drop_rx) = tokio::sync::watch::channel(0u64);
        let https = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                a2.fetch_add(1, Ordering::SeqCst);
                let (seen, tools, cred, f) = (s2.clone(), tools.clone(), cred.clone(), f2.clone());
                let (acceptor, mut dropped) = (acceptor.clone(), drop_rx.clone());
                dropped.mark_unchanged();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        handle(
                            req,
                            seen.clone(),
                            tools.clone(),
                            cred.clone(),
                            f.load(Ordering::SeqCst),
                        )
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let serve = async {
                        match acceptor {
                            Some(a) => {
                                let Ok(tls) = a.accept(tcp).await else { return };
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                            }
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        _ = dropped.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            seen,
            force_sse,
            accepted,
            drop_all,
            https,
        }
    }
}

fn full(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", ctype.parse().unwrap());
    r
}

fn sse(events: Vec<(Duration, String)>) -> Response<Body> {
    let stream = futures_util::stream::unfold(events.into_iter(), |mut it| async move {
        let (delay, ev) = it.next()?;
        tokio::time::sleep(delay).await;
        Some((
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(ev))),
            it,
        ))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r.headers_mut()
        .insert("x-accel-buffering", "no".parse().unwrap());
    r
}

/// A `tools/list` page (cursor `crafted-KIND`) listing every tool in a form a JSON tree reader cannot
/// take at face value: `dup` sends `result` twice (an empty list first, the full one last, which a
/// last-wins client reads), `utf8` puts an invalid byte in a description, `deep` adds a member nested
/// 200 deep, `huge` a number beyond `f64`.
fn crafted_list(m: &Value, tools: &[String]) -> Option<Vec<u8>> {
    if m["method"] != "tools/list" {
        return None;
    }
    let kind = m["params"]["cursor"].as_str()?.strip_prefix("crafted-")?;
    let id = &m["id"];
    let list = json!(tool_entries(tools)).to_string();
    let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{list}"#);
    let mut out = match kind {
        "dup" => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[]}},"result":{{"tools":{list}}}}}"#
        )
        .into_bytes(),
        "utf8" => {
            let mut b = format!(r#"{head},"note":""#).into_bytes();
            b.push(0xff);
            b.extend_from_slice(br#""}}"#);
            b
        }
        "deep" => format!(r#"{head},"x":{}{}}}}}"#, "[".repeat(200), "]".repeat(200)).into_bytes(),
        "huge" => format!(r#"{head},"x":1e999}}}}"#).into_bytes(),
        _ => return None,
    };
    out.shrink_to_fit();
    Some(out)
}

/// A readable `tools/list` page of every tool (cursor `crafted-ctype-KIND`) under a content type that
/// some client reads as JSON or as an event stream although it is not spelled the usual way (or, for
/// `bom-sse`, behind a byte-order mark).
fn crafted_content_type(m: &Value, tools: &[String]) -> Option<(&'static str, String)> {
    if m["method"] != "tools/list" {
        return None;
    }
    let kind = m["params"]["cursor"]
        .as_str()?
        .strip_prefix("crafted-ctype-")?;
    let msg = result(&m["id"], json!({ "tools": tool_entries(tools) })).to_string();
    let event = format!("event: message\ndata: {msg}\n\n");
    Some(match kind {
        "upper-json" => ("Application/JSON", msg),
        "json-inside" => ("text/plain; profile=application/json", msg),
        "upper-sse" => ("Text/Event-Stream", event),
        "sse-inside" => ("application/json; x=text/event-stream", event),
        // A byte-order mark before the first event, which SSE clients drop.
        "bom-sse" => ("text/event-stream", format!("\u{feff}data: {msg}\n\n")),
        _ => return None,
    })
}

/// Calls of tools named `*huge` are answered with a number beyond `f64` (valid JSON that a tree
/// parser refuses), as raw text: one message, or a batch of the batch's requests.
fn huge_answers(v: &Value) -> Option<String> {
    let huge = |m: &Value| {
        m["method"] == "tools/call"
            && m["params"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("huge"))
    };
    let answer = |m: &Value| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[],"n":1e999}}}}"#,
            m["id"]
        )
    };
    match v {
        Value::Array(a) if a.iter().any(huge) => Some(format!(
            "[{}]",
            a.iter()
                .filter(|m| m.get("id").is_some())
                .map(answer)
                .collect::<Vec<_>>()
                .join(",")
        )),
        m if huge(m) => Some(answer(m)),
        _ => None,
    }
}

/// `tools/list` entries for these tool names.
fn tool_entries<'t>(tools: impl IntoIterator<Item = &'t String>) -> Vec<Value> {
    tools
        .into_iter()
        .map(|t| json!({"name": t, "inputSchema": {"type": "object"}}))
        .collect()
}

fn result(id: &Value, r: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"result":r})
}

fn answer(m: &Value, tools: &[String], headers: &HeaderMap) -> Option<Value> {
    let id = m.get("id")?;
    let method = m["method"].as_str().unwrap_or("");
    Some(match method {
        "initialize" => result(
            id,
            json!({"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {"listChanged": true}}, "serverInfo": {"name": "recording-upstream", "version": "1"}}),
        ),
        "tools/list" => {
            let page: usize = m["params"]["cursor"]
                .as_str()
                .and_then(|c| c.strip_prefix('p'))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut r = json!({"tools": tool_entries(tools.iter().skip(page * 2).take(2))});
            if (page + 1) * 2 < tools.len() {
                r["nextCursor"] = json!(format!("p{}", page + 1));
            }
            result(id, r)
        }
        "tools/call" => {
            let name = m["params"]["name"].as_str().unwrap_or("");
            let text = match name {
                n if n.ends_with("leak") => format!(
                    "I was called with {}",
                    headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                ),
                _ => format!("called {name} with {}", m["params"]["arguments"]),
            };
            result(
                id,
                json!({"content": [{"type": "text", "text": text}], "isError": false}),
            )
        }
        _ => json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"Method not found"}}),
    })
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    tools: Arc<Vec<String>>,
    cred: String,
    force_sse: bool,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
        body: v.clone(),
    });
    if parts
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        != Some(cred.as_str())
    {
        return Ok(full(
            StatusCode::UNAUTHORIZED,
            "application/json",
            r#"{"error":"bad credential"}"#,
        ));
    }
    if parts.method == Method::GET {
        let n = json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"});
        let mut events = vec![
            (Duration::ZERO, "id: g-0\ndata:\n\n".into()),
            (
                Duration::from_millis(50),
                format!("id: g-1\nevent: message\ndata: {n}\n\n"),
            ),
        ];
        // A long-lived stream when asked (keep-alive comments for 5 s), as real servers keep GET open.
        if parts
            .headers
            .get("last-event-id")
            .is_some_and(|v| v == "long")
        {
            events.extend(
                (0..50).map(|_| (Duration::from_millis(100), ": keep-alive\n\n".to_string())),
            );
        }
        return Ok(sse(events));
    }
    if parts.method == Method::DELETE {
        return Ok(full(StatusCode::OK, "application/json", "{}"));
    }
    if let Some((ctype, body)) = crafted_content_type(&v, &tools) {
        return Ok(full(StatusCode::OK, ctype, body));
    }
    if let Some(body) = crafted_list(&v, &tools) {
        if force_sse {
            let mut ev = b"id: c-1\nevent: message\ndata: ".to_vec();
            ev.extend_from_slice(&body);
            ev.extend_from_slice(b"\n\n");
            return Ok(full(StatusCode::OK, "text/event-stream", ev));
        }
        return Ok(full(StatusCode::OK, "application/json", body));
    }
    if let Some(body) = huge_answers(&v) {
        return Ok(full(StatusCode::OK, "application/json", body));
    }
    let name = v["params"]["name"].as_str().unwrap_or("");
    if v["method"] == "tools/call" && name.ends_with("sleep") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if v["method"] == "tools/call" && name.ends_with("progress") {
        let id = v["id"].clone();
        let tok = v["params"]["_meta"]["progressToken"].clone();
        let p = |n: u64| json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":tok,"progress":n,"total":2}});
        let done = result(&id, json!({"content":[{"type":"text","text":"done"}]}));
        return Ok(sse(vec![
            (Duration::ZERO, PROGRESS_SSE_HEAD.into()),
            (
                Duration::from_millis(30),
                format!("id: ev-1\nevent: message\ndata: {}\n\n", p(1)),
            ),
            (
                Duration::from_millis(30),
                format!("id: ev-2\nevent: message\ndata: {}\n\n", p(2)),
            ),
            (
                Duration::from_millis(30),
                format!("id: ev-3\nevent: message\ndata: {done}\n\n"),
            ),
        ]));
    }
    let out = match &v {
        Value::Array(a) => {
            let r: Vec<Value> = a
                .iter()
                .filter_map(|m| answer(m, &tools, &parts.headers))
                .collect();
            if r.is_empty() {
                None
            } else {
                Some(Value::Array(r))
            }
        }
        m => answer(m, &tools, &parts.headers),
    };
    let Some(out) = out else {
        return Ok(full(StatusCode::ACCEPTED, "application/json", ""));
    };
    if force_sse {
        return Ok(sse(vec![(
            Duration::ZERO,
            format!("id: s-1\nevent: message\ndata: {out}\n\n"),
        )]));
    }
    let mut r = full(StatusCode::OK, "application/json", out.to_string());
    if v["method"] == "initialize" {
        r.headers_mut()
            .insert("mcp-session-id", "upstream-session-1".parse().unwrap());
    }
    if v["method"] == "tools/call" && name.ends_with("leak") {
        r.headers_mut().insert("x-debug", cred.parse().unwrap());
    }
    Ok(r)
}
