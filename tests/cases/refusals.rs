//! Every refusal of the MCP gateway, told the same way: the status and `error.data.reason` the client
//! sees and the denial metric's label (the audit line takes the same value in `Gateway::refuse`).
//! One table, one hub; each row a request that the gateway refuses.

use http::Method;

use crate::support::{Hub, Upstream};

/// A hub with one config bound to a devbox, refusing bodies over `max_body_bytes`; returns the
/// upstream (kept alive), the hub and the devbox's token.
async fn hub_limited_to(max_body_bytes: usize) -> (Upstream, Hub, String) {
    let up = Upstream::start(&["a"], "Bearer k").await;
    let extra = format!("max_body_bytes = {max_body_bytes}");
    let hub = Hub::start_with(&[("srv", &up.url(), &["*"])], &extra).await;
    hub.secret("S", "k");
    let token = hub.devbox("box", &[], &["T=srv:S"])["T"].clone();
    (up, hub, token)
}

fn denials(reason: &str) -> u64 {
    let text = mcp_hub::telemetry::metrics::render();
    let key = format!("mcp_hub_gateway_denials_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test]
async fn every_gateway_refusal_is_told_and_counted_alike() {
    let (_up, hub, token) = hub_limited_to(4096).await;
    let token = token.as_str();
    let c = hub.client();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(8192)
    );
    let other_path = c.url.replace("/mcp", "/other");
    let in_query = format!("{}?access_token=abc", c.url);

    // (what, method, url, token, headers, body, status, reason)
    type Row<'a> = (
        &'a str,
        Method,
        &'a str,
        Option<&'a str>,
        Vec<(&'a str, &'a str)>,
        &'a str,
        u16,
        &'a str,
    );
    let url = c.url.as_str();
    let rows: Vec<Row<'_>> = vec![
        (
            "no token",
            Method::POST,
            url,
            None,
            vec![],
            ping,
            401,
            "token_missing",
        ),
        (
            "a token of no valid shape",
            Method::POST,
            url,
            Some("mcp_hub_not-a-real-token"),
            vec![],
            ping,
            401,
            "token_malformed",
        ),
        (
            "not a bearer token",
            Method::POST,
            url,
            None,
            vec![("authorization", "Basic eDp5")],
            ping,
            401,
            "token_malformed",
        ),
        (
            "token in the URL",
            Method::POST,
            &in_query,
            Some(token),
            vec![],
            ping,
            401,
            "token_in_query",
        ),
        (
            "another host",
            Method::POST,
            url,
            Some(token),
            vec![("host", "elsewhere.example")],
            ping,
            421,
            "host_mismatch",
        ),
        (
            "a browser origin",
            Method::POST,
            url,
            Some(token),
            vec![("origin", "https://evil.example")],
            ping,
            403,
            "origin_not_allowed",
        ),
        (
            "another path",
            Method::POST,
            &other_path,
            Some(token),
            vec![],
            ping,
            404,
            "wrong_path",
        ),
        (
            "PUT",
            Method::PUT,
            url,
            Some(token),
            vec![],
            ping,
            405,
            "method_not_allowed",
        ),
        (
            "not JSON",
            Method::POST,
            url,
            Some(token),
            vec![("content-type", "text/plain")],
            ping,
            415,
            "unsupported_media_type",
        ),
        (
            "body too large",
            Method::POST,
            url,
            Some(token),
            vec![],
            &big,
            413,
            "body_too_large",
        ),
        (
            "broken JSON",
            Method::POST,
            url,
            Some(token),
            vec![],
            "{nope",
            400,
            "parse_error",
        ),
        (
            "headers disagree with the body",
            Method::POST,
            url,
            Some(token),
            vec![("mcp-method", "tools/list")],
            ping,
            400,
            "header_mismatch",
        ),
        (
            "a forged session",
            Method::POST,
            url,
            Some(token),
            vec![("mcp-session-id", "forged")],
            ping,
            404,
            "session_not_found",
        ),
    ];
    for (what, method, url, tok, headers, body, status, reason) in rows {
        let before = denials(reason);
        let mut req = c.request(method, tok, &headers, body);
        *req.uri_mut() = url.parse().unwrap();
        let r = c.exchange(req).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text());
        let told = r.json()["error"]["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(told, reason, "{what}: the client was told {told}");
        match status {
            401 => assert!(r.headers.contains_key("www-authenticate"), "{what}"),
            405 => assert!(r.headers.contains_key("allow"), "{what}"),
            _ => {}
        }
        assert_eq!(denials(reason), before + 1, "{what}: metric {reason}");
    }
}

/// Over HTTP/2, an early refusal of a POST whose body is still arriving reaches the client as its
/// status: the hub reads and discards the body before answering (curl 7.88 reported "Stream error in
/// the HTTP/2 framing layer" when the stream was reset under it).
#[tokio::test]
async fn early_refusals_over_h2_reach_curl_as_their_status() {
    let (_up, hub, token) = hub_limited_to(65536).await;
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    let pad = "x".repeat(60_000);
    std::fs::write(
        &body,
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{pad}"}}}}"#),
    )
    .unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, "x".repeat(100_000)).unwrap();
    let auth = format!("Authorization: Bearer {token}");
    let json = "Content-Type: application/json";
    for (what, headers, file, want) in [
        (
            "bad token",
            vec!["Authorization: Bearer nope", json],
            &body,
            "401",
        ),
        (
            "bad origin",
            vec![auth.as_str(), json, "Origin: https://evil.example"],
            &body,
            "403",
        ),
        (
            "wrong content type",
            vec![auth.as_str(), "Content-Type: text/plain"],
            &body,
            "415",
        ),
        ("body too large", vec![auth.as_str(), json], &big, "413"),
    ] {
        let mut args = vec![
            "-sS".to_string(),
            "--http2".into(),
            "--cacert".into(),
            hub.ca_file.to_str().unwrap().into(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code} %{http_version}".into(),
            "--data-binary".into(),
            format!("@{}", file.display()),
        ];
        for h in headers {
            args.push("-H".into());
            args.push(h.to_string());
        }
        args.push(hub.url.clone());
        let out = tokio::process::Command::new("curl")
            .args(&args)
            .output()
            .await
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            got.trim(),
            format!("{want} 2"),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
