//! Streamable HTTP transport details: SSE relay, GET stream, sessions, protocol revisions.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::support::upstream::PROGRESS_SSE_HEAD;
use crate::support::{Hub, Upstream};

async fn setup(tools: &[&str], allowed: &[&str]) -> (Hub, Upstream, String) {
    let up = Upstream::start(tools, "Bearer s3cret-upstream").await;
    let hub = Hub::start(&[("srv", &up.url(), allowed)]).await;
    hub.secret("S", "s3cret-upstream");
    let env = hub.devbox("box", &[], &["SRV_MCP_SECRET=srv:S"]);
    (hub, up, env["SRV_MCP_SECRET"].clone())
}

#[tokio::test]
async fn sse_is_relayed_event_by_event_and_byte_for_byte() {
    let (hub, _up, token) = setup(&["work.progress"], &["work.*"]).await;
    let c = hub.client();
    let body = json!({"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"work.progress","_meta":{"progressToken":"pt"}}});
    let resp = c
        .send(c.request(Method::POST, Some(&token), &[], &body.to_string()))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let mut body = resp.into_body();
    let start = Instant::now();
    let mut chunks: Vec<(Duration, String)> = Vec::new();
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            chunks.push((start.elapsed(), String::from_utf8(d.to_vec()).unwrap()));
        }
    }
    let all: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
    // Priming event, comment and retry pass untouched, in order.
    assert!(all.starts_with(PROGRESS_SSE_HEAD), "{all}");
    assert!(all.contains(
        "id: ev-1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\""
    ));
    assert!(
        all.ends_with("\"result\":{\"content\":[{\"text\":\"done\",\"type\":\"text\"}]}}\n\n"),
        "{all}"
    );
    // Unbuffered: the first progress event arrived well before the final result (the upstream sends them
    // 60 ms apart; a buffering relay would deliver them together).
    let first_progress = chunks
        .iter()
        .find(|(_, c)| c.contains("\"progress\":1"))
        .unwrap()
        .0;
    let result = chunks
        .iter()
        .find(|(_, c)| c.contains("\"done\""))
        .unwrap()
        .0;
    assert!(
        result >= first_progress + Duration::from_millis(20),
        "progress {first_progress:?} result {result:?}"
    );
}

#[tokio::test]
async fn get_stream_delivers_list_changed() {
    let (hub, up, token) = setup(&["a"], &["*"]).await;
    let c = hub.client();
    let r = c
        .exchange(c.request(Method::GET, Some(&token), &[("last-event-id", "g-0")], ""))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    assert!(text.starts_with("id: g-0\ndata:\n\n"), "{text}");
    assert!(text.contains("notifications/tools/list_changed"), "{text}");
    let seen = up.seen();
    assert_eq!(seen[0].method, Method::GET);
    assert_eq!(seen[0].headers["last-event-id"], "g-0");
    assert_eq!(seen[0].headers["accept"], "text/event-stream");
}

#[tokio::test]
async fn sessions_are_sealed_to_the_token_that_created_them() {
    let up = Upstream::start(&["a"], "Bearer k").await;
    let hub = Hub::start(&[("srv", &up.url(), &["*"])]).await;
    hub.secret("S", "k");
    let one = hub.devbox("one", &[], &["T=srv:S"]);
    let two = hub.devbox("two", &[], &["T=srv:S"]);
    let c = hub.client();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let r = c.post(&one["T"], &init).await;
    let sid = r.headers["mcp-session-id"].to_str().unwrap().to_string();
    assert_ne!(
        sid, "upstream-session-1",
        "the upstream's id is never shown as is"
    );
    let ping = json!({"jsonrpc":"2.0","id":2,"method":"ping"});
    let ok = c
        .post_with(
            &one["T"],
            &[
                ("mcp-session-id", &sid),
                ("mcp-protocol-version", "2025-06-18"),
            ],
            &ping,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let last = up.seen().last().unwrap().clone();
    assert_eq!(last.headers["mcp-session-id"], "upstream-session-1");
    assert_eq!(last.headers["mcp-protocol-version"], "2025-06-18");
    // Another token (same server, same upstream) cannot ride the session.
    let before = up.seen().len();
    let stolen = c
        .post_with(&two["T"], &[("mcp-session-id", &sid)], &ping)
        .await;
    assert_eq!(stolen.status, StatusCode::NOT_FOUND);
    assert_eq!(stolen.json()["error"]["message"], "Session not found");
    // Nor can a raw upstream session id be presented.
    let raw = c
        .post_with(
            &one["T"],
            &[("mcp-session-id", "upstream-session-1")],
            &ping,
        )
        .await;
    assert_eq!(raw.status, StatusCode::NOT_FOUND);
    assert_eq!(up.seen().len(), before);
    // DELETE ends the session upstream.
    let d = c
        .exchange(c.request(
            Method::DELETE,
            Some(&one["T"]),
            &[("mcp-session-id", &sid)],
            "",
        ))
        .await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(up.seen().last().unwrap().method, Method::DELETE);
}

#[tokio::test]
async fn modern_revision_headers_are_enforced_and_lists_are_private() {
    let (hub, up, token) = setup(
        &["github.get_issue", "github.delete_repo"],
        &["github.get_*"],
    )
    .await;
    let c = hub.client();
    let call = |name: &str| json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":{}}});
    let m = "2026-07-28";
    // Header names an allowed tool, body calls a hidden one: 400 HeaderMismatch, nothing forwarded.
    let r = c
        .post_with(
            &token,
            &[
                ("mcp-protocol-version", m),
                ("mcp-method", "tools/call"),
                ("mcp-name", "github.get_issue"),
            ],
            &call("github.delete_repo"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], -32020);
    // Header and body agree on a hidden tool: unknown tool. Filtering uses the body, not the header.
    let r = c
        .post_with(
            &token,
            &[
                ("mcp-protocol-version", m),
                ("mcp-method", "tools/call"),
                ("mcp-name", "github.delete_repo"),
            ],
            &call("github.delete_repo"),
        )
        .await;
    assert_eq!(
        r.json()["error"]["message"],
        "Unknown tool: github.delete_repo"
    );
    // Missing mandatory header.
    let r = c
        .post_with(
            &token,
            &[("mcp-protocol-version", m)],
            &call("github.get_issue"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(up.tool_calls().is_empty());
    // A correct modern call is forwarded with its headers.
    let r = c
        .post_with(
            &token,
            &[
                ("mcp-protocol-version", m),
                ("mcp-method", "tools/call"),
                ("mcp-name", "github.get_issue"),
            ],
            &call("github.get_issue"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let last = up.seen().last().unwrap().clone();
    assert_eq!(last.headers["mcp-method"], "tools/call");
    assert_eq!(last.headers["mcp-name"], "github.get_issue");
    // Lists are per token: marked private.
    let r = c
        .post_with(
            &token,
            &[("mcp-protocol-version", m), ("mcp-method", "tools/list")],
            &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        )
        .await;
    let v: Value = r.json();
    assert_eq!(v["result"]["cacheScope"], "private");
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
}
