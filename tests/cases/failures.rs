//! Broken upstreams and hostile input: clear errors, nothing leaked, the hub keeps serving.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::{Hub, Upstream};

#[tokio::test]
async fn upstream_failures_name_the_server_and_hide_the_secret() {
    let up = Upstream::start(&["x.leak", "x.sleep", "x.ok"], "Bearer leaky-secret-123").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // closed once dropped
    let hub = Hub::start_with(
        &[
            ("good", &up.url(), &["*"]),
            ("dead", &format!("http://{dead}/mcp"), &["*"]),
        ],
        "upstream_response_timeout_ms = 400",
    )
    .await;
    hub.secret("OK", "leaky-secret-123");
    hub.secret("WRONG", "not-what-upstream-wants");
    let env = hub.devbox(
        "b",
        &[],
        &["GOOD=good:OK", "DEAD=dead:OK", "BADCRED=good:WRONG"],
    );
    let c = hub.client();
    let call = |n: &str| json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":n,"arguments":{}}});

    let r = c.post(&env["DEAD"], &call("x.ok")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("\"dead\"") && msg.contains("unreachable"),
        "{msg}"
    );
    assert_eq!(r.json()["id"], 4);

    let r = c.post(&env["GOOD"], &call("x.sleep")).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );

    let r = c.post(&env["BADCRED"], &call("x.ok")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("rejected the hub's credential") && msg.contains("WRONG"),
        "{msg}"
    );
    assert!(!r.text().contains("not-what-upstream-wants"));

    // An upstream that echoes the credential: scrubbed from body and headers.
    let r = c.post(&env["GOOD"], &call("x.leak")).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    assert!(!text.contains("leaky-secret-123"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    assert!(!format!("{:?}", r.headers).contains("leaky-secret-123"));

    // Still serving.
    assert_eq!(
        c.post(&env["GOOD"], &call("x.ok")).await.status,
        StatusCode::OK
    );
    // A timeout on a kept-alive connection, whose deadline timer was armed by the call before: it fires
    // at this call's deadline, not the earlier one and not never (the upstream sleeps 5 s).
    let t = std::time::Instant::now();
    let r = c.post(&env["GOOD"], &call("x.sleep")).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        t.elapsed() >= Duration::from_millis(350) && t.elapsed() < Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let up = Upstream::start(&["a"], "Bearer k").await;
    let hub = Hub::start_with(
        &[("srv", &up.url(), &["*"])],
        "max_body_bytes = 2048\nallowed_origins = [\"https://ok.example\"]",
    )
    .await;
    hub.secret("S", "k");
    let t = hub.devbox("b", &[], &["T=srv:S"])["T"].clone();
    let c = hub.client();
    let post =
        |body: &str, headers: &[(&str, &str)]| c.request(Method::POST, Some(&t), headers, body);

    let r = c.exchange(post("{not json", &[])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], -32700);

    let r = c
        .exchange(post("{}", &[("content-type", "text/plain")]))
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(4096)
    );
    let r = c.exchange(post(&big, &[])).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    for bad in ["[]", "42", "\"str\""] {
        let r = c.exchange(post(bad, &[])).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json()["error"]["code"], -32600);
    }

    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let r = c
        .exchange(post(ping, &[("origin", "https://evil.example")]))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c
        .exchange(post(ping, &[("origin", "https://ok.example")]))
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let mut req = post(ping, &[]);
    *req.uri_mut() = format!("https://{}/other", hub.addr).parse().unwrap();
    assert_eq!(c.exchange(req).await.status, StatusCode::NOT_FOUND);

    // Only the allowed-origin ping reached the upstream.
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn stalled_clients_time_out_and_do_not_block_others() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start(&["a"], "Bearer k").await;
    let hub = Hub::start_with(&[("srv", &up.url(), &["*"])], "client_timeout_ms = 300").await;
    hub.secret("S", "k");
    let t = hub.devbox("b", &[], &["T=srv:S"])["T"].clone();
    // A raw TLS client that sends headers promising a body, then stalls.
    let mut tls = raw_tls(&hub).await;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {t}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"jsonrpc\""
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // Meanwhile another client is served normally.
    let r = hub
        .client()
        .post(&t, &json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut tls, &mut buf),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}

/// A TLS connection to the hub that the test drives byte by byte.
async fn raw_tls(hub: &Hub) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::pem_file_iter(
            &hub.ca_file,
        )
        .unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Read until the hub closes the connection; how long that took.
async fn closed_after(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> Duration {
    let start = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::io::AsyncReadExt::read(tls, &mut buf),
        )
        .await
        .expect("the hub kept an idle connection open for 3 s");
        if !matches!(r, Ok(n) if n > 0) {
            return start.elapsed();
        }
    }
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_but_streams_are_not() {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start(&["a"], "Bearer k").await;
    let hub = Hub::start_with(&[("srv", &up.url(), &["*"])], "client_timeout_ms = 300").await;
    hub.secret("S", "k");
    let t = hub.devbox("b", &[], &["T=srv:S"])["T"].clone();

    // Slowloris: a request head that never ends.
    let mut slow = raw_tls(&hub).await;
    slow.write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // A kept-alive connection after one complete exchange.
    let mut idle = raw_tls(&hub).await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    idle.write_all(format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {t}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ).as_bytes()).await.unwrap();
    // A long GET stream: in flight the whole time, so never idle.
    let c = hub.client();
    let resp = c
        .send(c.request(
            http::Method::GET,
            Some(&t),
            &[("last-event-id", "long")],
            "",
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.into_body();

    let (slow_closed, idle_closed) = tokio::join!(closed_after(&mut slow), closed_after(&mut idle));
    for (what, d) in [("slow header", slow_closed), ("idle", idle_closed)] {
        assert!(
            d >= Duration::from_millis(250) && d < Duration::from_secs(2),
            "{what} connection closed after {d:?}"
        );
    }
    // Well past 1.5 x the timeout, the stream still delivers.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1200) {
        let f = tokio::time::timeout(Duration::from_secs(1), stream.frame())
            .await
            .expect("stream stalled")
            .expect("stream ended early");
        assert!(f.is_ok(), "stream broke: {f:?}");
    }
}

/// An upstream that starts an SSE response, sends one event and dies (no terminating chunk).
async fn dying_sse_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 8192];
                // The head and a body of any length that arrived with it are enough to answer.
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let event = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
                    event.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = s.set_zero_linger();
            });
        }
    });
    format!("http://{addr}/mcp")
}

/// SSE from an upstream that dies mid-stream: the agent gets what was sent and a prompt end, never a
/// hang; the other upstream keeps working; a reload right then changes nothing for anyone.
#[tokio::test]
async fn an_upstream_dying_mid_stream_ends_that_stream_only() {
    use http_body_util::BodyExt;
    let up = Upstream::start(&["a.get"], "Bearer k").await;
    let dying = dying_sse_upstream().await;
    let hub = Hub::start(&[("good", &up.url(), &["*"]), ("dying", &dying, &["*"])]).await;
    hub.secret("S", "k");
    let env = hub.devbox("b", &[], &["GOOD=good:S", "DYING=dying:S"]);
    let c = hub.client();
    let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a.get","arguments":{}}});
    for round in 0..3 {
        let resp = c
            .send(c.request(Method::POST, Some(&env["DYING"]), &[], &call.to_string()))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(f) = body.frame().await {
                match f {
                    Ok(f) => got.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
                    Err(_) => break,
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "round {round}: the stream hung after the upstream died"
        );
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("notifications/progress"),
            "round {round}: {text}"
        );
        if round == 1 {
            hub.sync();
        }
        let r = c.post(&env["GOOD"], &call).await;
        assert_eq!(r.status, StatusCode::OK, "round {round}: {}", r.text());
        assert!(r.text().contains("called a.get"), "{}", r.text());
    }
}
