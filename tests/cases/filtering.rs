//! Tool filtering, credential injection and token scoping.

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::{Hub, Upstream};

const TOOLS: &[&str] = &[
    "github.search_code",
    "github.create_issue",
    "github.delete_repo",
    "github.get_issue",
    "github.search_issues",
    "github.get_me",
    "github.update_issue",
];

async fn github_hub() -> (Hub, Upstream, String) {
    let up = Upstream::start(TOOLS, "Bearer ghp_real_upstream_secret_1").await;
    let hub = Hub::start(&[("github", &up.url(), &["github.search_*", "github.get_*"])]).await;
    hub.secret("GITHUB_MCP_TOKEN", "ghp_real_upstream_secret_1");
    let env = hub.devbox("box1", &[], &["GITHUB_MCP_SECRET=github:GITHUB_MCP_TOKEN"]);
    (hub, up, env["GITHUB_MCP_SECRET"].clone())
}

#[tokio::test]
async fn listing_shows_exactly_the_allowed_tools_across_pages() {
    let (hub, up, token) = github_hub().await;
    for client in [hub.client(), hub.client_h2()] {
        let names = client.list_all(&token).await;
        assert_eq!(
            names,
            [
                "github.search_code",
                "github.get_issue",
                "github.search_issues",
                "github.get_me"
            ]
        );
    }
    // The upstream really was paginated (4 pages of 2), and a page the filter emptied kept its cursor.
    let lists = up
        .seen()
        .iter()
        .filter(|s| s.body["method"] == "tools/list")
        .count();
    assert_eq!(lists, 8);
    let r = hub
        .client()
        .post(
            &token,
            &json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"p3"}}),
        )
        .await;
    assert_eq!(r.json()["result"]["tools"], json!([]));
    assert!(r.json()["result"].get("nextCursor").is_none());
    // Same over SSE responses.
    up.force_sse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let names = hub.client().list_all(&token).await;
    assert_eq!(
        names,
        [
            "github.search_code",
            "github.get_issue",
            "github.search_issues",
            "github.get_me"
        ]
    );
}

/// SECURITY: a tools list the hub cannot read unambiguously is refused, never relayed unfiltered.
#[tokio::test]
async fn tool_lists_the_hub_cannot_read_are_refused_not_relayed() {
    let (hub, up, token) = github_hub().await;
    for sse in [false, true] {
        up.force_sse.store(sse, std::sync::atomic::Ordering::SeqCst);
        for kind in ["dup", "utf8", "deep", "huge"] {
            let list = json!({"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor": format!("crafted-{kind}")}});
            let r = hub.client().post(&token, &list).await;
            let text = r.text();
            assert!(
                !text.contains("github.delete_repo") && !text.contains("github.create_issue"),
                "{kind} (sse {sse}): a hidden tool was relayed: {text}"
            );
            assert!(
                text.contains(
                    r#"upstream MCP server \"github\" sent a JSON message the hub could not read"#
                ),
                "{kind} (sse {sse}): {text}"
            );
            if !sse {
                assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{kind}");
            }
        }
    }
    // Content types a client reads as JSON or as an event stream, however spelled: filtered too.
    for kind in [
        "upper-json",
        "json-inside",
        "upper-sse",
        "sse-inside",
        "bom-sse",
    ] {
        let list = json!({"jsonrpc":"2.0","id":8,"method":"tools/list","params":{"cursor": format!("crafted-ctype-{kind}")}});
        let text = hub.client().post(&token, &list).await.text();
        assert!(
            text.contains("github.get_issue") && !text.contains("github.delete_repo"),
            "{kind}: {text}"
        );
    }
    // The same upstream's readable lists still pass, filtered.
    up.force_sse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(hub.client().list_all(&token).await.len(), 4);
}

#[tokio::test]
async fn hidden_tools_are_unknown_and_never_reach_the_upstream() {
    let (hub, up, token) = github_hub().await;
    let c = hub.client();
    let r = c.post(&token, &json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"github.delete_repo","arguments":{}}})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool: github.delete_repo"}})
    );
    // Case and glob tricks do not help.
    for name in [
        "GITHUB.search_code",
        "github.search",
        "github.create_issue",
        "github.searchcode",
        "",
        "Github.get_issue",
    ] {
        let r = c
            .post(
                &token,
                &json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":name}}),
            )
            .await;
        assert_eq!(r.json()["error"]["code"], -32602, "{name:?}");
    }
    // A tool that really does not exist upstream looks the same as a hidden one (apart from the name).
    let allowed = c.post(&token, &json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"github.search_code","arguments":{"q":"x"}}})).await;
    assert_eq!(
        allowed.json()["result"]["content"][0]["text"],
        "called github.search_code with {\"q\":\"x\"}"
    );
    assert_eq!(
        up.tool_calls(),
        ["github.search_code"],
        "only the allowed call reached the upstream"
    );
}

#[tokio::test]
async fn batches_are_filtered_element_by_element() {
    let (hub, up, token) = github_hub().await;
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github.get_issue","arguments":{}}},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"github.delete_repo","arguments":{}}},
        {"jsonrpc":"2.0","id":3,"method":"tools/list"},
        {"jsonrpc":"2.0","method":"notifications/initialized"}
    ]);
    let r = hub.client().post(&token, &batch).await;
    let v = r.json();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3, "{v}");
    let by_id = |id: i64| arr.iter().find(|m| m["id"] == id).unwrap().clone();
    assert!(by_id(1)["result"].is_object());
    assert_eq!(
        by_id(2)["error"]["message"],
        "Unknown tool: github.delete_repo"
    );
    let names: Vec<_> = by_id(3)["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, [json!("github.search_code")]);
    assert_eq!(up.tool_calls(), ["github.get_issue"]);
    // The hub's own answers join the upstream's messages as they came, even ones a tree parser
    // refuses (a number beyond f64).
    let batch = json!([
        {"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"github.get_huge","arguments":{}}},
        {"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"github.delete_repo","arguments":{}}}
    ]);
    let text = hub.client().post(&token, &batch).await.text();
    assert!(
        text.contains(r#"{"jsonrpc":"2.0","id":6,"result":{"content":[],"n":1e999}}"#)
            && text.contains("Unknown tool: github.delete_repo"),
        "{text}"
    );
    // A batch of only hidden calls never reaches the upstream at all.
    let before = up.seen().len();
    let r = hub.client().post(&token, &json!([{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"github.delete_repo"}}])).await;
    assert_eq!(r.json()[0]["error"]["code"], -32602);
    assert_eq!(up.seen().len(), before);
}

#[tokio::test]
async fn the_upstream_sees_only_the_real_secret_never_the_agent_token() {
    let (hub, up, token) = github_hub().await;
    let c = hub.client();
    c.post_with(
        &token,
        &[
            ("cookie", "session=agent"),
            ("x-forwarded-for", "1.2.3.4"),
            ("origin", "https://evil.example"),
        ],
        &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    c.post(
        &token,
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    let seen = up.seen();
    // The request with a foreign Origin was refused before reaching the upstream.
    assert_eq!(seen.len(), 1);
    for s in &seen {
        assert_eq!(
            s.headers["authorization"],
            "Bearer ghp_real_upstream_secret_1"
        );
        assert_eq!(s.headers.get_all("authorization").iter().count(), 1);
        assert_eq!(
            s.headers["host"],
            up.addr.to_string().as_str(),
            "Host must be the upstream's"
        );
        assert!(!s.headers.contains_key("cookie"));
        assert!(!s.headers.contains_key("x-forwarded-for"));
        assert!(!s.headers.contains_key("origin"));
        let all = format!("{:?}", s.headers);
        assert!(!all.contains(&token), "agent token leaked upstream: {all}");
    }
}

#[tokio::test]
async fn custom_credential_placement() {
    let up = Upstream::start(&["linear.list"], "lin_api_key_42").await;
    let hub = Hub::start(&[]).await;
    hub.edit(|ws| {
        mcp_hub::ops::edit::mcp_config::Create {
            name: "linear".into(),
            endpoint: up.url(),
            allowed_tools: vec!["*".into()],
            description: None,
            credential_header: Some("Authorization".into()),
            credential_value: Some("{secret}".into()),
            pin_tools: false,
        }
        .apply(ws)
        .unwrap();
    });
    hub.sync();
    hub.secret("LINEAR_KEY", "lin_api_key_42");
    let env = hub.devbox("box1", &[], &["LINEAR_MCP_SECRET=linear:LINEAR_KEY"]);
    let r = hub
        .client()
        .post(
            &env["LINEAR_MCP_SECRET"],
            &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(up.seen()[0].headers["authorization"], "lin_api_key_42");
}

#[tokio::test]
async fn tokens_work_only_for_their_own_binding_and_source() {
    let gh = Upstream::start(&["github.get_issue"], "Bearer gh-secret").await;
    let sl = Upstream::start(&["slack.post_message"], "Bearer slack-secret").await;
    let hub = Hub::start(&[
        ("github", &gh.url(), &["*"]),
        ("slack", &sl.url(), &["slack.post_message"]),
    ])
    .await;
    hub.secret("GH", "gh-secret");
    hub.secret("SLACK", "slack-secret");
    hub.secret("GH_TENANT_B", "gh-secret-b");
    let a = hub.devbox(
        "a",
        &[],
        &[
            "GITHUB_MCP_SECRET=github:GH",
            "SLACK_MCP_SECRET=slack:SLACK",
        ],
    );
    let b = hub.devbox("b", &[], &["GITHUB_MCP_SECRET=github:GH_TENANT_B"]);
    let pinned = hub.devbox("pinned", &["10.9.9.9"], &["GITHUB_MCP_SECRET=github:GH"]);
    let c = hub.client();
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    // Each token reaches only its own upstream.
    assert_eq!(
        c.post(&a["SLACK_MCP_SECRET"], &list).await.json()["result"]["tools"][0]["name"],
        "slack.post_message"
    );
    assert_eq!(
        c.post(&a["GITHUB_MCP_SECRET"], &list).await.json()["result"]["tools"][0]["name"],
        "github.get_issue"
    );
    assert_eq!(sl.seen().len(), 1);
    // Same config, another tenant's secret: devbox b's calls carry b's credential.
    let _ = c.post(&b["GITHUB_MCP_SECRET"], &list).await;
    assert_eq!(
        gh.seen().last().unwrap().headers["authorization"],
        "Bearer gh-secret-b"
    );
    assert_ne!(a["GITHUB_MCP_SECRET"], b["GITHUB_MCP_SECRET"]);
    // A token bound to another source address is refused from here.
    let r = c.post(&pinned["GITHUB_MCP_SECRET"], &list).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Forged tokens: right shape, wrong MAC; another binding's id with this binding's MAC.
    let t = &a["GITHUB_MCP_SECRET"];
    let forged = format!(
        "{}{}",
        &t[..t.len() - 4],
        if t.ends_with("AAAA") { "BBBB" } else { "AAAA" }
    );
    let spliced = format!("{}{}", &a["SLACK_MCP_SECRET"][..27], &t[27..]);
    for bad in [forged.as_str(), spliced.as_str(), "mcph_", "ghp_real", ""] {
        let r = c.post(bad, &list).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(
            r.headers["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
    }
}

#[tokio::test]
async fn every_method_requires_a_valid_token() {
    let (hub, up, token) = github_hub().await;
    let c = hub.client();
    for m in [
        Method::POST,
        Method::GET,
        Method::DELETE,
        Method::PUT,
        Method::OPTIONS,
    ] {
        let r = c.exchange(c.request(m.clone(), None, &[], "")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m}");
        assert_eq!(
            r.headers["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
    }
    // A token in the query string is refused even if it is valid.
    let mut req = c.request(
        Method::POST,
        None,
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    *req.uri_mut() = format!("{}?access_token={token}", c.url).parse().unwrap();
    assert_eq!(c.exchange(req).await.status, StatusCode::UNAUTHORIZED);
    // Authenticated but unsupported method: 405 with Allow.
    let r = c
        .exchange(c.request(Method::PUT, Some(&token), &[], ""))
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["allow"], "GET, POST, DELETE");
    assert!(up.seen().is_empty());
}

/// SECURITY: names an upstream might read as another tool (trimmed, case-folded, path-normalised) are no
/// tools at all: hidden when an upstream lists them, refused like unknown tools when an agent calls
/// them, and never forwarded.
#[tokio::test]
async fn tool_names_outside_the_specifications_set_are_never_tools() {
    let long = format!("github.get_{}", "x".repeat(120));
    let listed = [
        "github.get_issue",
        "github.get_issue ",
        "github.get_a/b",
        "github.get_\u{1}x",
        "github.get_\u{e9}",
        long.as_str(),
    ];
    let up = Upstream::start(&listed, "Bearer tool-name-secret-1").await;
    let hub = Hub::start(&[("github", &up.url(), &["github.get_*"])]).await;
    hub.secret("S", "tool-name-secret-1");
    let token =
        hub.devbox("box1", &[], &["GITHUB_MCP_SECRET=github:S"])["GITHUB_MCP_SECRET"].clone();
    assert_eq!(hub.client().list_all(&token).await, ["github.get_issue"]);
    let c = hub.client();
    for name in [
        "github.get_x/../delete_repo",
        "github.get_issue\n",
        "github.get_issue ",
        " github.get_issue",
        "github.get_\u{0}issue",
        long.as_str(),
    ] {
        let r = c
            .post(
                &token,
                &json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":name}}),
            )
            .await;
        assert_eq!(r.json()["error"]["code"], -32602, "{name:?}");
    }
    assert!(up.tool_calls().is_empty(), "{:?}", up.tool_calls());
}
