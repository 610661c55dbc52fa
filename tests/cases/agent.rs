//! The agent gateway end to end: a devbox's requests through the hub's TLS listener to a local stand-in
//! for the Anthropic and OpenAI APIs (`tests/interop/llm_upstream.py`, standard library only), which
//! demands the real key and logs everything it receives.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::Hub;
use crate::support::client::{Client, Reply};
use mcp_hub::ops::edit::devbox;
use mcp_hub::ops::edit::gateway_config::{self, AuthType};

const KEY: &str = "sk-ant-fixture-REAL-key-0123456789";

pub(crate) struct Lab {
    pub(crate) hub: Hub,
    _upstream: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    pub(crate) env: HashMap<String, String>,
    pub(crate) up_port: u16,
}

/// Start the upstream stand-in; returns it and its port.
pub(crate) async fn llm_upstream(log: &std::path::Path) -> (Child, u16) {
    let script = format!(
        "{}/tests/interop/llm_upstream.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut cmd = Command::new("python3");
    cmd.args([&script, KEY, &log.display().to_string()]);
    super::interop::spawn_with_port(cmd).await
}

impl Lab {
    /// A hub with an agent gateway on `localhost`, two gateway configs in front of the stand-in
    /// (`fixture-anthropic`: x-api-key; `fixture-openai`: bearer, base path /v1), and a devbox bound to
    /// both under a policy that allows the agent gateway.
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("upstream.jsonl");
        let (upstream, up_port) = llm_upstream(&log).await;
        let hub = Hub::start_with(
            &[],
            "[agent_gateway]\nurl = \"https://localhost:{port}\"\nidle_timeout_ms = 3000\n\
             [[network_policies]]\nname = \"llm\"\nallow_agent_gateway = true\n\
             [[network_policies]]\nname = \"closed\"\nallow_mcp_gateway = true\n",
        )
        .await;
        hub.edit(|ws| {
            for (name, endpoint, auth, key) in [
                (
                    "fixture-anthropic",
                    format!("http://127.0.0.1:{up_port}"),
                    AuthType::Header,
                    Some("x-api-key"),
                ),
                (
                    "fixture-openai",
                    format!("http://127.0.0.1:{up_port}/v1"),
                    AuthType::Bearer,
                    None,
                ),
            ] {
                gateway_config::Create {
                    name: name.into(),
                    endpoint,
                    auth_type: auth,
                    auth_key: key.map(str::to_string),
                    description: None,
                    allowed_paths: None,
                    allowed_models: None,
                }
                .apply(ws)
                .unwrap();
            }
        });
        hub.secret("LLM_KEY", KEY);
        let env = hub.devbox_with_gateways(
            "box",
            &["127.0.0.1"],
            "llm",
            &[
                "ANTHROPIC=fixture-anthropic:LLM_KEY",
                "OPENAI=fixture-openai:LLM_KEY",
            ],
        );
        Self {
            hub,
            _upstream: upstream,
            log,
            _dir: dir,
            env,
            up_port,
        }
    }

    pub(crate) fn client(&self, h2: bool) -> Client {
        Client::new(&self.env["ANTHROPIC_URL"], &self.hub.ca_file, h2)
    }

    /// Every request the upstream logged so far.
    pub(crate) fn seen(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn requests(&self) -> Vec<Value> {
        self.seen()
            .into_iter()
            .filter(|e| e["event"] == "request")
            .collect()
    }

    /// A request to `$ANTHROPIC_URL<path>` with the Anthropic SDK's headers and `token` as `x-api-key`.
    fn anthropic(&self, token: &str, path: &str, body: &Value) -> Request<Full<Bytes>> {
        Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.env["ANTHROPIC_URL"]))
            .header("x-api-key", token)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    fn set_policy(&self, policy: &str) {
        self.hub.edit(|ws| {
            devbox::SetPolicy {
                name: "box".into(),
                policy: Some(policy.into()),
            }
            .apply(ws)
            .unwrap()
        });
        self.hub.sync();
    }

    fn token(&self) -> &str {
        &self.env["ANTHROPIC"]
    }
}

fn message(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 16, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

fn error_reason(r: &Reply) -> String {
    let v = r.json();
    v["reason"]
        .as_str()
        .or(v["error"]["code"].as_str())
        .or(v["error"]["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn model_calls_carry_the_real_key_and_never_the_token() {
    let lab = Lab::start().await;
    assert!(lab.env["ANTHROPIC"].starts_with("gwh_"), "{:?}", lab.env);
    assert!(lab.env["ANTHROPIC_URL"].starts_with("https://localhost:"));
    // SECURITY: the devbox's environment holds no real credential.
    assert!(!lab.env.values().any(|v| v.contains(KEY)));
    for h2 in [false, true] {
        let c = lab.client(h2);
        let mut req = lab.anthropic(lab.token(), "/v1/messages", &message("claude-test", false));
        for (k, v) in [
            ("cookie", "session=devbox-secret"),
            ("x-forwarded-for", "6.6.6.6"),
            ("authorization", &format!("Bearer {}", lab.token())),
            ("anthropic-beta", "tools-2024-04-04"),
        ] {
            req.headers_mut()
                .insert(http::HeaderName::from_static(k), v.parse().unwrap());
        }
        let r = c.exchange(req).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(
            r.json()["content"][0]["text"],
            "Hello from the fixture upstream."
        );
        let seen = lab.requests();
        let last = &seen.last().unwrap()["headers"];
        assert_eq!(last["x-api-key"], KEY, "the real key arrives");
        assert_eq!(last["anthropic-version"], "2023-06-01");
        assert_eq!(last["anthropic-beta"], "tools-2024-04-04");
        assert_eq!(last["host"], format!("127.0.0.1:{}", lab.up_port));
        for gone in [
            "cookie",
            "x-forwarded-for",
            "authorization",
            "accept-encoding",
        ] {
            assert!(last.get(gone).is_none(), "{gone} crossed: {last}");
        }
        // SECURITY: the token never reaches the upstream, in any header or the body.
        let text = seen.last().unwrap().to_string();
        assert!(!text.contains("gwh_"), "{text}");
    }

    // Streaming: SSE as the upstream sent it, event by event.
    let c = lab.client(false);
    let r = c
        .exchange(lab.anthropic(lab.token(), "/v1/messages", &message("claude-test", true)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/event-stream");
    let t = r.text();
    for ev in [
        "event: message_start",
        "event: content_block_delta",
        "event: message_stop",
    ] {
        assert!(t.contains(ev), "{t}");
    }

    // OpenAI: bearer placement, the endpoint's base path before the devbox's path.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/chat/completions", lab.env["OPENAI_URL"]))
        .header("authorization", format!("Bearer {}", lab.env["OPENAI"]))
        .header("content-type", "application/json")
        .header("openai-organization", "org-test")
        .body(Full::new(Bytes::from(
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )))
        .unwrap();
    let r = c.exchange(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = lab.requests();
    let last = seen.last().unwrap();
    assert_eq!(last["path"], "/v1/chat/completions");
    assert_eq!(last["headers"]["authorization"], format!("Bearer {KEY}"));
    assert_eq!(last["headers"]["openai-organization"], "org-test");
    // The ANTHROPIC token is no OPENAI token: tokens are per binding.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/chat/completions", lab.env["OPENAI_URL"]))
        .header("authorization", format!("Bearer {}", lab.token()))
        .body(Full::new(Bytes::from(
            json!({"model": "gpt-test"}).to_string(),
        )))
        .unwrap();
    let r = c.exchange(req).await;
    // Served, but as the ANTHROPIC binding: its config's placement (x-api-key) is what the fixture's
    // OpenAI route refuses.
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key", "{}", r.text());

    // Upstream statuses pass through: a 429 stays a 429 with its retry-after.
    let r = c
        .exchange(lab.anthropic(lab.token(), "/v1/messages", &message("rate-me", false)))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "7");

    // SECURITY: an upstream echoing the key, in a header or the body, JSON or streamed, leaks nothing.
    for stream in [false, true] {
        let r = c
            .exchange(lab.anthropic(lab.token(), "/v1/messages", &message("echo-key", stream)))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let t = r.text();
        assert!(!t.contains(KEY), "{t}");
        assert!(t.contains("[REDACTED]"), "{t}");
        if !stream {
            assert_eq!(r.headers["request-id"], "[REDACTED]");
        }
    }

    // Audited and counted per binding and model, with the usage the upstream reported.
    let m = mcp_hub::telemetry::metrics::render();
    assert!(
        m.contains("mcp_hub_agent_requests_total{config=\"fixture-anthropic\",devbox=\"box\",binding=\"ANTHROPIC\",model=\"claude-test\",status=\"2xx\",outcome=\"ok\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("mcp_hub_agent_tokens_total{config=\"fixture-anthropic\",devbox=\"box\",binding=\"ANTHROPIC\",model=\"claude-test\",direction=\"input\"} 33"),
        "{m}"
    );
}

#[tokio::test]
async fn refusals_answer_in_the_providers_shape_and_reach_no_upstream() {
    let lab = Lab::start().await;
    let c = lab.client(false);
    let before = lab.requests().len();
    let body = message("claude-test", false);

    let r = c.exchange(lab.anthropic("", "/v1/messages", &body)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    assert_eq!(error_reason(&r), "token_malformed");

    let mut req = lab.anthropic(lab.token(), "/v1/messages", &body);
    req.headers_mut().remove("x-api-key");
    let r = c.exchange(req).await;
    assert_eq!(
        (r.status, error_reason(&r).as_str()),
        (StatusCode::UNAUTHORIZED, "token_missing")
    );

    // An MCP-shaped token, or this token relabelled as one, is no agent-gateway token.
    let relabelled = lab.token().replacen("gwh_", "mcph_", 1);
    let r = c
        .exchange(lab.anthropic(&relabelled, "/v1/messages", &body))
        .await;
    assert_eq!(error_reason(&r), "token_malformed");

    // OpenAI's shape for bearer clients.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/chat/completions", lab.env["OPENAI_URL"]))
        .header("authorization", "Bearer sk-not-a-hub-token")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = c.exchange(req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    assert_eq!(r.json()["error"]["code"], "token_malformed");

    // SECURITY: keys in the URL are refused outright.
    let req = Request::builder()
        .uri(format!(
            "{}/v1beta/models/x:generateContent?key={}",
            lab.env["ANTHROPIC_URL"],
            lab.token()
        ))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = c.exchange(req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json()["error"]["status"],
        "UNAUTHENTICATED",
        "{}",
        r.text()
    );

    // SECURITY: a path the upstream could resolve outside the base path.
    for p in ["/v1/../admin", "/v1/%2e%2e/admin", "/v1%2fmessages"] {
        let r = c.exchange(lab.anthropic(lab.token(), p, &body)).await;
        assert_eq!(
            (r.status, error_reason(&r).as_str()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "{p}"
        );
    }

    // SECURITY: the devbox's policy is checked per request: without allow_agent_gateway, nothing.
    lab.set_policy("closed");
    let r = c
        .exchange(lab.anthropic(lab.token(), "/v1/messages", &body))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"]["type"], "permission_error");
    assert_eq!(error_reason(&r), "agent_gateway_not_allowed");

    // A revoked token is refused at once.
    lab.set_policy("llm");
    lab.hub.edit(|ws| {
        devbox::Revoke {
            name: "box".into(),
            env_var: Some("ANTHROPIC".into()),
        }
        .apply(ws)
        .unwrap()
    });
    lab.hub.sync();
    let r = c
        .exchange(lab.anthropic(lab.token(), "/v1/messages", &body))
        .await;
    assert_eq!(error_reason(&r), "token_unknown");

    assert_eq!(
        lab.requests().len(),
        before,
        "no refused request reached the upstream"
    );
    let m = mcp_hub::telemetry::metrics::render();
    assert!(
        m.contains("mcp_hub_agent_gateway_denials_total{reason=\"invalid_path\"} 3"),
        "{m}"
    );
}

#[tokio::test]
async fn paths_models_and_per_binding_limits() {
    let lab = Lab::start().await;
    let c = lab.client(true);
    lab.hub.edit(|ws| {
        gateway_config::Update {
            name: "fixture-anthropic".into(),
            endpoint: None,
            auth_type: None,
            auth_key: None,
            description: None,
            allowed_paths: Some(vec!["POST /v1/messages".into()]),
            clear_allowed_paths: false,
            allowed_models: Some(vec!["claude-*".into()]),
            clear_allowed_models: false,
        }
        .apply(ws)
        .unwrap()
    });
    lab.hub.sync();
    let before = lab.requests().len();
    let r = c
        .exchange(lab.anthropic(
            lab.token(),
            "/v1/messages/batches",
            &message("claude-x", false),
        ))
        .await;
    assert_eq!(
        (r.status, error_reason(&r).as_str()),
        (StatusCode::FORBIDDEN, "path_not_allowed")
    );
    let r = c
        .exchange(lab.anthropic(lab.token(), "/v1/messages", &message("gpt-4o", false)))
        .await;
    assert_eq!(
        (r.status, error_reason(&r).as_str()),
        (StatusCode::FORBIDDEN, "model_not_allowed")
    );
    // SECURITY: a body naming two models cannot pass the check with one and reach the upstream with
    // the other.
    let twice = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/v1/messages", lab.env["ANTHROPIC_URL"]))
        .header("x-api-key", lab.token())
        .body(Full::new(Bytes::from_static(
            br#"{"model":"claude-x","model":"gpt-4o","max_tokens":1,"messages":[]}"#,
        )))
        .unwrap();
    let r = c.exchange(twice).await;
    assert_eq!(
        (r.status, error_reason(&r).as_str()),
        (StatusCode::BAD_REQUEST, "unreadable_model")
    );
    assert_eq!(lab.requests().len(), before);
    let r = c
        .exchange(lab.anthropic(lab.token(), "/v1/messages", &message("claude-x", false)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // Two requests a minute: the third waits, told for how long.
    lab.hub.edit(|ws| {
        devbox::Limit {
            name: "box".into(),
            env_var: "ANTHROPIC".into(),
            max_requests_per_minute: Some("2".parse().unwrap()),
            max_tokens_per_day: None,
        }
        .apply(ws)
        .unwrap()
    });
    lab.hub.sync();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let r = c
            .exchange(lab.anthropic(lab.token(), "/v1/messages", &message("claude-x", false)))
            .await;
        statuses.push(r.status);
        last = Some(r);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let r = last.unwrap();
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");

    // 20 tokens a day; each call uses 16 (11 in, 5 out, as the upstream reports): two calls, then 429.
    lab.hub.edit(|ws| {
        devbox::Limit {
            name: "box".into(),
            env_var: "ANTHROPIC".into(),
            max_requests_per_minute: Some("none".parse().unwrap()),
            max_tokens_per_day: Some("20".parse().unwrap()),
        }
        .apply(ws)
        .unwrap()
    });
    lab.hub.sync();
    let mut statuses = Vec::new();
    for stream in [false, true, false] {
        let r = c
            .exchange(lab.anthropic(lab.token(), "/v1/messages", &message("claude-x", stream)))
            .await;
        statuses.push((r.status, error_reason_lenient(&r)));
    }
    assert_eq!(
        statuses,
        [
            (StatusCode::OK, String::new()),
            (StatusCode::OK, String::new()),
            (
                StatusCode::TOO_MANY_REQUESTS,
                "token_budget_exhausted".into()
            )
        ]
    );
    // The other binding's budget is its own.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/chat/completions", lab.env["OPENAI_URL"]))
        .header("authorization", format!("Bearer {}", lab.env["OPENAI"]))
        .body(Full::new(Bytes::from(
            json!({"model": "gpt-test"}).to_string(),
        )))
        .unwrap();
    assert_eq!(c.exchange(req).await.status, StatusCode::OK);
}

fn error_reason_lenient(r: &Reply) -> String {
    if r.status.is_success() {
        return String::new();
    }
    error_reason(r)
}

#[tokio::test]
async fn streams_arrive_event_by_event_and_a_client_that_leaves_cancels_the_upstream() {
    let lab = Lab::start().await;
    for h2 in [false, true] {
        let c = lab.client(h2);
        let started = Instant::now();
        let resp = c
            .send(lab.anthropic(lab.token(), "/v1/messages", &message("slow-claude", true)))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut got = String::new();
        while !got.contains("content_block_delta") {
            let f = tokio::time::timeout(Duration::from_secs(3), body.frame())
                .await
                .expect("events arrive as they are sent, not at the end")
                .unwrap()
                .unwrap();
            if let Ok(d) = f.into_data() {
                got.push_str(&String::from_utf8_lossy(&d));
            }
        }
        // The whole stream takes 5 s; its first text arrived long before.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        drop(body);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cancelled = lab
                .seen()
                .iter()
                .filter(|e| e["event"] == "cancelled")
                .count();
            if cancelled == usize::from(h2) + 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the upstream never saw the cancel: {:?}",
                lab.seen()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let m = mcp_hub::telemetry::metrics::render();
    assert!(m.contains("outcome=\"client_cancelled\"} 2"), "{m}");
}
