//! Interop with real MCP implementations: the official Python SDK (client and server) and
//! server-everything (Node). `.ci/run` installs them and sets `MCP_HUB_INTEROP_DIR` (holding `venv/` and
//! `node_modules/`); without it these tests are skipped locally and fail under CI.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::Hub;
use crate::support::client::parse_any;

pub(crate) fn interop_dir() -> Option<PathBuf> {
    match std::env::var_os("MCP_HUB_INTEROP_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI must set MCP_HUB_INTEROP_DIR (see .ci/run)")
        }
        None => {
            eprintln!("skipping interop test: MCP_HUB_INTEROP_DIR is not set (run .ci/run)");
            None
        }
    }
}

pub(crate) fn script(name: &str) -> String {
    format!("{}/tests/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Start a child that prints its port on the first stdout line.
pub(crate) async fn spawn_with_port(mut cmd: Command) -> (Child, u16) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    (child, line.trim().parse().unwrap())
}

async fn python_client(dir: &std::path::Path, hub: &Hub, token: &str, mode: &str) -> Value {
    let out = Command::new(dir.join("venv/bin/python"))
        .args([
            &script("client.py"),
            &hub.url,
            token,
            mode,
            "github.delete_repo",
        ])
        .env("SSL_CERT_FILE", &hub.ca_file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "python client ({mode}) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn python_sdk_client_and_server_through_the_hub() {
    let Some(dir) = interop_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let seen = tmp.path().join("seen.jsonl");
    let mut cmd = Command::new(dir.join("venv/bin/python"));
    cmd.args([
        &script("upstream_server.py"),
        "py-upstream-secret",
        seen.to_str().unwrap(),
    ]);
    let (_server, port) = spawn_with_port(cmd).await;
    let endpoint = format!("http://127.0.0.1:{port}/mcp");
    let hub = Hub::start(&[("github", &endpoint, &["github.search_*", "github.get_*"])]).await;
    hub.secret("GITHUB_MCP_TOKEN", "py-upstream-secret");
    let token =
        hub.devbox("box", &[], &["GITHUB_MCP_SECRET=github:GITHUB_MCP_TOKEN"])["GITHUB_MCP_SECRET"]
            .clone();

    for mode in ["legacy", "auto"] {
        let r = python_client(&dir, &hub, &token, mode).await;
        assert_eq!(
            r["tools"],
            json!([
                "github.get_changes",
                "github.get_issue",
                "github.get_progress",
                "github.search_code"
            ]),
            "{mode}: {r}"
        );
        assert_eq!(
            r["call"], "issue #7: hello from the python upstream",
            "{mode}"
        );
        assert_eq!(
            r["progress"],
            json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]),
            "{mode}: {r}"
        );
        assert_eq!(r["progress_result"], "progress done");
        let hidden = r["hidden"].to_string();
        assert!(
            hidden.contains("Unknown tool: github.delete_repo"),
            "{mode}: {hidden}"
        );
        if mode == "legacy" {
            assert_eq!(
                r["list_changed"], true,
                "list_changed must reach a legacy client on the GET stream: {r}"
            );
        }
    }
    let seen: Vec<Value> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!seen.is_empty());
    let mut versions = std::collections::BTreeSet::new();
    for s in &seen {
        assert_eq!(
            s["headers"]["authorization"], "Bearer py-upstream-secret",
            "{s}"
        );
        assert!(
            !s.to_string().contains(&token),
            "agent token reached the upstream: {s}"
        );
        if let Some(v) = s["headers"]["mcp-protocol-version"].as_str() {
            versions.insert(v.to_string());
        }
        let method = s["body"]["method"].as_str().unwrap_or("");
        if method == "tools/call" {
            assert_ne!(
                s["body"]["params"]["name"], "github.delete_repo",
                "hidden tool reached the upstream"
            );
        }
    }
    // Both eras went through the hub: the legacy handshake and the 2026-07-28 revision.
    assert!(versions.contains("2026-07-28"), "{versions:?}");
    assert!(
        versions.iter().any(|v| v.as_str() < "2026-07-28"),
        "{versions:?}"
    );
}

#[tokio::test]
async fn server_everything_upstream() {
    let Some(dir) = interop_dir() else { return };
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let node = std::env::var("MCP_HUB_NODE").unwrap_or_else(|_| "node".into());
    let mut server = Command::new(node)
        .args([
            "--require",
            &script("loopback.js"),
            dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
                .to_str()
                .unwrap(),
            "streamableHttp",
        ])
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}/mcp");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hub = Hub::start(&[(
        "everything",
        &endpoint,
        &["echo", "get-sum", "trigger-long-running-*"],
    )])
    .await;
    hub.secret("E", "unused-by-server-everything");
    let token =
        hub.devbox("box", &[], &["EVERYTHING_MCP_SECRET=everything:E"])["EVERYTHING_MCP_SECRET"]
            .clone();
    let c = hub.client();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"hub-test","version":"1"}}});
    let r = c.post(&token, &init).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let sid = r.headers["mcp-session-id"].to_str().unwrap().to_string();
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let r = c
        .post_with(
            &token,
            &h,
            &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = c
        .post_with(
            &token,
            &h,
            &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        )
        .await;
    let v = parse_any(&r);
    let mut names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["echo", "get-sum", "trigger-long-running-operation"]);
    let r = c.post_with(&token, &h, &json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"via hub"}}})).await;
    assert!(
        parse_any(&r)["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("via hub")
    );
    let r = c.post_with(&token, &h, &json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get-env","arguments":{}}})).await;
    assert_eq!(r.json()["error"]["message"], "Unknown tool: get-env");
    // Progress notifications stream through before the result.
    let r = c
        .post_with(&token, &h, &json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":1,"steps":3},"_meta":{"progressToken":"p1"}}}))
        .await;
    let text = r.text();
    assert_eq!(text.matches("notifications/progress").count(), 3, "{text}");
    assert!(text.contains("\"id\":5"), "{text}");
    // Batches (2025-03-26) are filtered element by element against a real server too.
    let batch = json!([
        {"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":2,"b":3}}},
        {"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-env","arguments":{}}}
    ]);
    let r = c
        .post_with(
            &token,
            &[
                ("mcp-session-id", sid.as_str()),
                ("mcp-protocol-version", "2025-03-26"),
            ],
            &batch,
        )
        .await;
    let text = r.text();
    assert!(text.contains("Unknown tool: get-env"), "{text}");
    assert!(text.contains("\"id\":6"), "{text}");
    server.kill().await.ok();
}

/// Claude Code, the client most users register the hub with: the demo's printed commands, run as printed:
/// `claude mcp add`, `claude mcp list`, then a headless turn in which the (fixture) model asks for an MCP
/// tool and answers with its result, model and tool calls both through the hub.
/// (It found that its TLS stack rejects CAs with IP-address name constraints; the demo uses localhost.)
#[tokio::test]
async fn claude_code_runs_the_demo_as_printed() {
    let Some(dir) = interop_dir() else { return };
    let claude = dir.join("node_modules/.bin/claude");
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_mcp-hub"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            tmp.path().join("demo").to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut log = BufReader::new(demo.stderr.take().unwrap()).lines();
    let audit = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(l)) = log.next_line().await {
            all.push(l);
        }
        all
    });
    let mut vars = std::collections::HashMap::new();
    while let Some(l) = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        if let Some((k, v)) = l.strip_prefix("export ").and_then(|r| r.split_once('=')) {
            vars.insert(k.to_string(), v.trim_matches('"').to_string());
        }
        if l.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |args: Vec<String>| {
        let mut c = Command::new(&claude);
        c.args(args)
            .current_dir(tmp.path())
            .env("HOME", &home)
            .env("NODE_EXTRA_CA_CERTS", &vars["CA"])
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            // As printed: the model through the agent gateway, with the devbox's token as the key.
            .env("ANTHROPIC_BASE_URL", &vars["ANTHROPIC_URL"])
            .env("ANTHROPIC_API_KEY", &vars["ANTHROPIC"]);
        c.output()
    };
    let add = run(vec![
        "mcp".into(),
        "add".into(),
        "github".into(),
        "--transport".into(),
        "http".into(),
        vars["RL_MCP_URL"].clone(),
        "--header".into(),
        format!("Authorization: Bearer {}", vars["GITHUB_MCP_SECRET"]),
    ])
    .await
    .unwrap();
    assert!(
        add.status.success(),
        "claude mcp add: {}",
        String::from_utf8_lossy(&add.stderr)
    );
    let list = tokio::time::timeout(
        Duration::from_secs(90),
        run(vec!["mcp".into(), "list".into()]),
    )
    .await
    .unwrap()
    .unwrap();
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(
        out.contains("github:") && out.contains("Connected") && !out.contains("Failed"),
        "claude mcp list: {out}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let turn = || {
        run(vec![
            "-p".into(),
            "What does issue 1 say?".into(),
            "--allowedTools".into(),
            "mcp__github__github_get_issue".into(),
        ])
    };
    let first = tokio::time::timeout(Duration::from_secs(120), turn())
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&first.stdout);
    // The text exists only in the MCP server; it reaches the answer only if the model's tool
    // request went through the MCP gateway and its result back through the agent gateway.
    assert!(
        first.status.success() && out.contains("#1 Welcome to the mcp-hub demo"),
        "claude -p: {out}{}",
        String::from_utf8_lossy(&first.stderr)
    );

    // Pinning, across an approval: once the config pins its tools, Claude Code's next turn is offered
    // no tool (the sample model answers without one); after `tools approve`, the same turn works again,
    // with nothing reconfigured in Claude Code.
    let config = tmp.path().join("demo/hub.toml");
    let hub_cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mcp-hub"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let pin = hub_cli(&["mcp-config", "update", "github", "--pin-tools", "true"]);
    assert!(
        pin.status.success(),
        "{}",
        String::from_utf8_lossy(&pin.stderr)
    );
    let hidden = tokio::time::timeout(Duration::from_secs(120), turn())
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&hidden.stdout);
    assert!(
        hidden.status.success() && !out.contains("#1 Welcome"),
        "claude -p with the tool unapproved: {out}"
    );
    let approve = hub_cli(&["tools", "approve", "github", "github.get_issue"]);
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let back = tokio::time::timeout(Duration::from_secs(120), turn())
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&back.stdout);
    assert!(
        back.status.success() && out.contains("#1 Welcome to the mcp-hub demo"),
        "claude -p after approval: {out}{}",
        String::from_utf8_lossy(&back.stderr)
    );
    demo.kill().await.ok();
    let lines = audit.await.unwrap();
    let count = |event: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("event=\"{event}\"")))
            .count()
    };
    assert!(count("agent_request") >= 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("event=\"tool_call\"") && l.contains("github.get_issue")),
        "{lines:#?}"
    );
}

/// The official Anthropic and OpenAI Python SDKs through the agent gateway, JSON and streaming, against
/// an upstream that demands the real key and logs what it received.
#[tokio::test]
async fn llm_sdks_call_through_the_agent_gateway() {
    let Some(dir) = interop_dir() else { return };
    let lab = super::agent::Lab::start().await;
    let out = Command::new(dir.join("venv/bin/python"))
        .args([
            &script("llm_client.py"),
            &lab.env["ANTHROPIC_URL"],
            &lab.env["ANTHROPIC"],
            &lab.env["OPENAI_URL"],
            &lab.env["OPENAI"],
        ])
        .env("SSL_CERT_FILE", &lab.hub.ca_file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "llm_client.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hello = "Hello from the fixture upstream.";
    assert_eq!(v["anthropic_json"]["text"], hello, "{v}");
    assert_eq!(v["anthropic_json"]["input_tokens"], 11);
    assert_eq!(v["anthropic_stream"]["text"], hello);
    assert_eq!(v["anthropic_429"]["status"], 429);
    assert_eq!(v["anthropic_429"]["retry_after"], "7");
    assert_eq!(v["anthropic_401"]["type"], "authentication_error");
    assert_eq!(v["openai_json"]["text"], hello);
    assert_eq!(v["openai_stream"]["text"], hello);
    assert_eq!(v["openai_stream"]["total_tokens"], 13);
    // What the upstream received: the real key on every request, the devbox's token on none.
    let seen = lab.seen();
    let requests: Vec<&Value> = seen.iter().filter(|e| e["event"] == "request").collect();
    assert!(requests.len() >= 6, "{seen:?}");
    for r in &requests {
        let h = &r["headers"];
        let key = h["x-api-key"].as_str().map(str::to_string).or_else(|| {
            h["authorization"]
                .as_str()
                .map(|a| a.replace("Bearer ", ""))
        });
        assert!(
            key.is_some_and(|k| k.starts_with("sk-ant-fixture-REAL")),
            "{r}"
        );
        assert!(
            !r.to_string().contains("gwh_"),
            "a token reached the upstream: {r}"
        );
    }
    // The SDK gave up on the slow stream; the upstream saw its request cancelled.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lab.seen().iter().any(|e| e["event"] == "cancelled") {
        assert!(
            std::time::Instant::now() < deadline,
            "no cancel reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
