//! A fixture, not a model: the sample upstream behind the demo's agent gateway. It speaks enough of the
//! Anthropic Messages API (`POST /v1/messages`, JSON and streaming; `count_tokens`; `HEAD /`) for curl,
//! the SDKs and Claude Code, with canned replies, and it demands its own `x-api-key`, so the demo shows
//! the key being injected by the hub.
//!
//! Asked to "count to N" (N up to 100,000), it answers "1 2 … N", one streamed event per number: a
//! reply of known length for benchmarks (`scripts/bench-agent`).
//!
//! Its other trick makes the demo's `claude -p` line a whole agent turn: offered an MCP tool whose name
//! ends in `get_issue` (the demo MCP server's), it first asks for that tool, and once the tool's result
//! comes back it answers with it. So one prompt shows a model call and a tool call, both through the hub.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

/// What the fixture says when it has no tool to call.
pub const GREETING: &str = "Hello from the mcp-hub demo's sample model (a fixture with canned replies, \
    not an LLM). This request reached it through the agent gateway, which swapped your devbox token \
    for the real key on the host.";

/// The fixture's state: the key it accepts.
pub struct SampleModel {
    key: String,
}

/// One reply, before it is rendered as JSON or as a stream.
enum Reply {
    Text(String),
    ToolUse { name: String },
}

impl SampleModel {
    /// A fixture accepting `x-api-key: <key>` (or `Authorization: Bearer <key>`).
    pub fn new(key: &str) -> Arc<Self> {
        Arc::new(Self { key: key.into() })
    }

    fn authorized(&self, req: &Request<hyper::body::Incoming>) -> bool {
        let h = req.headers();
        let presented = h
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                h.get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_string)
            })
            .unwrap_or_default();
        bool::from(presented.as_bytes().ct_eq(self.key.as_bytes()))
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if req.method() == Method::HEAD {
            return Response::new(Full::new(Bytes::new()));
        }
        if !self.authorized(&req) {
            return json_reply(
                StatusCode::UNAUTHORIZED,
                &json!({"type": "error", "error": {"type": "authentication_error",
                        "message": "the demo's sample model wants its own key (the hub injects it)"}}),
            );
        }
        let path = req.uri().path().to_string();
        let body = match Limited::new(req.into_body(), 32 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::BAD_REQUEST, "unreadable body"),
        };
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match path.as_str() {
            "/v1/messages" => {}
            "/v1/messages/count_tokens" => {
                return json_reply(
                    StatusCode::OK,
                    &json!({"input_tokens": estimate_tokens(&msg)}),
                );
            }
            _ => {
                return error(
                    StatusCode::NOT_FOUND,
                    "the sample model serves /v1/messages",
                );
            }
        }
        let model = msg
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("sample-model")
            .to_string();
        let reply = decide(&msg);
        let input_tokens = estimate_tokens(&msg);
        if msg.get("stream").and_then(Value::as_bool) == Some(true) {
            return stream(&model, &reply, input_tokens);
        }
        let (content, stop) = match &reply {
            Reply::Text(t) => (json!([{"type": "text", "text": t}]), "end_turn"),
            Reply::ToolUse { name } => (
                json!([{"type": "tool_use", "id": "toolu_demo_1", "name": name, "input": {"number": 1}}]),
                "tool_use",
            ),
        };
        json_reply(
            StatusCode::OK,
            &json!({"id": "msg_demo", "type": "message", "role": "assistant", "model": model,
                    "content": content, "stop_reason": stop, "stop_sequence": null,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 20}}),
        )
    }

    /// Serve on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        super::serve_http(listener, move |req| {
            let me = self.clone();
            async move { me.handle(req).await }
        })
        .await;
    }
}

/// The canned decision: answer a tool result with it, ask for `*get_issue` when offered, else greet.
fn decide(msg: &Value) -> Reply {
    let last = msg
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last());
    let result = last
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .and_then(|blocks| {
            blocks
                .iter()
                .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        });
    if let Some(r) = result {
        let text = match r.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        let text: String = text.chars().take(2000).collect();
        return Reply::Text(format!("The MCP tool answered, through the hub:\n{text}"));
    }
    let tool = msg
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with("mcp__") && n.ends_with("get_issue"))
        });
    if let Some(name) = tool {
        return Reply::ToolUse { name: name.into() };
    }
    let prompt = match last.and_then(|m| m.get("content")) {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    };
    let count = prompt
        .strip_prefix("count to ")
        .and_then(|n| n.trim().parse::<u32>().ok())
        .filter(|n| (1..=100_000).contains(n));
    match count {
        Some(n) => Reply::Text((1..=n).map(|i| format!("{i} ")).collect()),
        None => Reply::Text(GREETING.into()),
    }
}

/// A rough token count (four bytes a token), so usage figures are plausible.
fn estimate_tokens(msg: &Value) -> u64 {
    (msg.to_string().len() as u64 / 4).max(1)
}

/// The reply as Messages-API server-sent events.
fn stream(model: &str, reply: &Reply, input_tokens: u64) -> Response<Full<Bytes>> {
    let mut out = String::new();
    let mut ev = |name: &str, data: Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_demo", "type": "message", "role": "assistant",
               "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
    );
    let stop = match reply {
        Reply::Text(t) => {
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            );
            ev("ping", json!({"type": "ping"}));
            for piece in t.split_inclusive(' ') {
                ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                );
            }
            "end_turn"
        }
        Reply::ToolUse { name } => {
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "tool_use", "id": "toolu_demo_1", "name": name, "input": {}}}),
            );
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": "{\"number\": 1}"}}),
            );
            "tool_use"
        }
    };
    ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": 20}}),
    );
    ev("message_stop", json!({"type": "message_stop"}));
    let mut r = Response::new(Full::new(Bytes::from(out)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    r
}

fn json_reply(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_reply(
        status,
        &json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}}),
    )
}

/// Bind on loopback and serve in the background; returns the address.
///
/// # Errors
/// If binding fails.
pub async fn spawn(key: &str) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = l.local_addr()?;
    tokio::spawn(SampleModel::new(key).serve(l));
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_asks_for_the_tool_then_answers_with_its_result() {
        let offered = json!({"messages": [{"role": "user", "content": "look at issue 1"}],
                             "tools": [{"name": "Bash"}, {"name": "mcp__github__github_get_issue"}]});
        assert!(
            matches!(decide(&offered), Reply::ToolUse { name } if name == "mcp__github__github_get_issue")
        );
        let answered = json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_demo_1", "content": [{"type": "text", "text": "#1 Welcome"}]}]}]});
        assert!(matches!(decide(&answered), Reply::Text(t) if t.contains("#1 Welcome")));
        assert!(matches!(decide(&json!({})), Reply::Text(t) if t == GREETING));
        let count = json!({"messages": [{"role": "user", "content": "count to 3"}]});
        assert!(matches!(decide(&count), Reply::Text(t) if t == "1 2 3 "));
    }
}
