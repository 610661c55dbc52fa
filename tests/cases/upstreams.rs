//! The hub's upstream client: kept-alive connections, servers that close them, HTTPS upstreams over
//! HTTP/1.1 and h2 (by ALPN) trusted through `upstream_ca_file`, and untrusted certificates.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{StatusCode, Version};
use serde_json::{Value, json};

use crate::support::{Hub, Upstream};

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

#[tokio::test]
async fn upstream_connections_are_reused_and_replaced_when_the_server_closes_them() {
    let up = Upstream::start(&["x.get"], "Bearer k").await;
    let hub = Hub::start(&[("srv", &up.url(), &["*"])]).await;
    hub.secret("S", "k");
    let env = hub.devbox("b", &[], &["SRV=srv:S"]);
    let c = hub.client();
    for i in 0..20 {
        let r = c.post(&env["SRV"], &call(i, "x.get")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["id"], i);
    }
    let opened = up.accepted.load(Ordering::SeqCst);
    assert!(
        opened <= 2,
        "20 sequential calls opened {opened} upstream connections"
    );

    // The server closes its idle connections (restart, keep-alive timeout): the next call notices at
    // checkout and opens a new one instead of failing.
    for round in 0..3 {
        up.drop_connections();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = c.post(&env["SRV"], &call(100 + round, "x.get")).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "after close {round}: {}",
            r.text()
        );
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), opened + 3);
}

#[tokio::test]
async fn https_upstreams_over_http1_and_h2_with_the_operator_ca() {
    let ca_dir = tempfile::tempdir().unwrap();
    mcp_hub::tls::ca::init(ca_dir.path(), &["localhost"]).unwrap();
    let ca = mcp_hub::tls::ca::load(ca_dir.path()).unwrap();
    let both = ca.server_config(&["localhost"]).unwrap();
    let mut h1_only = (*both).clone();
    h1_only.alpn_protocols = vec![b"http/1.1".to_vec()];
    let h2 = Upstream::start_with(&["a.get"], "Bearer k2", Some(both)).await;
    let h1 = Upstream::start_with(&["b.get"], "Bearer k1", Some(Arc::new(h1_only))).await;
    let ca_file = mcp_hub::tls::ca::cert_path(ca_dir.path());
    let hub = Hub::start_with(
        &[("two", &h2.url(), &["*"]), ("one", &h1.url(), &["*"])],
        &format!("upstream_ca_file = {:?}", ca_file.display().to_string()),
    )
    .await;
    hub.secret("K1", "k1");
    hub.secret("K2", "k2");
    let env = hub.devbox("b", &[], &["TWO=two:K2", "ONE=one:K1"]);
    let c = hub.client();
    for i in 0..5 {
        for (var, tool) in [("TWO", "a.get"), ("ONE", "b.get")] {
            let r = c.post(&env[var], &call(i, tool)).await;
            assert_eq!(r.status, StatusCode::OK, "{var}: {}", r.text());
            assert!(r.json()["result"].is_object(), "{var}: {}", r.text());
        }
    }
    assert!(h2.seen().iter().all(|s| s.version == Version::HTTP_2));
    assert!(h1.seen().iter().all(|s| s.version == Version::HTTP_11));
    let host = format!("localhost:{}", h1.addr.port());
    assert!(
        h1.seen().iter().all(
            |s| s.headers["host"] == host.as_str() && s.headers["authorization"] == "Bearer k1"
        )
    );
    assert_eq!(
        h2.accepted.load(Ordering::SeqCst),
        1,
        "h2 calls share one connection"
    );
    assert!(h1.accepted.load(Ordering::SeqCst) <= 2);

    // Without the operator's CA the same upstream is refused, and the agent is told why.
    let untrusted = Hub::start(&[("two", &h2.url(), &["*"])]).await;
    untrusted.secret("K2", "k2");
    let env = untrusted.devbox("b", &[], &["TWO=two:K2"]);
    let r = untrusted
        .client()
        .post(&env["TWO"], &call(9, "a.get"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("TLS with upstream MCP server \"two\" failed") && msg.contains("certificate"),
        "{msg}"
    );
    assert!(!r.text().contains("k2"));
}
